"""What a generator is: a spec key whose numbers become the spec's stages, the rule that makes them, and the
numbers ``fit`` may vary. RegNet's quantized linear widths are one; a plugin adds others through the
``archkit.generators`` entry-point group. Nothing elsewhere names a generator: validation expands whichever
key the spec gives (``archkit.generate``), the schema, ``fit`` and ``explain`` read the registry. This module is
data only: it imports nothing of archkit, so a plugin's generator module stays as light."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pydantic import BaseModel


# a spec's own top-level keys (archkit.specs.ModelSpec's fields, and base:): no generator may take one
SPEC_KEYS = frozenset("""activation base block deploy depth_multiplier description drop_block_rate drop_block_size
drop_path_rate drop_path_schedule family features_only final final_in_features frozen_stages head init input layout name norm norm_eval
out_indices output_stride scale scales scaling seed stage stages stem weights width_divisor width_multiplier""".split())


class GeneratorProblem(ValueError):
    """Numbers a generator's rule cannot make a network of; ``field`` names the number to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Axis:
    """One number ``fit`` may vary: bisected when it is the first continuous one, else tried on a grid."""

    name: str  # the field path written to the fitted spec (a generator's: its own field; the registry qualifies it)
    label: str  # the column header
    grid: Callable[[float], list[float]]
    bounds: Callable[[float], tuple[float, float]] | None = None  # continuous: the bisection interval
    quantum: float = 0.0  # a continuous number on a lattice (w_0: multiples of 8)
    digits: int = 4
    integer: bool = False  # written as an integer


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
    """A spec key (``regnet:``) whose numbers (``params``) make the spec's stages (``stages``)."""

    name: str
    params: type[BaseModel]
    stages: Callable[[Any], list[dict]]  # the validated numbers -> each stage's mapping (planes, depth, block...)
    axes: tuple[Axis, ...] = ()
    doc: str = ""

    def qualified_axes(self) -> tuple[Axis, ...]:
        """Its axes named as a spec writes them (``regnet.w_a``)."""
        return tuple(dataclasses.replace(a, name=f"{self.name}.{a.name}") for a in self.axes)
