"""Generated from the registries: every block and layer type is built, run forward and backward."""

from __future__ import annotations

import pytest
import torch
from pydantic import BaseModel

import archkit
from archkit.catalog import BLOCKS, LAYERS
from archkit.registry import Registry
from archkit.errors import SpecError
from archkit.plan import plan


def _tiny(block: dict, **extra) -> dict:
    return {
        "name": "tiny",
        "input": {"channels": 3, "size": [16, 16]},
        "stem": [{"type": "conv", "channels": 32}, {"type": "norm"}, {"type": "act"}],
        "block": block,
        # planes 16/32: the smallest that every built-in's defaults allow (ResNeXt 32x4d needs planes >= 16)
        "stages": [{"planes": 16, "depth": 2}, {"planes": 32, "depth": 2, "stride": 2}],
        "head": [{"type": "adaptive_avgpool"}, {"type": "flatten"}, {"type": "linear", "features": 5}],
        **extra,
    }


def _in_its_stage(name: str, **extra) -> dict:
    """The tiny network, in the stage type the block declares (a block that leaves striding to its stage); a block
    that cannot stride (MobileNetV4's attention) after a strided max pool instead."""
    spec = _tiny({"type": name}, stage={"type": BLOCKS.get(name).obj.stage}, **extra)
    if not BLOCKS.get(name).obj.stride:
        spec["stages"] = [spec["stages"][0], {"planes": 32, "depth": 2}]
        spec["stem"] = [*spec["stem"], {"type": "maxpool", "kernel_size": 2}]
    return spec


@pytest.mark.parametrize("name", BLOCKS.names())
def test_every_block_builds_runs_and_trains(name: str) -> None:
    spec = archkit.as_spec(_in_its_stage(name, seed=0))
    model = archkit.build_model(spec)
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    grads = [p.grad for p in model.layer2.parameters()]
    assert grads and all(g is not None for g in grads), "every block parameter takes part in the forward pass"
    first, later = (model.get_submodule(bp.name) for bp in plan(spec).stages[1].blocks)  # paths from the plan
    # the stage's first block got the shortcut (stride 2), later blocks did not; re-parameterizable blocks
    # have no shortcut module: their identity branch (a norm) is there only where the shape is kept
    kinds = [k.value for k in BLOCKS.get(name).obj.shortcuts]
    if kinds == ["none"]:
        assert first.identity is None and later.identity is not None
    elif any(k.builds_module for k in BLOCKS.get(name).obj.shortcuts):  # torchvision's downsample (None where not
        # needed), timm byobnet's shortcut; blocks with identity / none only (timm's EfficientNet family) build none
        slot = "shortcut" if hasattr(first, "shortcut") else "downsample"
        assert getattr(first, slot) is not None and any(True for _ in getattr(first, slot).parameters())
        assert getattr(later, slot) is None or not any(True for _ in getattr(later, slot).parameters())
    stem = len(spec.stem)
    assert model.layer2(model.layer1(model[:stem](x))).shape[-1] == 8


@pytest.mark.parametrize("name", BLOCKS.names())
def test_every_block_supports_meta_and_zero_init(name: str) -> None:
    spec = _in_its_stage(name, init={"zero_init_residual": True})
    model = archkit.build_model(spec, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    model = archkit.build_model(spec)  # zero_init_last (where the block has one) runs on real weights
    path = plan(archkit.as_spec(spec)).stages[1].blocks[1].name
    block = model.get_submodule(path)
    if callable(getattr(block, "zero_init_last", None)):
        zeroed = [n for n, p in block.named_parameters() if p.dim() == 1 and not p.any() and n.endswith("weight")]
        assert zeroed, "zero_init_residual left every norm scale of the block non-zero"
        plain = archkit.build_model(_in_its_stage(name))
        assert all(p.any() for n, p in plain.get_submodule(path).named_parameters() if n.endswith("weight"))


def _example(params_model: type[BaseModel]) -> dict:
    """Values for a layer's required fields (ints: 2), so each type is built from its own model."""
    example = {"layers": [{"type": "conv", "channels": 4}, {"type": "norm"}]}  # a nested group's content
    return {n: example.get(n, 2) for n, f in params_model.model_fields.items() if f.is_required() and n != "type"}


@pytest.mark.parametrize("name", LAYERS.names())
def test_every_layer_type_builds_and_runs(name: str) -> None:
    layer = {"type": name, **_example(LAYERS.get(name).obj)}
    spec = _tiny({"type": "basic"})
    places = [  # in the stem on a feature map, last in the head (after 32 or 64 channels), or on flat input
        {"stem": [{"type": "conv", "channels": 32}, layer]},
        {"head": [layer]},
        {"head": [{"type": "conv", "channels": 64}, layer]},  # attention pooling's 64-wide heads
        {"head": [{"type": "adaptive_avgpool"}, {"type": "flatten"}, layer]},
    ]
    built, refused = 0, []
    for place in places:
        try:
            model = archkit.build_model({**spec, **place})
        except SpecError as exc:  # e.g. a spatial layer on flat input: refused with a reason, never a crash
            assert "needs" in str(exc) or "input" in str(exc), exc
            refused.append(str(exc))
            continue
        assert model(torch.randn(2, 3, 16, 16)).shape[0] == 2
        built += 1
    assert built, f"{name} builds nowhere: {refused}"


def test_unknown_names_suggest_the_nearest() -> None:
    with pytest.raises(SpecError, match="did you mean 'bottleneck'"):
        BLOCKS.get("bottlenek")


def test_duplicate_registration_names_both_owners() -> None:
    registry = Registry("block")
    registry.register("x", object, kind="block", origin="pkg-a 1.0")
    with pytest.raises(ValueError, match="already registered by pkg-a 1.0; pkg-b 2.0"):
        registry.register("x", object, kind="block", origin="pkg-b 2.0")


def test_register_block_joins_the_spec_union() -> None:
    from archkit.modules import BasicBlock

    class Doubled(BasicBlock):
        """A BasicBlock under another name."""

    archkit.register_block("doubled_test", Doubled)
    try:
        assert "doubled_test" in archkit.list_blocks()
        model = archkit.build_model(_tiny({"type": "doubled_test"}), device="meta")
        assert isinstance(model.layer1[0], Doubled)
    finally:
        BLOCKS.unregister("doubled_test")
    with pytest.raises(SpecError, match="unknown block type 'doubled_test'"):
        archkit.build_model(_tiny({"type": "doubled_test"}), device="meta")


def test_seed_gives_reproducible_weights() -> None:
    a = archkit.build_model(_tiny({"type": "bottleneck"}, seed=7)).state_dict()
    b = archkit.build_model(_tiny({"type": "bottleneck"}, seed=7)).state_dict()
    c = archkit.build_model(_tiny({"type": "bottleneck"}, seed=8)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_multipliers_scale_stages() -> None:
    model = archkit.build_model(_tiny({"type": "basic"}, width_multiplier=2.0, depth_multiplier=1.5), device="meta")
    assert len(model.layer1) == 3 and model.layer2[0].conv1.out_channels == 64
    assert model.linear.in_features == 64


def test_groupnorm_and_silu_flow_to_blocks() -> None:
    spec = _tiny({"type": "bottleneck"}, norm={"type": "groupnorm", "groups": 4}, activation={"type": "silu"})
    model = archkit.build_model(spec)
    assert isinstance(model.layer1[0].bn1, torch.nn.GroupNorm) and isinstance(model.layer1[0].relu, torch.nn.SiLU)
    assert isinstance(model[1], torch.nn.GroupNorm)  # the stem's 'norm' layer follows the spec's choice


def test_plugin_state_set_in_a_constructor_survives_the_build() -> None:
    from archkit.modules import BasicBlock

    class Filtered(BasicBlock):
        """Holds a fixed filter, as an anti-aliasing block would."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer("filt", torch.full((3,), 7.0))

    archkit.register_block("filtered_test", Filtered)
    try:
        model = archkit.build_model(_tiny({"type": "filtered_test"}))
        assert torch.equal(model.layer1[0].filt, torch.full((3,), 7.0))  # not left to to_empty's garbage
    finally:
        BLOCKS.unregister("filtered_test")
