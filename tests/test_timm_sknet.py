"""timm's ``sknet.py`` (SKResNet-18/34/50/50-D, SKResNeXt-50: 5 models) as packaged specs with the ``sk_basic``
and ``sk_bottleneck`` blocks: state_dict keys and shapes in order, parameter counts and MACs equal timm 1.0.31's; timm's weights load strictly
and eval outputs are equal; features at output stride 32, 16 and 8 equal timm's; timm's weights declared. A
few models by default, every one under ``-m slow``."""

from __future__ import annotations

import pytest
import timm

import archkit
from archkit.cli import main
from timm_reference import (assert_features_equal, assert_outputs_equal_after_strict_load,
                            assert_structure_and_macs_equal_timm, assert_weights_declared_as_timms)

NAMES = timm.list_models(module="sknet")
DEFAULT = {"skresnet18", "skresnext50_32x4d"}  # basic with split input, grouped bottleneck without


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_timms_sknets_are_packaged_specs() -> None:
    assert len(NAMES) == 5  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))


@pytest.mark.parametrize("name", _marked(NAMES))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", _marked(NAMES, {"skresnet18"}))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    assert_outputs_equal_after_strict_load(name)


@pytest.mark.parametrize("name", _marked(["skresnet18", "skresnet50d"], {"skresnet18"}))
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    # the stem's activation is torchvision's relu here, timm's act1 (no parameters), as in the ResNet zoo
    assert_features_equal(name, compare_names=slice(1, None))


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    """3 of 5 have weights in timm (skresnet50 and skresnet50d are untrained there)."""
    assert assert_weights_declared_as_timms(NAMES) == ["skresnet50", "skresnet50d"]


def test_bad_selective_kernel_settings_are_one_located_line(capsys) -> None:
    cases = [(["--set", "block.kernel_sizes=[3, 4]"], "kernel_sizes must be odd"),
             (["--set", "block.kernel_sizes=[3, 5, 7]"], "3 paths cannot split 64 input channels"),
             (["--set", "block.attn=[{type: se, position: mid}]"], "offer attention positions pre_add")]
    for extra, fragment in cases:
        assert main(["validate", "skresnet18", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)
