"""Moved: the module-form bases of the built-in blocks are ``archkit.modules`` (``BasicBlock``,
``Bottleneck``, ``module_block``). This name keeps working for code written against archkit 0.3, with a
DeprecationWarning; ``archkit.nn`` holds torch primitives only, and imports nothing of archkit above them."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    warnings.warn("archkit.nn.blocks moved to archkit.modules; import from there", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module("archkit.modules"), name)
