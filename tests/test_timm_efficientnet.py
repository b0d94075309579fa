"""timm's ``efficientnet.py`` and ``mobilenetv3.py`` (EfficientNet V1/V2, Lite, EdgeTPU, CondConv, X/H, TinyNet,
MixNet, MnasNet, FBNet, MobileNet V1-V4, LCNet) as packaged specs written in timm's block strings.

By default, against the reference table (tests/reference/timm_efficientnet.json, written from timm by
tests/reference/make_timm_efficientnet.py; ``-m slow`` checks it against the installed timm): every packaged
model's parameters and MACs from the plan alone (no torch model). The smallest model of each form is built and
checked against the table (keys and shapes in order, feature maps) and timm itself (strict load, bit-equal eval
outputs); every model under ``-m slow``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import timm
import torch

import archkit
from archkit import summary
from archkit.cli import main
from archkit.generators.efficientnet import decode
from timm_reference import (assert_layer_decay_equal, assert_outputs_equal_after_strict_load,
                            assert_weights_declared_as_timms, trained)

TABLE = json.loads((Path(__file__).parent / "reference" / "timm_efficientnet.json").read_text())
MODELS = TABLE["models"]
PACKAGED = sorted(set(MODELS) & set(archkit.list_models()))

# one of each form by default, the smallest: MobileNetV3 (ds, ir, cn; SE on the expanded width, hard sigmoid; its
# head), MixConv with SAME padding, fused blocks with group norm and a cn skip (timm's test model), MobileNetV4's
# universal blocks, LCNet's dsa (the rest, EfficientNet-B0 included: -m slow)
DEFAULT = {"mobilenetv3_small_050", "tf_mixnet_s", "test_efficientnet_gn", "mobilenetv4_conv_small", "lcnet_050",
           "test_efficientnet_evos", "test_efficientnet_ln"}  # (and CONDCONV; the pruned widths: efficientnet_b1_pruned)
CONDCONV = "tf_efficientnet_cc_b0_4e"  # CondConv with SAME padding: its keys and outputs by default too
BIG = 40e6  # above this many parameters: compared on the meta device only


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_the_table_is_timms_two_files_and_archkit_packages_every_model() -> None:
    assert TABLE["timm"] == timm.__version__ == "1.0.31"
    assert len(MODELS) == 148 and sum(n.startswith(("mobilenetv3", "mobilenetv4", "fbnetv3", "lcnet", "tf_mobilenetv3"))
                                      for n in MODELS) == 33
    assert PACKAGED == sorted(MODELS)


def test_parameters_and_macs_equal_timms_for_every_packaged_model() -> None:
    """From the plan alone (no torch model): the analytic count equals timm's measured one at its input size."""
    wrong = []
    for name in PACKAGED:
        spec = archkit.load_spec(name)
        cost = summary.estimate(spec)
        row = MODELS[name]
        if spec.input.size != row["input_size"] or (cost.params, cost.macs) != (row["params"], row["macs"]):
            wrong.append((name, cost.params, row["params"], cost.macs, row["macs"]))
    assert not wrong


def _keys_digest(model: torch.nn.Module) -> tuple[int, str]:
    state = model.state_dict()
    text = "\n".join(f"{k} {list(v.shape)}" for k, v in state.items())
    return len(state), hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", _marked(PACKAGED))
def test_keys_shapes_and_features_equal_the_table(name: str) -> None:
    model = archkit.create_model(name, device="meta")
    row = MODELS[name]
    assert _keys_digest(model) == (row["keys"], row["keys_sha256"])
    assert model.num_features == row["num_features"]
    backbone = archkit.create_model(name, device="meta", features_only=True)  # the spec's out_indices: timm's maps
    assert [[f["module"], f["num_chs"], f["reduction"]] for f in backbone.feature_info] == row["feature_info"]


@pytest.mark.parametrize("name", _marked([n for n in PACKAGED if MODELS[n]["params"] < BIG],
                                         DEFAULT | {CONDCONV, "efficientnet_b1_pruned"}))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    assert_outputs_equal_after_strict_load(name, move_parameters=name.startswith("test_"))  # (their norms' own
    # parameters off their start: EvoNorm-S0, LayerNorm, GroupNorm)


@pytest.mark.slow
def test_the_table_matches_the_installed_timm() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make", Path(__file__).parent / "reference" / "make_timm_efficientnet.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert make.table() == TABLE


def _timm_decoded(text: str) -> dict:
    from timm.models._efficientnet_builder import _decode_block_str

    args, repeat = _decode_block_str(text)
    act = args.pop("act_layer")
    args["act"] = getattr(act, "__name__", act)
    return {**args, "repeat": repeat}


_ACT_NAMES = {"relu": "ReLU", "relu6": "ReLU6", "hard_swish": "Hardswish", "silu": "SiLU", "mish": "Mish"}


def _ours_as_timms(text: str) -> dict:
    """Our decoding of ``text`` in timm's argument names."""
    block, repeat, stride = decode(text)
    kind = text.split("_")[0]
    out = {"block_type": kind, "out_chs": block["channels"], "stride": stride, "repeat": repeat,
           "act": _ACT_NAMES.get(block.get("act"))}
    noskip = block.get("shortcut") == "none"
    se = block.get("se", {}).get("ratio", 0.0)
    k = block["kernel_size"]
    if kind == "ir":
        out.update(dw_kernel_size=k, exp_kernel_size=block.get("exp_kernel_size", 1), pw_kernel_size=block.get(
            "pw_kernel_size", 1), exp_ratio=block["exp_ratio"], se_ratio=se, noskip=noskip, s2d=block.get("s2d") == 1)
        if "num_experts" in block:
            out["num_experts"] = block["num_experts"]
    elif kind in ("ds", "dsa"):
        out.update(dw_kernel_size=k, pw_kernel_size=block.get("pw_kernel_size", 1), se_ratio=se,
                   pw_act=kind == "dsa", noskip=noskip, s2d=block.get("s2d") == 1)
    elif kind == "er":
        out.update(exp_kernel_size=k, pw_kernel_size=block.get("pw_kernel_size", 1), exp_ratio=block["exp_ratio"],
                   force_in_chs=block.get("force_in_channels", 0), se_ratio=se, noskip=noskip)
    elif kind == "cn":
        out.update(kernel_size=k, skip=block.get("shortcut") == "identity")
    elif kind == "mqa":
        out.update(dw_kernel_size=k, num_heads=block["num_heads"], key_dim=block["key_dim"],
                   value_dim=block["key_dim"], kv_stride=block.get("kv_stride", 1), noskip=noskip)
    elif kind == "uir":
        out.update(dw_kernel_size_start=block["start_kernel_size"], dw_kernel_size_mid=k,
                   dw_kernel_size_end=block["end_kernel_size"], exp_ratio=block["exp_ratio"], se_ratio=se,
                   noskip=noskip)
    if "group_size" in block:
        out["group_size"] = block["group_size"]
    return out


def test_block_strings_of_every_packaged_model_read_as_timms_decoder_reads_them() -> None:
    strings = {s for n in PACKAGED if not n.endswith("_pruned") for stage in _arch(n) for s in stage}
    assert len(strings) > 250
    for text in sorted(strings):
        assert _ours_as_timms(text) == _timm_decoded(text), text


def _arch(name: str) -> list:
    from archkit import zoo
    from archkit.loader import load

    return load(name, resolve=zoo.resolve)["efficientnet"]["arch"]


def test_weights_are_declared_as_timm_has_them() -> None:
    untrained = assert_weights_declared_as_timms(PACKAGED)  # each trained one: timm's file, hash and preprocessing
    assert len(PACKAGED) - len(untrained) == 107  # timm 1.0.31 has weights for 107 of the 148


@pytest.mark.slow  # builds two EfficientNet-B0s and exports one (the suite's time budget)
def test_a_variant_of_our_own_loads_b0s_weights_and_exports(tmp_path) -> None:
    """examples/efficientnet_b0_hswish_nose.yaml: B0 with hard swish and no SE in its first two stages; every
    tensor of the variant is B0's, and only the SE weights of its first three blocks are left over."""
    theirs = trained("efficientnet_b0")
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = archkit.create_model("examples/efficientnet_b0_hswish_nose.yaml", weights=str(tmp_path / "w.pth")).eval()
    plan = ours.transfer_plan
    assert len(plan.of("copied")) == len(ours.state_dict()) and not plan.of("reinit") and not plan.of("mismatch")
    assert {i.key.split(".se.")[0] for i in plan.of("unused")} == {"blocks.0.0", "blocks.1.0", "blocks.1.1"}
    assert len(plan.of("unused")) == 3 * 4  # conv_reduce and conv_expand, weight and bias
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(ours, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), ours(x))
    assert main(["build", "examples/efficientnet_b0_hswish_nose.yaml", "--summary"]) == 0


def test_bad_block_strings_are_one_located_line(capsys, tmp_path) -> None:
    cases = [("ir_r2_k3_s2_e6", "needs c (channels)"), ("ir_r2_k3_s2_e6_c24_zz3", "ir blocks take no 'zz'"),
             ("ir_r2_k3_s3_e6_c24", "s 1 or 2"), ("ir_r2_kx_s2_e6_c24", "cannot read 'kx'"), ("xx_r1_k3_s1_c8", "unknown block type"),
             ("ir_r1_k3_s1_e6_c24_nzz", "unknown activation"), ("ir_r1_k3_s2_e6_c24_d1", "it needs s1"),
             ("mqa_r1_k3_h4_s1_c160", "needs d"), ("mha_r1_k3_h4_s1_d64_c160", "not built yet"),
             ("cn_r1_k3_s1_c8_se0.25", "cn blocks take no 'se'")]
    for text, fragment in cases:
        assert main(["validate", "efficientnet_b0", "--set", f"efficientnet.arch.2=[{text}]"]) == 2, text
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err and "efficientnet.arch.2.0" in err, (text, err)
        assert err.startswith("--set"), err  # located where the string came from
    stride = ["--set", "efficientnet.arch.2=[ir_r2_k5_s2_e6_c40, ir_r1_k3_s2_e6_c40]"]
    assert main(["validate", "efficientnet_b0", *stride]) == 2
    assert "only a stage's first block strides" in capsys.readouterr().err


# (base, width, depth, timm's model of those numbers): each family's own rule for its stem and head (timm's
# fix_stem below 0.75 / 1.0, a head held at max(1280, ...), a head that never scales) follows the multipliers
PAIRS = [("efficientnet_b0", 1.2, 1.4, "efficientnet_b3"), ("mobilenetv3_small_100", 0.5, 1.0, "mobilenetv3_small_050"),
         ("mobilenetv4_conv_small", 0.35, 1.0, "mobilenetv4_conv_small_035"), ("mnasnet_100", 0.5, 1.0, "mnasnet_050"),
         ("mnasnet_100", 1.4, 1.0, "mnasnet_140"), ("mobilenetv2_100", 0.5, 1.0, "mobilenetv2_050"),
         ("efficientnet_lite0", 1.1, 1.2, "efficientnet_lite2"), ("tinynet_a", 0.51, 0.6, "tinynet_e"),
         ("mobilenetv3_large_100", 0.5, 0.5, None)]


@pytest.mark.parametrize("base, width, depth, model", PAIRS)
def test_compound_scaling_is_the_two_multipliers(capsys, base, width, depth, model) -> None:
    """--set width_multiplier / depth_multiplier on a family's base gives timm's model of those numbers (B3 is B0
    with 1.2 and 1.4); below 1, every block string keeps a block, as timm's _scale_stage_depth."""
    size = MODELS[model]["input_size"] if model else [224, 224]
    assert main(["build", base, "--summary", "--json", "--set", f"width_multiplier={width}",
                 "--set", f"depth_multiplier={depth}", "--set", f"input.size={size}"]) == 0
    out = json.loads(capsys.readouterr().out)
    if model is None:  # timm's _gen_mobilenet_v3('mobilenetv3_large_100', 0.5, depth_multiplier=0.5)
        assert out["total_params"] == 2_363_400  # timm 1.0.31: sum of its parameters' numel
        return
    assert (out["total_params"], out["macs"]) == (MODELS[model]["params"], MODELS[model]["macs"])


@pytest.mark.parametrize("name", _marked(["efficientnet_b0", "mobilenetv4_conv_small", "mobilenetv3_large_100",
                                          "tf_efficientnet_lite0", "efficientnetv2_rw_t", "mixnet_s",
                                          "mobilenetv4_hybrid_medium", "tf_efficientnet_cc_b0_4e", "efficientnet_x_b3"],
                                         {"mobilenetv4_conv_small"}))
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    """timm's feature maps are the stage ends where the next stage strides (and the stem's where the first stage
    strides): each spec's out_indices names them, so archkit's default backbone is timm's; at output stride 16/8
    the strided depthwise convs become dilated ones, as timm's builder makes them."""
    torch.manual_seed(0)
    weights = {k: v for k, v in timm.create_model(name).state_dict().items()
               if not k.startswith(("classifier.", "conv_head.", "bn2.", "norm_head."))}
    x = torch.randn(1, 3, 48, 48)
    for output_stride in (32, 16, 8):
        theirs = timm.create_model(name, features_only=True, output_stride=output_stride).eval()
        ours = archkit.create_model(name, features_only=True, output_stride=output_stride).eval()
        theirs.load_state_dict(weights, strict=True)
        ours.load_state_dict(weights, strict=True)
        assert ours.feature_info.module_name() == theirs.feature_info.module_name()
        assert ours.feature_info.reduction() == theirs.feature_info.reduction()
        assert ours.feature_info.channels() == theirs.feature_info.channels()
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True)), output_stride


def test_a_space_to_depth_run_ends_in_a_stage_of_several_strings() -> None:
    """timm's builder gives the block that ends the run a quarter of its expansion, whatever follows it."""
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet

    arch = [["ds_r1_k3_s1_e1_c16_d1"], ["ir_r1_k3_s2_e4_c24", "ir_r1_k3_s1_e4_c24"], ["ir_r1_k3_s2_e6_c40"]]
    theirs = EfficientNet(decode_arch_def(arch), num_features=64, device="meta")
    ours = archkit.build_model(archkit.as_spec("efficientnet_b0", values={
        "efficientnet.arch": arch, "final.0.channels": 64, "width_multiplier": 1.0}), device="meta")
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]


def test_a_group_key_outside_groups_is_refused() -> None:
    """repeat counts a group's blocks; in a stage's block: the stage's depth does (the key would change nothing)."""
    spec = {"name": "x", "layout": "efficientnet", "stage": {"type": "efficientnet"},
            "stem": [{"name": "conv_stem", "type": "conv", "channels": 32, "stride": 2},
                     {"name": "bn1", "type": "norm_act"}],
            "stages": [{"planes": 16, "depth": 1, "block": {"type": "ds"}},
                       {"planes": 24, "depth": 2, "stride": 2, "block": {"type": "ir", "repeat": 3}}],
            "head": [{"type": "adaptive_avgpool"}, {"type": "flatten"}, {"type": "linear", "features": 10}]}
    with pytest.raises(archkit.SpecError, match="repeat counts"):
        archkit.build_model(spec, device="meta")


@pytest.mark.parametrize("name", _marked(["mobilenetv3_small_050", "efficientnet_b0", "mobilenetv4_hybrid_medium"],
                                         {"mobilenetv3_small_050"}))
def test_layer_decay_groups_parameters_as_timms(name: str) -> None:
    assert_layer_decay_equal(name)
