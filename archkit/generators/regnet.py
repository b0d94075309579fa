"""RegNet design space: ``regnet: {depth, w_0, w_a, w_m, group_width, bottleneck_multiplier, se_ratio}``
expanded into ``stages:`` by the quantized linear rule of Radosavovic et al. 2020, as torchvision's
``BlockParams.from_init_params`` computes it (same float32 arithmetic, so the same widths; timm's
``generate_regnet`` computes them the same way), including the adjustment of stage widths to the group width:
torchvision's (``group_min_ratio: 0.9``) or timm's nearest multiple (``0``), and the block type: torchvision's
``regnet`` or timm's ``regnet_bottle``.
"""

from __future__ import annotations

import math
import struct

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..attention.base import make_divisible
from .base import Axis, Generator, GeneratorProblem

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
    group_min_ratio: float = Field(0.9, ge=0, lt=1, description="Inner widths become multiples of the group width "
                                   "as torchvision's make_divisible with this round_limit (0.9, torchvision's and "
                                   "timm's _tv models); 0: the nearest multiple (timm's quantize_float).")
    block: Literal["regnet", "regnet_bottle", "regnet_prebottle"] = Field(
        "regnet", description="The block type of the stages: torchvision's (regnet), timm's (regnet_bottle) or "
        "timm's pre-activation one (regnet_prebottle, RegNetV).")
    linear_out: bool = Field(False, description="No activation after a block's add (timm's RegNetZ; regnet_bottle).")


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
            raise GeneratorProblem("bottleneck_multiplier", f"bottleneck_multiplier {r.bottleneck_multiplier:g} leaves "
                                   f"stage {i + 1} (width {width}) without inner channels")
        group = min(r.group_width, inner)
        if r.group_min_ratio:
            inner = make_divisible(inner, group, round_limit=r.group_min_ratio)  # torchvision's _make_divisible
        else:
            inner = int(round(inner / group) * group)  # timm's quantize_float
        block = {"type": r.block, "group_width": group, "bottleneck_multiplier": r.bottleneck_multiplier}
        if r.se_ratio is not None:
            block["se_ratio"] = r.se_ratio
        if r.linear_out:
            if r.block != "regnet_bottle":
                raise GeneratorProblem("linear_out", "linear_out is a regnet_bottle block's (timm's RegNetZ)")
            block["linear_out"] = True
        out.append({"planes": int(inner / r.bottleneck_multiplier), "depth": depth, "stride": STRIDE, "block": block})
    return out



# what fit may vary (--vary w_a,w_0 or regnet.depth: plain depth is the depth multiplier)
_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
_DEPTHS = (0.5, 0.67, 0.75, 1.0, 1.25, 1.5, 2.0)


def _round8(v: float) -> int:
    return max(8, int(round(v / 8)) * 8)


def _w0_grid(v: float) -> list[int]:
    """Every multiple of 8 from half to twice ``v`` while that is a few; else nine steps in geometric progression."""
    lattice = list(range(_round8(v / 2), _round8(2 * v) + 1, 8))
    if len(lattice) <= 9:
        return lattice
    return sorted({_round8(v * 2 ** (k / 4)) for k in range(-4, 5)})


regnet = Generator(
    "regnet", RegNetSpec, stages, doc="RegNet's quantized linear stage widths and depths (Radosavovic et al. 2020), as torchvision computes "
    "them",
    axes=(
        Axis("w_a", "w_a", lambda v: [round(v * f, 2) for f in _FACTORS], lambda v: (0.0, max(8 * v, 256.0)), digits=2),
        Axis("w_0", "w_0", _w0_grid, lambda v: (8.0, max(8 * v, 512.0)), quantum=8, integer=True),
        Axis("depth", "blocks", lambda v: [max(1, round(v * f)) for f in _DEPTHS], integer=True),
        Axis("w_m", "w_m", lambda v: [v, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0]),
        Axis("group_width", "group_width", lambda v: [max(1, int(v) // 2), int(v), int(v) * 2], integer=True),
        Axis("bottleneck_multiplier", "bottleneck", lambda v: [v, 0.25, 0.5, 1.0]),
    ))
