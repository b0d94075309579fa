"""Scaling rules as data (``scaling:``): widths rounded as timm's ``make_divisible`` (round_limit), depths as
timm's ``depth_trunc`` ('ceil', 'round'), and which parts a width multiplier scales. The references are timm's
own functions, over the multipliers timm's EfficientNet/MobileNet configurations use."""

from __future__ import annotations

import pytest
from timm.layers import make_divisible
from timm.models._efficientnet_builder import _scale_stage_depth

import archkit
from archkit.specs import scaled_depth, scaled_width

# channel multipliers and depth multipliers of timm's efficientnet.py / mobilenetv3.py configurations
CHANNEL = [0.35, 0.5, 0.75, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 4.3]
DEPTH = [0.8, 1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1, 3.6, 5.3]


@pytest.mark.parametrize("divisor, round_limit", [(8, 0.9), (8, 0.0), (16, 0.9), (4, 0.9)])
def test_widths_round_as_timms_make_divisible(divisor: int, round_limit: float) -> None:
    for multiplier in CHANNEL:
        for width in [8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 160, 192, 320, 1280, 1536]:
            expected = width if multiplier == 1.0 else make_divisible(width * multiplier, divisor,
                                                                      round_limit=round_limit)
            assert scaled_width(width, multiplier, divisor, round_limit) == expected, (width, multiplier)


@pytest.mark.parametrize("rounding", ["ceil", "round"])
def test_depths_round_as_timms_depth_trunc(rounding: str) -> None:
    for multiplier in DEPTH:
        for depth in range(1, 17):
            expected = len(_scale_stage_depth([{"block": "ir"}], [depth], multiplier, rounding))
            assert scaled_depth(depth, multiplier, rounding) == expected, (depth, multiplier)


def test_scaling_parts_reach_the_stem_and_final_layers_not_the_classes() -> None:
    spec = archkit.load_spec("gernet_s", ["width_multiplier=0.5", "width_divisor=8",
                                         "scaling={round_limit: 0.9, parts: [stages, stem, final, head]}"])
    plain = archkit.load_spec("gernet_s", ["width_multiplier=0.5", "width_divisor=8"])
    ours = archkit.build_model(spec, device="meta")
    theirs = archkit.build_model(plain, device="meta")
    stem = plain.stem[0].channels
    assert ours.stem.conv.out_channels == make_divisible(stem * 0.5, 8) != theirs.stem.conv.out_channels
    final = plain.final[0].channels
    assert ours.final_conv.conv.out_channels == make_divisible(final * 0.5, 8)
    assert theirs.final_conv.conv.out_channels == final  # not named in parts: kept
    assert ours.get_classifier().out_features == theirs.get_classifier().out_features == 1000


def test_nested_stem_layers_scale_and_a_conv_classifier_keeps_the_classes() -> None:
    deep = archkit.load_spec("resnet26t", ["width_multiplier=0.5", "width_divisor=8", "scaling.parts=[stages, stem]"])
    model = archkit.build_model(deep, device="meta")
    plain = archkit.build_model("resnet26t", device="meta")
    assert [m.out_channels for m in model.conv1 if hasattr(m, "out_channels")] == \
        [make_divisible(m.out_channels * 0.5, 8, round_limit=0.0) for m in plain.conv1 if hasattr(m, "out_channels")]
    head = ["head=[{type: conv, name: pre, channels: 256, kernel_size: 1}, {type: act}, "
            "{type: conv, name: classes, channels: 10, kernel_size: 1}, {type: adaptive_avgpool}, {type: flatten}]"]
    spec = archkit.load_spec("resnet18", [*head, "width_multiplier=0.5", "scaling.parts=[stages, head]"])
    built = archkit.build_model(spec, device="meta")
    assert built.pre.out_channels == 128 and built.classes.out_channels == 10
