"""timm's ``res2net.py`` (Res2Net, Res2NeXt, Res2Net-D: 9 models) as packaged specs with the ``res2net`` block:
state_dict keys and shapes in order, parameter counts and MACs equal timm 1.0.31's; timm's weights load strictly
and eval outputs are equal; features at output stride 32, 16 and 8 equal timm's; timm's weights declared. A
few models by default, every one under ``-m slow``."""

from __future__ import annotations

import pytest
import timm
import torch

import archkit
from archkit.cli import main
from timm_reference import (assert_features_equal, assert_outputs_equal_after_strict_load,
                            assert_structure_and_macs_equal_timm, assert_weights_declared_as_timms, trained)

NAMES = timm.list_models(module="res2net")
DEFAULT = {"res2net50_48w_2s", "res2next50"}  # the smallest scale, and grouped 3x3s


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_timms_res2nets_are_packaged_specs() -> None:
    assert len(NAMES) == 9  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))


@pytest.mark.parametrize("name", _marked(NAMES))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", _marked(NAMES, {"res2net50_48w_2s"}))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    assert_outputs_equal_after_strict_load(name)


@pytest.mark.parametrize("name", _marked(["res2net50_14w_8s", "res2net50d"], set()))  # ResNeSt's and SKNet's run by default
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    # the stem's activation is torchvision's relu here, timm's act1 (no parameters), as in the ResNet zoo
    assert_features_equal(name, compare_names=slice(1, None))


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    assert assert_weights_declared_as_timms(NAMES) == []


def test_bad_res2net_settings_are_one_located_line(capsys) -> None:
    cases = [(["--set", "block.scale=0"], "block.scale"),
             (["--set", "stages.0.planes=2", "--set", "block.base_width=8"], "gives a width of 0"),
             (["--set", "block.attn=[{type: se, position: mid}]"], "offer attention positions pre_add")]
    for extra, fragment in cases:
        assert main(["validate", "res2net50_26w_4s", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)


@pytest.mark.slow  # builds two ResNet-50-class models (the suite's time budget)
def test_a_variant_of_our_own_loads_its_parents_weights(tmp_path) -> None:
    """examples/res2net50_26w_4s_se.yaml: SE before each add; every tensor of timm's res2net50_26w_4s copies, only
    the 16 blocks' SE convs (weight and bias of fc1 and fc2) start untrained."""
    theirs = trained("res2net50_26w_4s")
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = archkit.create_model("examples/res2net50_26w_4s_se.yaml", weights=str(tmp_path / "w.pth")).eval()
    plan = ours.transfer_plan
    assert len(plan.of("copied")) == len(theirs.state_dict()) and not plan.of("unused") and not plan.of("mismatch")
    assert {i.key.split(".", 2)[2].split(".")[0] for i in plan.of("reinit")} == {"se"}
    assert len(plan.of("reinit")) == 16 * 4
    mine = ours.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in theirs.state_dict().items())
