"""Issue 32, "a family is data": what used to be one family's habit in code is now read from the plan or
declared by the type, and holds for every family (timm's as the reference)."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.optim._param_groups import param_groups_layer_decay

import archkit

FAMILIES = ["resnet50d", "cspresnet50", "cspdarknet53", "cs3darknet_s", "darknet53", "repvgg_a0",
            "gcresnet50t"]


def _scales(model: torch.nn.Module, groups: list[dict]) -> dict[str, float]:
    """Each parameter's learning-rate scale."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: round(g["lr_scale"], 6) for g in groups for p in g["params"]}


@pytest.mark.parametrize("name", FAMILIES)
def test_layer_decay_groups_equal_timms_in_every_family(name: str) -> None:
    """group_matcher comes from the plan's module paths: a stage's own modules join its first block (before
    the blocks) or its last (after: CSP's transitions), as timm's stages do; the same numbers without timm."""
    ours, theirs = archkit.create_model(name, device="meta"), timm.create_model(name, device="meta")
    expected = _scales(theirs, param_groups_layer_decay(theirs, weight_decay=0.0, layer_decay=0.75))
    assert _scales(ours, param_groups_layer_decay(ours, weight_decay=0.0, layer_decay=0.75)) == expected
    assert _scales(ours, archkit.param_groups(ours, lr=1.0, layer_decay=0.75)) == expected  # without timm


# --- one primitive table: what a spec may now say, each equal to timm's or torch's module ----------------

SMALL = ["input.size=[30, 30]", "width_multiplier=0.125"]
PRIMITIVES = {
    "gelu": ["activation={type: gelu}"], "gelu_tanh": ["activation={type: gelu, approximate: tanh}"],
    "hard_swish": ["activation={type: hard_swish}"], "hard_sigmoid": ["activation={type: hard_sigmoid}"],
    "relu6": ["activation={type: relu6}"], "mish": ["activation={type: mish}"], "sigmoid": ["activation={type: sigmoid}"],
    "tanh": ["activation={type: tanh}"], "layernorm2d": ["norm={type: layernorm2d}"], "rmsnorm2d": ["norm={type: rmsnorm2d}"],
    "simplenorm2d": ["norm={type: simplenorm2d}"], "groupnorm_size": ["norm={type: groupnorm, group_size: 4}"],
    "same_s2": ["stem.0.padding=same"], "same_even": ["stem.0.padding=same", "stem.0.stride=1", "stem.0.kernel_size=4"],
    "layer_scale_pool": ["stem=[{type: conv, channels: 8, kernel_size: 3}, {type: layer_scale}, "
                         "{type: avgpool, kernel_size: 3, stride: 2, padding: 1, count_include_pad: false}]"],
}


@pytest.mark.parametrize("case", sorted(PRIMITIVES))
def test_new_primitives_cost_what_a_meta_forward_measures(case: str) -> None:
    from archkit import summary
    from archkit.oracle import measure_meta

    spec = archkit.load_spec("resnet18", [*SMALL, *PRIMITIVES[case]])
    ours, oracle = summary.measure(spec, depth=2), measure_meta(spec, depth=2)
    assert [(r.name, r.output_shape, r.params, r.macs) for r in ours.rows] == \
        [(r.name, r.output_shape, r.params, r.macs) for r in oracle.rows]
    assert ours.activation_bytes == oracle.activation_bytes


def test_new_primitives_compute_what_timm_and_torch_do() -> None:
    import importlib

    import torch.nn.functional as F
    from timm.layers import LayerNorm2d, LayerScale2d, RmsNorm2d

    from archkit import lower
    from archkit import graph as g

    conv_same = importlib.import_module("timm.layers.conv2d_same").Conv2dSame
    torch.manual_seed(0)
    x = torch.randn(2, 6, 11, 13)
    acts = {"gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "hardswish": F.hardswish,
            "hardsigmoid": F.hardsigmoid, "relu6": F.relu6, "mish": F.mish, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    for kind, fn in acts.items():
        torch.testing.assert_close(lower.module_of(g.Activation(kind))(x), fn(x))
    for ours_op, theirs in ((g.LayerNorm2d(6, 1e-6), LayerNorm2d(6)), (g.RmsNorm2d(6, 1e-6), RmsNorm2d(6)),
                            (g.LayerScale(6, 0.3), LayerScale2d(6, 0.3)),
                            (g.Conv2dSame(6, 4, 3, 2, 0, 1, 1, True), conv_same(6, 4, 3, 2)),
                            (g.Conv2dSame(6, 4, 4, 1, 0, 2, 2, False), conv_same(6, 4, 4, 1, dilation=2, groups=2,
                                                                                 bias=False))):
        ours = lower.module_of(ours_op)
        with torch.no_grad():
            for p in theirs.parameters():
                p.uniform_(-1, 1)
        ours.load_state_dict(theirs.state_dict(), strict=True)  # timm's keys (gamma, weight, bias)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x))
            assert tuple(ours(x).shape) == (2, *ours_op.out_shape(tuple(x.shape[1:])))
    pool = lower.module_of(g.Pool2d("avg", 3, 2, 1, count_include_pad=False))
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))


def test_a_stem_layers_default_name_never_takes_a_head_layers_name() -> None:
    """torchvision's layout is one namespace: an unnamed stem avgpool next to the head's named avgpool."""
    spec = archkit.load_spec("resnet18", [*SMALL, "stem=[{type: conv, channels: 8}, {type: avgpool, kernel_size: 2}]"])
    model = archkit.build_model(spec, device="meta")
    assert type(model.avgpool).__name__ == "AdaptiveAvgPool2d" and type(model.avgpool2).__name__ == "AvgPool2d"


# --- attachments see their block: an SE sized from the block's input or output, its gate and names as keys ----

def test_an_se_sized_from_the_blocks_input_is_efficientnets() -> None:
    """EfficientNet's SqueezeExcite (se_from_exp=False): on the expanded width, its hidden width from the block's
    input, SiLU between, no norm slot, timm's child names; equal to timm's module with the same weights."""
    from timm.models._efficientnet_blocks import SqueezeExcite

    attn = {"type": "se", "position": "mid", "rd_from": "in", "rd_ratio": 0.25, "rounding": "round", "act": "spec",
            "norm": "none", "names": {"reduce": "conv_reduce", "act": "act1", "expand": "conv_expand"}}
    spec = archkit.as_spec("resnet50", values={"input.size": [32, 32], "activation": {"type": "silu"},
                                               "block.attn": [attn]})
    model = archkit.build_model(spec).eval()
    ours = model.layer2[1].attn  # the block's input: 512 channels -> 128 hidden (in the 128-wide middle)
    theirs = SqueezeExcite(128, rd_channels=round(512 * 0.25), act_layer=torch.nn.SiLU).eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 128, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_an_se_with_mobilenetv3s_rounding_and_gate() -> None:
    """MobileNetV3's SE: the expanded width / 4 made divisible by 8 (round_limit 0.9), ReLU, hard sigmoid."""
    from functools import partial

    from timm.layers import make_divisible
    from timm.models._efficientnet_blocks import SqueezeExcite

    attn = {"type": "se", "position": "mid", "rd_ratio": 0.25, "rd_divisor": 8, "round_limit": 0.9, "norm": "none",
            "gate": "hard_sigmoid", "names": {"reduce": "conv_reduce", "act": "act1", "expand": "conv_expand"}}
    model = archkit.create_model("resnet18", **{"input.size": [32, 32], "width_multiplier": 0.375, "block.attn": [attn]})
    ours = model.layer1[0].attn.eval()  # 24 channels: 24 / 4 = 6 -> 8
    theirs = SqueezeExcite(24, rd_round_fn=partial(make_divisible, divisor=8), gate_layer=torch.nn.Hardsigmoid).eval()
    assert ours.conv_reduce.out_channels == theirs.conv_reduce.out_channels == 8
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 24, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


# --- stage rules as data: DropBlock in the last two stages, in every family that has a slot for it -------------

@pytest.mark.parametrize("name", ["resnet50d", "gernet_s", "resnet33ts", "regnetz_b16", "repvgg_a0"])
def test_drop_block_sits_where_timms_does(name: str) -> None:
    """timm's drop_blocks: the last two stages (gernet_s has five), sizes 5 then 3; byob blocks in a kxk conv's
    norm (``conv2_kxk.bn.drop``), ResNet blocks as their own ``drop_block`` child."""
    def blocks(model: torch.nn.Module) -> dict:
        return {n: (m.drop_prob, m.block_size, m.gamma_scale) for n, m in model.named_modules()
                if type(m).__name__ == "DropBlock2d"}

    theirs = blocks(timm.create_model(name, drop_block_rate=0.1, device="meta"))
    assert theirs and blocks(archkit.create_model(name, drop_block_rate=0.1, device="meta")) == theirs
    if name != "resnet50d":  # timm's byobnet takes the last stage's block size too (9, then 5)
        size = blocks(timm.create_model(name, drop_block_rate=0.1, drop_block_size=5, device="meta"))
        assert blocks(archkit.create_model(name, drop_block_rate=0.1, drop_block_size=5, device="meta")) == size
