"""Shared fixtures: paths of the shipped specs, a temp-dir spec writer."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SHIPPED = sorted(SPECS.glob("*.yaml"))

# torchvision builders the shipped specs reproduce, by spec name
TORCHVISION = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
               "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]


@pytest.fixture
def write(tmp_path: Path):
    """Write a spec text to a file in a temp dir and return its path."""
    def _write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return _write
