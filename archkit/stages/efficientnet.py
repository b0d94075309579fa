"""timm's EfficientNet-family stage (``_efficientnet_builder.py``: ``EfficientNetBuilder``): the blocks are the
stage's children (``blocks.N.M``), only the first strided. A stage is either the common form (``depth`` blocks of
``block:`` or ``blocks:``, all of the stage's width) or ``groups:``, timm's block strings of one stage: each group
a block of its own width (``channels``) repeated ``repeat`` times, the depth multiplier's blocks shared out over the
groups as timm's ``_scale_stage_depth`` does. At output stride 16/8 the strided block keeps the dilation before the
stage and the blocks after it take the new one, as timm's builder."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializeAsAny, model_validator

from ..attention.base import make_divisible
from ..params import BlockSpec, StageParams
from ..scaling import scaled_depth
from .base import StageInput, StageProblem, StageResult, plan_blocks, stage_type


class EfficientNetStage(StageParams):
    """The stage's groups (timm's block strings), or the common block: / blocks: form."""

    groups: list[SerializeAsAny[BlockSpec]] | None = Field(None, min_length=1, max_length=64, description=(
        "The stage's kinds of block in order, each with its own repeat and channels (timm's block strings of one "
        "stage); depth is their repeats' sum, planes the last one's channels."))
    first_exp_ratio: float | None = Field(None, gt=0, le=64, description="The first block's expansion, in place of "
                                          "its group's (timm's builder where a space-to-depth run ends: a quarter).")

    @model_validator(mode="after")
    def _groups_agree(self) -> "EfficientNetStage":
        if not self.groups:
            return self
        if self.block is not None or self.blocks or self.pattern:
            raise ValueError("a stage gives groups: or block:/blocks:/pattern:, not both (block strings make groups: "
                             "set a block's keys in its string or the efficientnet: settings, not a block: default)")
        total = sum(getattr(g, "repeat", 1) for g in self.groups)
        if total != self.depth:
            raise ValueError(f"depth {self.depth} is not the groups' repeats' sum {total}")
        last = getattr(self.groups[-1], "channels", None)
        if last is not None and last != self.planes:
            raise ValueError(f"planes {self.planes} is not the last group's channels {last}")
        return self

    def scaled_depth(self, multiplier: float, rounding: str) -> int:
        """timm's ``_scale_stage_depth``: the scaled total shared over the groups, each at least one block."""
        total = scaled_depth(self.depth, multiplier, rounding)
        return sum(distribute(_repeats(self), total)) if self.groups else total


def _repeats(stage: "EfficientNetStage") -> list[int]:
    return [getattr(g, "repeat", 1) for g in stage.groups or ()]


def distribute(repeats: list[int], total: int) -> list[int]:
    """timm's ``_scale_stage_depth``: ``total`` blocks shared out over the groups in proportion, from the last."""
    left, out = sum(repeats), []
    for r in reversed(repeats):
        share = max(1, round(r / left * total))
        out.append(share)
        left -= r
        total -= share
    return out[::-1]


def _unshared(repeats: list[int], depth: int) -> int:
    """The total the plan's ``depth`` was shared from (``scaled_depth`` may have given each group one more)."""
    for total in range(depth, 0, -1):
        if sum(distribute(repeats, total)) == depth:
            return total
    raise StageProblem(("depth",), f"{depth} blocks cannot be shared over {len(repeats)} groups")


def _own(si: StageInput, block: Any, planes: int) -> tuple[Any, int]:
    """``block`` with the widths it names scaled by the spec's rule, and its output width."""
    fields = [f for f in getattr(block, "scaled_widths", ()) if isinstance(getattr(block, f, None), int)]
    update = {f: _rounded(si, getattr(block, f)) for f in fields if getattr(block, f)}
    if update:
        block = block.model_copy(update=update)
    own = getattr(block, "channels", None)
    return block, own if own is not None else planes


def _rounded(si: StageInput, width: int) -> int:
    """timm's ``round_chs_fn``: the width times the multiplier, a multiple of the divisor at any multiplier."""
    multiplier, divisor, round_limit = si.widths
    return make_divisible(width * multiplier, divisor, round_limit=round_limit)


def settings(si: StageInput) -> list[tuple[Any, tuple, int]]:
    """Each block's (params, where, planes)."""
    stage = si.stage
    if not stage.groups:
        if stage.blocks and len(stage.blocks) != si.depth:
            raise StageProblem(("blocks",), f"lists {len(stage.blocks)} blocks for a stage of depth {si.depth}")
        places = [(stage.blocks[j], ("blocks", j)) if stage.blocks else (stage.block, ("block",))
                  for j in range(si.depth)]
        out = [(block, where, planes) for (block, planes), (_, where) in
               zip((_own(si, b, si.planes) for b, _ in places), places)]
    else:
        repeats = distribute(_repeats(stage), _unshared(_repeats(stage), si.depth))
        out = []
        for i, (group, r) in enumerate(zip(stage.groups, repeats)):
            block, planes = _own(si, group, si.planes)
            if getattr(block, "repeat", 1) != 1:
                block = block.model_copy(update={"repeat": 1})  # counted here: each of the group's blocks is one
            out += [(block, ("groups", i), planes)] * r
    for j in range(1, len(out)):  # a space-to-depth run goes on after its first block (timm's builder)
        if getattr(out[j][0], "s2d", 0) == 1 and getattr(out[j - 1][0], "s2d", 0):
            block, where, planes = out[j]
            out[j] = (block.model_copy(update={"s2d": 2}), where, planes)
    if stage.first_exp_ratio is not None:
        block, where, planes = out[0]
        if "exp_ratio" not in type(block).model_fields:
            raise StageProblem(("first_exp_ratio",), f"the first block ({block.type}) has no expansion")
        out[0] = (block.model_copy(update={"exp_ratio": stage.first_exp_ratio}), where, planes)
    return out


@stage_type("efficientnet", EfficientNetStage)
def efficientnet(si: StageInput) -> StageResult:
    """The blocks as the stage (blocks.N.M), the first strided, each group its own width (timm's EfficientNet)."""
    stride, dilation = si.stage.stride, si.dilation
    first_dilation = dilation
    if si.dilate and stride > 1:  # timm's builder: the strided block keeps the dilation before it
        dilation *= stride
        stride = 1
    blocks, ops, shapes = plan_blocks(si, si.in_shape, si.planes, stride=stride, first_dilation=first_dilation,
                                      dilation=dilation, name=si.name, own_widths=True, settings=settings(si))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation, None)
