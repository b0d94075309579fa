"""A stage type that interleaves two block types: every ``period``-th block is ``alternate``, the others
the stage's ``block`` (timm's BYOB configs mix block types within a stage this way).

A stage-type plugin in ~20 lines: its params (a ``StageParams`` subclass; a key holding a block is
validated like ``block:``), and a planning function that reuses torchvision's ``_make_layer`` rules
(the ``resnet`` stage type) on the block list it makes. No torch is imported here.
"""

from __future__ import annotations

import dataclasses

from pydantic import Field, SerializeAsAny

from archkit.params import BlockSpec, StageParams
from archkit.stages import StageInput, StageResult, stage_type
from archkit.stages.resnet import resnet

__version__ = "0.1.0"


class InterleaveParams(StageParams):
    """The block every ``period``-th block is, instead of the stage's."""

    alternate: SerializeAsAny[BlockSpec] = Field(description="The interleaved block (a block mapping: type and "
                                                 "params); it must output the stage's width.")
    period: int = Field(2, ge=2, le=64, description="Every period-th block is the alternate (2: every second).")


@stage_type("interleave", InterleaveParams)
def interleave(si: StageInput) -> StageResult:
    """Blocks by _make_layer's rules, every period-th one of another type."""
    p = si.stage
    listed = [p.alternate if j % p.period == p.period - 1 else p.block for j in range(si.depth)]
    return resnet.plan(dataclasses.replace(si, stage=p.model_copy(update={"blocks": listed})))
