"""timm's ``convnext.py`` (ConvNeXt V1 atto..xxlarge with its _ols/_rms/_hnf/_mlp variants, V2, the test models:
31) as packaged specs with the ``convnext`` block and stage: state_dict keys and shapes in order (the block's own
``gamma`` included), parameter counts and MACs equal timm 1.0.31's; timm's weights load strictly and eval
outputs are equal; features equal timm's; timm's weights declared. A few models by default (one of each form:
1x1-conv MLP, channels-last Linear MLP, V2's GRN, overlapping stem, RMS / Simple norms), every one under
``-m slow``."""

from __future__ import annotations


import pytest
import timm
import torch

import archkit
from archkit.cli import main
from timm_reference import (assert_features_equal, assert_layer_decay_equal, assert_outputs_equal_after_strict_load,
                            assert_structure_and_macs_equal_timm, assert_weights_declared_as_timms, trained)

NAMES = timm.list_models(module="convnext")
DEFAULT = {"convnext_atto", "test_convnext", "convnextv2_atto"}  # 1x1 MLP; Linear MLP; GRN (the rest: -m slow)
HUGE = {"convnext_xxlarge", "convnextv2_huge"}  # 846 M and 660 M parameters: compared on the meta device only


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_timms_convnexts_are_packaged_specs() -> None:
    assert len(NAMES) == 31  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))


@pytest.mark.parametrize("name", _marked(NAMES))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", _marked([n for n in NAMES if n not in HUGE]))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    assert_outputs_equal_after_strict_load(name, move_parameters=True)  # layer scales start at 1e-6, GRN at 0


@pytest.mark.parametrize("name", _marked(["convnext_atto", "convnext_tiny_hnf", "convnextv2_tiny", "convnext_tiny"],
                                         {"convnext_atto"}))
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    """timm's ConvNeXt taps the stages only (its out_indices 0..3 are archkit's 1..4: archkit's 0 is the stem);
    a dilated stage downsamples at stride 1, its conv padded 'same' (static where it can be, as timm's)."""
    assert_features_equal(name, theirs_taps=(0, 1, 2, 3), ours_taps=[1, 2, 3, 4], skip=("head.", "norm_pre."))
    assert archkit.create_model(name, device="meta").num_features == timm.create_model(name, device="meta").num_features


def test_layer_decay_groups_parameters_as_timms_convnext() -> None:
    assert_layer_decay_equal("convnext_atto")


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    assert assert_weights_declared_as_timms(NAMES) == ["convnext_atto_rms", "convnextv2_small"]


def test_bad_convnext_settings_are_one_located_line(capsys) -> None:
    cases = [(["--set", "block.kernel_size=4"], "kernel_size must be odd"),
             (["--set", "block.mlp_ratio=0"], "block.mlp_ratio"),
             (["--set", "norm={type: rmsnorm2d}"], "the spec's norm must be layernorm2d"),
             (["--set", "stages.1.downsample_kernel_size=0"], "downsample_kernel_size"),
             (["--set", "block.attn=[{type: se}]"], "attention")]
    for extra, fragment in cases:
        assert main(["validate", "convnext_tiny", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)


@pytest.mark.slow  # builds two ResNet-50-class models (the suite's time budget)
def test_a_variant_of_our_own_loads_its_parents_weights(tmp_path) -> None:
    """examples/convnext_tiny_grn.yaml: V1 with V2's GRN; every tensor of convnext_tiny copies, the 36 GRN tensors
    start at zero, where GRN is the identity, so the variant computes its parent's outputs."""
    theirs = trained("convnext_tiny")
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = archkit.create_model("examples/convnext_tiny_grn.yaml", weights=str(tmp_path / "w.pth")).eval()
    plan = ours.transfer_plan
    assert len(plan.of("copied")) == len(theirs.state_dict()) and not plan.of("unused") and not plan.of("mismatch")
    assert {i.key.rsplit(".", 2)[1:] == ["grn", i.key.rsplit(".", 1)[1]] for i in plan.of("reinit")} == {True}
    assert len(plan.of("reinit")) == 2 * 18  # weight and bias of each block's GRN
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
