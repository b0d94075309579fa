"""Built-in generators (``archkit.generators.base``): RegNet's design space."""

from .base import Axis, Generator
from .regnet import RegNetSpec, regnet

BUILTIN_GENERATORS: dict[str, Generator] = {g.name: g for g in (regnet,)}

__all__ = ["Axis", "BUILTIN_GENERATORS", "Generator", "RegNetSpec", "regnet"]
