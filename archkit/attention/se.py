"""Squeeze-and-excitation (Hu et al., CVPR 2018), as timm's ``SEModule``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..graph import Activation, MeanHW, Passthrough, Scope, Value
from .base import _Reduced, make_divisible


_TIMM_NAMES = {"reduce": "fc1", "norm": "bn", "act": "act", "expand": "fc2", "gate": "gate"}


def squeeze_excite(s: Scope, name: str, x: Value, reduced: int, *, act: Any = None, bn: str | None = "identity",
                   type_name: str = "SEModule", gate: str = "sigmoid", names: dict[str, str] | None = None) -> Value:
    """Global average -> 1x1 conv reduce (``fc1``) -> [``bn``] -> activation -> 1x1 conv expand (``fc2``)
    -> ``gate`` -> scale ``x``, as child ``name`` (timm's keys; torchvision's RegNet SE shares them).

    ``act`` is an activation layer (default: an in-place ReLU, timm's); ``bn`` is timm's norm slot: an
    Identity (``"identity"``, timm's default), the spec's norm (``"norm"``) or no child at all (None);
    ``gate``: ``sigmoid`` or ``hard_sigmoid`` (MobileNetV3's); ``names`` renames the children (the
    EfficientNet family's ``conv_reduce``, ``act1``, ``conv_expand``).
    """
    n = {**_TIMM_NAMES, **(names or {})}
    inner, (y,) = s.enter(name, type_name, x)
    c = x.shape[0]
    squeezed = inner.conv(n["reduce"], inner.apply(MeanHW(), y), reduced, 1, bias=True)
    if bn == "norm":
        squeezed = inner.norm(n["norm"], squeezed)
    elif bn == "identity":
        squeezed = inner.call(n["norm"], Passthrough("identity"), squeezed)
    squeezed = act.emit(inner, n["act"], squeezed) if act is not None else inner.call(n["act"], _RELU, squeezed)
    gated = inner.call(n["gate"], _GATES[gate], inner.conv(n["expand"], squeezed, c, 1, bias=True))
    return inner.exit(inner.mul(y, gated))


_RELU = Activation("relu", inplace=True)
_GATES = {"sigmoid": Activation("sigmoid"), "hard_sigmoid": Activation("hardsigmoid")}


class SqueezeExcite(_Reduced):
    """Squeeze-and-excitation channel gate (SE-ResNet; the EfficientNet, MobileNetV3 and RegNetY forms by keys)."""

    rd_ratio: float = Field(1 / 16, gt=0, le=1, description="Hidden width relative to the channels (1/r).")
    act: Literal["relu", "spec"] = Field("relu", description="The activation between its convs: ReLU (timm's "
                                         "SEModule default) or the spec's activation (timm's CSPNet and BYOB "
                                         "models pass theirs).")
    rd_from: Literal["self", "in", "out"] = Field("self", description="The width the hidden width is a ratio of: "
                                                  "the attachment's own input (timm's SEModule, MobileNetV3's SE on "
                                                  "the expanded width), the block's input (RegNet-Y, EfficientNet's "
                                                  "se_from_exp=False) or the block's output.")
    rounding: Literal["divisible", "round"] = Field("divisible", description="The hidden width: a multiple of "
                                                    "rd_divisor (timm's make_divisible, with round_limit), or the "
                                                    "nearest integer (torchvision's RegNet, timm's EfficientNet).")
    round_limit: float = Field(0.0, ge=0, lt=1, description="make_divisible's round_limit: one more multiple where "
                               "rounding down lost more than this share (timm's MobileNetV3: 0.9).")
    gate: Literal["sigmoid", "hard_sigmoid"] = Field("sigmoid", description="The gate (MobileNetV3: hard_sigmoid).")
    norm: Literal["identity", "none", "spec"] = Field("identity", description="The slot after the reduce conv: an "
                                                      "Identity (timm's SEModule), none at all (EfficientNet's), or "
                                                      "the spec's norm.")
    names: dict[Literal["reduce", "norm", "act", "expand", "gate"], str] = Field(
        default_factory=dict, description="Child names (default fc1, bn, act, fc2, gate, timm's SEModule; the "
                                          "EfficientNet family: {reduce: conv_reduce, act: act1, expand: conv_expand}).")

    @field_validator("names")
    @classmethod
    def _identifiers(cls, names: dict) -> dict:
        bad = [v for v in names.values() if not v.isidentifier()]
        if bad:
            raise ValueError(f"child names must be identifiers (got {bad[0]!r})")
        if len(set(names.values())) < len(names):
            raise ValueError("two children would share a name")
        return names

    def width(self, channels: int) -> int:
        """The hidden width for ``channels`` (the width ``rd_from`` names)."""
        if self.rd_channels:
            return self.rd_channels
        if self.rounding == "round":
            hidden = round(channels * self.rd_ratio)
            if hidden < 1:
                raise ValueError(f"rd_ratio {self.rd_ratio} of {channels} channels would give 0 hidden channels")
            return hidden
        return make_divisible(channels * self.rd_ratio, self.rd_divisor, round_limit=self.round_limit)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return self.emit_in(s, name, x, None)

    def emit_in(self, s: Scope, name: str, x: Value, block: Any) -> Value:
        base = x.shape[0]
        if self.rd_from != "self":
            if block is None:
                raise ValueError(f"rd_from: {self.rd_from} sizes from a block's widths; here is no block")
            base = block.in_channels if self.rd_from == "in" else block.out_channels
        return squeeze_excite(s, name, x, self.width(base), act=s.act_layer if self.act == "spec" else None,
                              bn={"identity": "identity", "none": None, "spec": "norm"}[self.norm], gate=self.gate,
                              names=self.names)
