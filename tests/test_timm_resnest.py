"""timm's ``resnest.py`` (ResNeSt-14d/26d/50d/101e/200e/269e, 4s2x40d, 1s4x24d: 8 models) as packaged specs with the ``resnest``
block: state_dict keys and shapes in order, parameter counts and MACs equal timm 1.0.31's; timm's weights load strictly
and eval outputs are equal; features at output stride 32, 16 and 8 equal timm's; timm's weights declared. A
few models by default, every one under ``-m slow``."""

from __future__ import annotations

import pytest
import timm

import archkit
from archkit.cli import main
from timm_reference import (assert_features_equal, assert_outputs_equal_after_strict_load,
                            assert_structure_and_macs_equal_timm, assert_weights_declared_as_timms)

NAMES = timm.list_models(module="resnest")
DEFAULT = {"resnest14d", "resnest50d_1s4x24d"}  # radix 2; radix 1 (sigmoid) with 4 groups (radix 4: -m slow)
HUGE = {"resnest200e", "resnest269e"}  # 70 M and 111 M parameters at 320 and 416: compared on the meta device


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_timms_resnests_are_packaged_specs() -> None:
    assert len(NAMES) == 8  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))


@pytest.mark.parametrize("name", _marked(NAMES))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", _marked([n for n in NAMES if n not in HUGE], {"resnest14d"}))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    assert_outputs_equal_after_strict_load(name)


@pytest.mark.parametrize("name", _marked(["resnest14d", "resnest50d_4s2x40d"], set()))
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    # the stem's activation is torchvision's relu here, timm's act1 (no parameters), as in the ResNet zoo
    assert_features_equal(name, compare_names=slice(1, None))


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    assert assert_weights_declared_as_timms(NAMES) == []


def test_bad_resnest_settings_are_one_located_line(capsys) -> None:
    cases = [(["--set", "block.radix=0"], "block.radix"),
             (["--set", "block.attn=[{type: se}]"], "attention"),
             (["--set", "stages.0.planes=1", "--set", "block.base_width=8"], "gives a width of 0")]
    for extra, fragment in cases:
        assert main(["validate", "resnest14d", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)
