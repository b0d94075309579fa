"""Built-in generators (``archkit.generators.base``): RegNet's design space, timm's EfficientNet block strings."""

from .base import Axis, Generator
from .efficientnet import EfficientNetSpec, efficientnet
from .regnet import RegNetSpec, regnet

BUILTIN_GENERATORS: dict[str, Generator] = {g.name: g for g in (regnet, efficientnet)}

__all__ = ["Axis", "BUILTIN_GENERATORS", "EfficientNetSpec", "Generator", "RegNetSpec", "efficientnet", "regnet"]
