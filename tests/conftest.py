"""Shared fixtures: paths of the shipped specs, a temp-dir spec writer; the hypothesis profiles."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# "ci", the default: a fixed sample, the same on every run and machine (a failure reproduces).
# "soak": fresh random draws, many more of them, e.g.
#     python -m pytest -m "" --hypothesis-profile soak tests/test_fuzz.py tests/test_complexity.py
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=60, derandomize=True, database=None, deadline=None,
                          suppress_health_check=_SLOW_IS_FINE)
settings.register_profile("soak", max_examples=2000, deadline=None, suppress_health_check=_SLOW_IS_FINE)
settings.load_profile("ci")  # --hypothesis-profile, applied later by hypothesis' pytest plugin, overrides it

# archkit list's index lives in the user's cache; the tests keep their own (one per process)
os.environ["ARCHKIT_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="archkit-test-cache-"), "list-index.json")

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
