"""timm's ``ResNet(...)`` constructor options, drawn at random and written as an archkit spec, give timm's
model: the same state_dict keys in order and shapes, a strict load, equal eval outputs.

The options: block, channels, depths, cardinality / base width, stem type and width,
``replace_stem_pool``, ``avg_down``, ``down_kernel_size``, ``block_reduce_first``, activation,
``aa_layer``, attention, ``output_stride``, ``in_chans``, ``num_classes``, ``drop_path_rate``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.layers import BlurPool2d, get_attn
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

import archkit

ACTS = {"relu": torch.nn.ReLU, "silu": torch.nn.SiLU, "leaky_relu": torch.nn.LeakyReLU}


@st.composite
def options(draw) -> dict:
    bottleneck = draw(st.booleans())
    width = draw(st.sampled_from([8, 16]))
    opts = {
        "block": "bottleneck" if bottleneck else "basic",
        "layers": [draw(st.integers(1, 2)) for _ in range(4)],
        "channels": [width, 2 * width, 4 * width, 8 * width],
        "cardinality": draw(st.sampled_from([1, 2, 4])) if bottleneck else 1,
        "base_width": draw(st.sampled_from([16, 64])) if bottleneck else 64,
        "stem_type": draw(st.sampled_from(["", "deep", "deep_tiered"])),
        "stem_width": draw(st.sampled_from([8, 16, 32])),
        "replace_stem_pool": draw(st.booleans()),
        "avg_down": draw(st.booleans()),
        "down_kernel_size": draw(st.sampled_from([1, 3])),
        "block_reduce_first": draw(st.sampled_from([1, 2])),
        "act": draw(st.sampled_from(sorted(ACTS))),
        "aa": draw(st.sampled_from([None, "blur", "avg"])),
        "attn": draw(st.sampled_from([None, "se", "eca"])),
        "output_stride": draw(st.sampled_from([8, 16, 32])),
        "in_chans": draw(st.sampled_from([1, 3, 4])),
        "num_classes": draw(st.sampled_from([0, 5, 10])),
        "drop_path_rate": draw(st.sampled_from([0.0, 0.1])),
    }
    return opts


def timm_model(o: dict) -> torch.nn.Module:
    return ResNet(BasicBlock if o["block"] == "basic" else Bottleneck, o["layers"], num_classes=o["num_classes"],
                  in_chans=o["in_chans"], output_stride=o["output_stride"], cardinality=o["cardinality"],
                  base_width=o["base_width"], stem_width=o["stem_width"], stem_type=o["stem_type"],
                  replace_stem_pool=o["replace_stem_pool"], block_reduce_first=o["block_reduce_first"],
                  down_kernel_size=o["down_kernel_size"], avg_down=o["avg_down"], channels=o["channels"],
                  act_layer=ACTS[o["act"]], aa_layer={"blur": BlurPool2d, "avg": torch.nn.AvgPool2d}.get(o["aa"]),
                  drop_path_rate=o["drop_path_rate"],
                  block_args={"attn_layer": get_attn(o["attn"])} if o["attn"] else None)


def archkit_spec(o: dict, size: int) -> dict:
    """The same network in archkit's terms (the translation a user would write)."""
    deep = "deep" in o["stem_type"]
    inplanes = o["stem_width"] * 2 if deep else 64
    if deep:
        first, second = (3 * (o["stem_width"] // 4), o["stem_width"]) if "tiered" in o["stem_type"] else \
            (o["stem_width"], o["stem_width"])
        conv1 = {"name": "conv1", "type": "sequential", "layers": [
            {"type": "conv", "channels": first, "kernel_size": 3, "stride": 2}, {"type": "norm"}, {"type": "act"},
            {"type": "conv", "channels": second, "kernel_size": 3}, {"type": "norm"}, {"type": "act"},
            {"type": "conv", "channels": inplanes, "kernel_size": 3}]}
    else:
        conv1 = {"name": "conv1", "type": "conv", "channels": inplanes, "kernel_size": 7, "stride": 2, "padding": 3}
    if o["replace_stem_pool"]:
        pool = [{"type": "conv", "channels": inplanes, "kernel_size": 3, "stride": 1 if o["aa"] else 2}]
        if o["aa"] == "blur":
            pool.append({"type": "blurpool"})
        elif o["aa"] == "avg":
            pool.append({"type": "avgpool", "kernel_size": 2})
        maxpool = {"name": "maxpool", "type": "sequential", "layers": [*pool, {"type": "norm"}, {"type": "act"}]}
    elif o["aa"] == "avg":
        maxpool = {"name": "maxpool", "type": "avgpool", "kernel_size": 2}
    elif o["aa"] == "blur":
        maxpool = {"name": "maxpool", "type": "sequential", "layers": [
            {"type": "maxpool", "kernel_size": 3, "stride": 1, "padding": 1}, {"type": "blurpool"}]}
    else:
        maxpool = {"name": "maxpool", "type": "maxpool", "kernel_size": 3, "stride": 2, "padding": 1}
    block = {"type": o["block"], "reduce_first": o["block_reduce_first"],
             "shortcut": "avg_down" if o["avg_down"] else "projection", "shortcut_kernel_size": o["down_kernel_size"]}
    if o["block"] == "bottleneck":
        block.update(groups=o["cardinality"], base_width=o["base_width"])
    if o["aa"]:
        block["aa"] = o["aa"]
    if o["attn"]:
        block["attn"] = [{"type": o["attn"]}]
    head = [{"name": "global_pool", "type": "adaptive_avgpool"}, {"name": "flatten", "type": "flatten"}]
    if o["num_classes"]:
        head.append({"name": "fc", "type": "linear", "features": o["num_classes"]})
    return {"name": "drawn", "input": {"channels": o["in_chans"], "size": [size, size]},
            "activation": {"type": o["act"]}, "output_stride": o["output_stride"],
            "drop_path_rate": o["drop_path_rate"],
            "stem": [conv1, {"name": "bn1", "type": "norm"}, {"name": "act1", "type": "act"}, maxpool],
            "block": block, "head": head,
            "stages": [{"planes": c, "depth": d, "stride": 1 if i == 0 else 2}
                       for i, (c, d) in enumerate(zip(o["channels"], o["layers"]))]}


@pytest.mark.slow
@settings(max_examples=settings.default.max_examples * 2 // 3)  # 40 timm models built twice under the ci profile
@given(o=options())
def test_drawn_timm_resnets_equal_their_specs(o: dict) -> None:
    _check(o)


@pytest.mark.parametrize("o", [
    dict(block="bottleneck", layers=[1, 2, 1, 1], channels=[16, 32, 64, 128], cardinality=4, base_width=16,
         stem_type="deep_tiered", stem_width=16, replace_stem_pool=True, avg_down=True, down_kernel_size=3,
         block_reduce_first=2, act="silu", aa="blur", attn="se", output_stride=8, in_chans=4, num_classes=5,
         drop_path_rate=0.1),
    dict(block="basic", layers=[2, 1, 1, 2], channels=[8, 16, 32, 64], cardinality=1, base_width=64,
         stem_type="", stem_width=64, replace_stem_pool=False, avg_down=False, down_kernel_size=1,
         block_reduce_first=1, act="leaky_relu", aa="avg", attn="eca", output_stride=16, in_chans=1, num_classes=0,
         drop_path_rate=0.0),
])
def test_two_timm_resnets_equal_their_specs(o: dict) -> None:
    """Two fixed draws in the default run; the property test above draws 40 under -m slow."""
    _check(o)


def _check(o: dict) -> None:
    torch.manual_seed(0)
    theirs = timm_model(o).eval()
    ours = archkit.build_model(archkit_spec(o, 64)).eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, o["in_chans"], 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
