"""RegNet design space: ``regnet: {depth, w_0, w_a, w_m, group_width, bottleneck_multiplier, se_ratio}``
expanded into ``stages:`` by the quantized linear rule of Radosavovic et al. 2020, as torchvision's
``BlockParams.from_init_params`` computes it (same float32 arithmetic, so the same widths), including
its adjustment of stage widths to the group width.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .attention.base import make_divisible
from .errors import Mark, SpecError
from .loader import MDict, MList

QUANT = 8  # stage widths are multiples of 8
STRIDE = 2  # every stage halves the resolution


class RegNetSpec(BaseModel):
    """The four numbers of a RegNet and its block settings (torchvision's names)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    depth: int = Field(ge=1, le=1000, description="Blocks in all.")
    w_0: int = Field(ge=8, le=1 << 16, multiple_of=8, description="Initial width (a multiple of 8).")
    w_a: float = Field(ge=0, le=1 << 16, description="Width slope per block.")
    w_m: float = Field(gt=1, le=64, description="Width multiplier between stages (quantization in log space).")
    group_width: int = Field(ge=1, le=4096, description="Channels per group of the 3x3 convolutions.")
    bottleneck_multiplier: float = Field(1.0, gt=0, le=16, description="Inner width relative to the stage width.")
    se_ratio: float | None = Field(None, gt=0, le=1, description="RegNet-Y's SE ratio (0.25); none for RegNet-X.")


def _f32(x: float) -> float:
    """``x`` rounded to float32, as each of torch's float32 operations rounds its result."""
    return struct.unpack("f", struct.pack("f", x))[0]


def block_widths(r: RegNetSpec) -> list[int]:
    """Each block's width, computed as torchvision's ``BlockParams.from_init_params`` does in float32
    tensors (step by step rounded to float32 here), so a width on a rounding edge lands where torchvision's does."""
    w_a, w_0, log_w_m = _f32(r.w_a), _f32(r.w_0), _f32(math.log(r.w_m))
    widths = []
    for i in range(r.depth):
        cont = _f32(_f32(_f32(i) * w_a) + w_0)  # torch.arange(depth) * w_a + w_0
        capacity = round(_f32(_f32(math.log(_f32(cont / w_0))) / log_w_m))  # torch.round: half to even, as round()
        power = _f32(_f32(r.w_m) ** capacity)  # torch.pow(w_m, capacity)
        widths.append(int(round(_f32(_f32(w_0 * power) / QUANT)) * QUANT))
    return widths


def stages(r: RegNetSpec) -> list[dict]:
    """Per-stage width, depth and block settings, as torchvision's ``BlockParams.from_init_params``."""
    widths = block_widths(r)
    splits = [w != wp for w, wp in zip([*widths, 0], [0, *widths])]
    stage_widths = [w for w, t in zip(widths, splits[:-1]) if t]
    starts = [d for d, t in enumerate(splits) if t]
    depths = [b - a for a, b in zip(starts, starts[1:])]
    out = []
    for i, (width, depth) in enumerate(zip(stage_widths, depths)):
        inner = int(width * r.bottleneck_multiplier)
        if inner < 1:
            raise ValueError(f"bottleneck_multiplier {r.bottleneck_multiplier:g} leaves stage {i + 1} (width {width}) "
                             "without inner channels")
        group = min(r.group_width, inner)
        inner = make_divisible(inner, group, round_limit=0.9)  # torchvision's _make_divisible
        out.append({"planes": int(inner / r.bottleneck_multiplier), "depth": depth, "stride": STRIDE,
                    "block": {"type": "regnet", "group_width": group, "bottleneck_multiplier": r.bottleneck_multiplier,
                              "se_ratio": r.se_ratio}})
    return out


def expand(tree: Any, data: dict, marks: dict) -> Any:
    """The tree with ``regnet:`` replaced by the ``stages:`` it generates (located errors otherwise)."""
    if not isinstance(tree, dict) or "regnet" not in tree:
        return tree
    from .spec_errors import problem

    mark = getattr(tree, "marks", {}).get("regnet")
    try:
        r = RegNetSpec.model_validate(data["regnet"])
    except ValidationError as exc:
        wrapper = type("Spec", (BaseModel,), {"__annotations__": {"regnet": RegNetSpec}})
        raise SpecError([problem({**err, "loc": ("regnet", *err["loc"])}, data, marks, wrapper)
                         for err in exc.errors()]) from None
    if "stages" in tree:
        raise SpecError("a regnet: spec generates its stages from the regnet: numbers; set those (or block:/stage: "
                        "defaults) instead of stages:", getattr(tree, "marks", {}).get("stages") or mark, "stages")
    try:
        generated = stages(r)
    except ValueError as exc:
        numbers = tree.get("regnet")
        raise SpecError(str(exc), getattr(numbers, "marks", {}).get("bottleneck_multiplier") or mark,
                        "regnet.bottleneck_multiplier") from None
    if not generated or any(s["depth"] < 1 for s in generated):
        raise SpecError("yields no valid stage widths", mark, "regnet")
    out = MDict(tree, mark=getattr(tree, "mark", None))
    out.marks = dict(getattr(tree, "marks", {}))
    del out["regnet"]
    out.marks.pop("regnet", None)
    stage_list = MList(mark=mark)
    for s in generated:
        node = MDict(s, mark=mark)
        node.marks = {k: mark for k in s}
        block = MDict(s["block"], mark=mark)
        block.marks = {k: mark for k in s["block"]}
        node["block"] = block
        stage_list.append(node)
        stage_list.marks.append(mark)
    out["stages"] = stage_list
    out.marks["stages"] = mark or Mark("regnet")
    return out
