"""The analytic summary against the meta-device oracle: random specs drawn over every registered block,
attention, norm and activation type (plugins included), compared row by row for output shapes,
parameters and MACs, exactly. The oracle is torch's own FlopCounterMode on the built model."""

from __future__ import annotations

import typing

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import archkit
from archkit.oracle import measure_meta
from archkit import summary
from archkit.errors import SpecError
from archkit.catalog import ATTENTION, BLOCKS

SMALL = {"groups": [1, 2, 4], "cardinality": [1, 2, 4], "base_width": [4, 16, 64], "bottle_ratio": [0.25, 0.5, 1.0],
         "reduction": [4, 8], "divisor": [1, 8], "dropout": [0.0, 0.3], "aa": [None, "blur", "avg"],
         "reduce_first": [1, 2], "shortcut_kernel_size": [1, 3], "group_size": [None, 1, 2], "block_size": [1, 2],
         "extra_conv": [False, True], "bottle_in": [False, True], "linear_out": [False, True]}


def _params(draw, model: type) -> dict:
    """Values for a params model's own fields: small ones for known names, else its defaults."""
    out = {}
    for name, field in model.model_fields.items():
        if name in SMALL:
            out[name] = draw(st.sampled_from(SMALL[name]))
        elif name in ("rd_ratio",):
            out[name] = draw(st.sampled_from([0.125, 0.25, 0.5]))
        elif name == "rd_divisor":
            out[name] = draw(st.sampled_from([1, 4]))
        elif name in ("fuse_add", "fuse_scale", "use_attn"):
            out[name] = draw(st.booleans())
        elif name == "kernel_size" and typing.get_origin(field.annotation) is not None:
            out[name] = draw(st.sampled_from([None, 3, 5]))
    return out


@st.composite
def random_specs(draw) -> dict:
    block_type = draw(st.sampled_from(sorted(BLOCKS.names("block"))))  # every plugin loaded: a stable list
    kind = BLOCKS.get(block_type).obj
    block = {"type": block_type, **_params(draw, kind.params),
             "shortcut": draw(st.sampled_from([None, *[k.value for k in kind.shortcuts if k.value != "stage_conv"]]))}
    attn = []
    for _ in range(draw(st.integers(0, 2)) if kind.attn_positions else 0):
        name = draw(st.sampled_from(ATTENTION.names()))
        attn.append({"type": name, "position": draw(st.sampled_from(kind.attn_positions)),
                     **_params(draw, ATTENTION.get(name).obj)})
    block["attn"] = attn
    stages = [{"planes": draw(st.integers(1, 24)), "depth": draw(st.integers(1, 3)),
               "stride": draw(st.sampled_from([1, 2])), "dilate": draw(st.booleans())}
              for _ in range(draw(st.integers(1, 3)))]
    size = draw(st.integers(6, 33))
    stem_channels = draw(st.integers(1, 32))
    norm = draw(st.sampled_from([{"type": "batchnorm"}, {"type": "groupnorm", "groups": 1},
                                 {"type": "evonorm_s0a", "groups": 1}]))
    act = draw(st.sampled_from([{"type": "relu"}, {"type": "leaky_relu", "inplace": False}, {"type": "silu"}]))
    return {
        "name": "random", "input": {"channels": draw(st.integers(1, 4)), "size": [size, draw(st.integers(6, 33))]},
        "norm": norm, "activation": act,
        "stem": [{"name": "conv1", "type": "conv", "channels": stem_channels, "kernel_size": draw(st.sampled_from([1, 3, 7])),
                  "stride": draw(st.sampled_from([1, 2]))}, {"name": "bn1", "type": "norm"}, {"type": "act"},
                 {"type": draw(st.sampled_from(["maxpool", "avgpool"])), "kernel_size": 2, "stride": 1}],
        "block": block, "stages": stages, "stage": {"type": kind.stage},  # the stage type the block is built in
        "head": [{"type": "adaptive_avgpool"}, {"type": "flatten"}, {"name": "fc", "type": "linear",
                                                                      "features": draw(st.integers(1, 20))}],
    }


@given(data=random_specs(), batch=st.integers(1, 3))
def test_analytic_equals_meta_for_random_specs(data: dict, batch: int) -> None:
    try:
        spec = archkit.as_spec(data)
        ours = summary.measure(spec, batch_size=batch, depth=2)
    except SpecError:
        assume(False)  # an impossible combination (e.g. a block that refuses dilation), refused in one line
        return
    oracle = measure_meta(spec, batch_size=batch, depth=2)
    key = [(r.name, r.type, r.depth, r.output_shape, r.params, r.macs) for r in ours.rows]
    assert key == [(r.name, r.type, r.depth, r.output_shape, r.params, r.macs) for r in oracle.rows]
    assert (ours.total_params, ours.macs, ours.output_shape) == (oracle.total_params, oracle.macs,
                                                                 oracle.output_shape)
    # activation memory: the bytes each op writes in that forward (one estimator, the reference's)
    assert ours.activation_bytes == oracle.activation_bytes
    # pycls' activations: the elements convolutions and linear layers output (hooks on the built model)
    assert ours.activations == oracle.activations


@pytest.mark.parametrize("name", ["resnet50", "resnext101_64x4d", "seresnet50", "ecaresnet50d", "resnetv2_50",
                                  "darknet53", "wrn28_10", "cifar_resnet56", "resnet50_dilated"])
def test_shipped_specs_analytic_equals_meta(name: str) -> None:
    spec = archkit.load_spec(name)
    ours, oracle = summary.measure(spec, depth=2), measure_meta(spec, depth=2)
    assert [(r.name, r.output_shape, r.params, r.macs) for r in ours.rows] == \
        [(r.name, r.output_shape, r.params, r.macs) for r in oracle.rows]
    assert ours.activations == oracle.activations


def test_a_block_without_a_cost_is_measured_in_the_same_table() -> None:
    from archkit.modules import Bottleneck

    class Doubled(Bottleneck):
        """Inherits Bottleneck's structure but not its cost (a subclass may change the structure)."""

    archkit.register_block("doubled_cost_test", Doubled)
    try:
        spec = archkit.load_spec("resnet50", ["block.type=doubled_cost_test"])
        ours = summary.measure(spec, depth=2)
        assert ours.total_params == 25_557_032 and ours.macs == archkit_macs("resnet50")
    finally:
        BLOCKS.unregister("doubled_cost_test")


def archkit_macs(name: str) -> int:
    return summary.measure(archkit.load_spec(name)).macs


@pytest.mark.parametrize("name, indices", [("resnet18", [1]), ("gernet_s", [0]), ("gernet_s", [1, 5])])
def test_a_backbone_summary_counts_what_the_backbone_keeps(name: str, indices: list[int]) -> None:
    """features_only with fewer outputs prunes the later stages (and final layers): so does the summary."""
    spec = archkit.as_spec(name, values={"features_only": True, "out_indices": indices})
    model = archkit.build_model(spec, device="meta")
    ours, oracle = summary.measure(spec), measure_meta(spec)
    assert ours.total_params == sum(p.numel() for p in model.parameters()) == oracle.total_params
    assert (ours.macs, ours.activation_bytes) == (oracle.macs, oracle.activation_bytes)
