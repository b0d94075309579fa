"""timm's ``regnet.py`` RegNets (X, Y, Z, V and the ``_tv`` variants) as packaged specs made by the RegNet
generator: stage widths, depths and group widths equal timm's ``_get_stage_args`` for all 36 configurations;
state_dict keys and shapes in order, parameter counts and MACs equal timm 1.0.31's; timm's weights load
strictly and eval outputs are equal; features at output stride 32, 16 and 8, layer decay as timm's. A few
models by default, every one under ``-m slow``."""

from __future__ import annotations


import pytest
import timm
import torch
from timm.models.regnet import RegNet, model_cfgs

import archkit
from archkit.cli import main
from archkit.generators.regnet import RegNetSpec, stages
from timm_reference import (assert_features_equal, assert_layer_decay_equal, assert_outputs_equal_after_strict_load,
                            assert_structure_and_macs_equal_timm, assert_weights_declared_as_timms, trained)

NAMES = timm.list_models(module="regnet")
HUGE = {"regnety_1280", "regnety_2560"}  # 644 M and 1.28 G parameters: compared on the meta device only
DEFAULT = {"regnetx_002", "regnetz_005", "regnetv_040"}  # X, Z (SE, no shortcut, final conv), pre-activation;
# Y and the _tv rounding under -m slow (the suite's time budget)


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_timms_regnets_are_packaged_specs() -> None:
    assert len(NAMES) == 36  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))


def test_the_generator_makes_timms_stages_for_every_configuration() -> None:
    """All 36 of timm's configurations."""
    for name, cfg in model_cfgs.items():
        numbers = RegNetSpec(depth=cfg.depth, w_0=cfg.w0, w_a=cfg.wa, w_m=cfg.wm, group_width=cfg.group_size,
                             bottleneck_multiplier=cfg.bottle_ratio, se_ratio=cfg.se_ratio or None,
                             group_min_ratio=cfg.group_min_ratio, block="regnet_bottle")
        ours = [(s["planes"], s["depth"], s["block"]["group_width"]) for s in stages(numbers)]
        theirs = [(a["out_chs"], a["depth"], a["group_size"]) for a in RegNet._get_stage_args(None, cfg)[0]]
        assert ours == theirs, name
    differ = [n for n, c in model_cfgs.items()  # the two rounding rules part ways on some models
              if [s["planes"] for s in stages(RegNetSpec(depth=c.depth, w_0=c.w0, w_a=c.wa, w_m=c.wm,
                                                         group_width=c.group_size, group_min_ratio=0))]
              != [s["planes"] for s in stages(RegNetSpec(depth=c.depth, w_0=c.w0, w_a=c.wa, w_m=c.wm,
                                                         group_width=c.group_size))]]
    assert differ, "group_min_ratio changes no model: the test would not tell the rules apart"


@pytest.mark.parametrize("name", _marked(NAMES))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", _marked([n for n in NAMES if n not in HUGE]))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    assert_outputs_equal_after_strict_load(name)


@pytest.mark.parametrize("name", _marked(["regnety_002", "regnetz_005", "regnetx_004_tv", "regnetv_064"],
                                         {"regnety_002"}))
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    assert_features_equal(name, skip=("head.", "final_conv."))


def test_layer_decay_groups_parameters_as_timms_regnet() -> None:
    assert_layer_decay_equal("regnetx_002")


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    assert assert_weights_declared_as_timms(NAMES) == ["regnety_040_sgn", "regnetz_005"]


@pytest.mark.slow  # builds two ResNet-50-class models (the suite's time budget)
def test_a_variant_of_our_own_loads_its_parents_weights(tmp_path) -> None:
    """examples/regnety_016_eca.yaml: regnety_016 with ECA before each add; timm's regnety_016 weights copy into
    every tensor of the variant but the 27 new ECA convs, which start untrained."""
    theirs = trained("regnety_016")
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = archkit.create_model("examples/regnety_016_eca.yaml", weights=str(tmp_path / "w.pth")).eval()
    plan = ours.transfer_plan
    assert len(plan.of("copied")) == len(theirs.state_dict()) and not plan.of("unused") and not plan.of("mismatch")
    assert {i.key.split(".", 2)[2] for i in plan.of("reinit")} == {"attn_last.conv.weight"}
    assert len(plan.of("reinit")) == sum(1 for k in ours.state_dict() if "attn_last" in k) == 27
    mine = ours.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in theirs.state_dict().items())


def test_block_keys_reach_generated_stages_and_clashes_are_refused(capsys) -> None:
    """A top-level block: default takes the generated stages' block type (so --set block.attn works), and a
    key the generator sets for every stage is refused there instead of silently losing to it."""
    assert main(["validate", "regnetx_002", "--set", "block.attn=[{type: eca, position: pre_add}]"]) == 0
    assert "regnetx_002" in capsys.readouterr().out
    assert main(["validate", "regnet_x_400mf", "--set", "block.se_ratio=0.25"]) == 0  # the generator leaves it
    with_se = capsys.readouterr().out
    assert main(["validate", "regnet_x_400mf", "--set", "regnet.se_ratio=0.25"]) == 0
    assert capsys.readouterr().out == with_se  # the same network either way
    assert main(["validate", "regnetx_002", "--set", "block.group_width=16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set regnet.group_width instead" in err


def test_what_a_hostile_trial_found(capsys) -> None:
    """A top-level block type other than the generated one is refused (it was silently dropped, keys and all);
    num_features is what the head receives (a final conv's width, as timm's); a norm key set on a spec that
    keeps the default norm says how to name its type; fit reaches group widths above 256."""
    assert main(["validate", "regnetx_002", "--set", "block.type=regnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set regnet.block to choose the type" in err
    for name in ("regnetz_005", "regnetz_040", "regnetx_002"):
        ours = archkit.create_model(name, device="meta")
        assert ours.num_features == timm.create_model(name, device="meta").num_features
    assert main(["validate", "regnetx_002", "--set", "norm.eps=0.001"]) == 2  # no silent type: name it
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "norm={type: batchnorm, eps: 0.001}" in err
    assert main(["validate", "regnetx_002", "--set", "norm={type: batchnorm, eps: 0.001}"]) == 0
    capsys.readouterr()
    assert main(["fit", "regnety_640", "--macs", "100G"]) == 0
    assert "divisor 328" in capsys.readouterr().out


def test_a_block_without_shortcut_never_drops_its_path() -> None:
    """timm's RegNet blocks drop the path only where a shortcut adds it back: RegNetZ's first blocks of a stage
    (no shortcut) would otherwise zero whole samples in training."""
    model = archkit.create_model("regnetz_005", drop_path_rate=0.9).train()
    block = model.s4.b1
    assert block.downsample is None
    x = torch.randn(64, block.conv1.conv.in_channels, 4, 4)
    with torch.no_grad():
        zeroed = (block(x).flatten(1).abs().sum(1) == 0).sum().item()
    assert zeroed == 0
