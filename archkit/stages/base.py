"""What a stage type gets from the plan and gives back."""

import dataclasses
from typing import Any

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class StageInput:
    """One stage as the plan hands it to its stage type (hashable: stage plans are cached by it)."""

    index: int  # 0-based
    name: str  # its child name (layer2)
    stage: Any  # the validated StageSpec
    planes: int  # after the width multiplier
    depth: int  # after the depth multiplier
    in_shape: Shape
    dilation: int  # the dilation in force before this stage
    first_block: int  # the global index of its first block
    rates: tuple[float, ...]  # the drop-path rate of each of its blocks
    norm: Any
    act: Any
    drop_block_rate: float


@dataclasses.dataclass(frozen=True)
class StageResult:
    """A planned stage: its blocks, their descriptions and output shapes, and the dilation after it."""

    blocks: tuple
    ops: tuple
    shapes: tuple[Shape, ...]
    dilation: int

    @property
    def cost(self) -> Any:
        """The blocks' parameters, MACs and writes summed (per sample); None where one must be measured."""
        cached = self.__dict__.get("_cost", False)
        if cached is False:
            from ..complexity import Cost

            cached = Cost()
            try:
                for op in self.ops:
                    cached = cached + op.cost((), ())
            except NotImplementedError:
                cached = None
            object.__setattr__(self, "_cost", cached)
        return cached


class StageProblem(ValueError):
    """A stage that cannot be built: ``where`` is the field path inside the stage, e.g. ("block",)."""

    def __init__(self, where: tuple, message: str):
        super().__init__(message)
        self.where = where
