"""archkit: ResNet-family networks from YAML specs, built as plain ``torch.nn.Sequential``."""

from __future__ import annotations

import os
from typing import Any

from .errors import CheckpointError, SpecError

__version__ = "0.1.0"

__all__ = ["load_spec", "build_model", "register_block", "list_blocks", "SpecError", "CheckpointError",
           "load_checkpoint", "save_checkpoint", "__version__"]


def load_spec(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] | None = None):
    """Load, merge (``base:``), override (``stages.2.depth=23``) and validate a spec file."""
    from . import loader, specs

    return specs.validate(loader.load(path, overrides or ()), str(path))


def as_spec(spec: Any):
    """A validated spec from a ModelSpec, a file path or a plain dict."""
    from . import loader, specs

    if isinstance(spec, specs.ModelSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    if isinstance(spec, dict):
        return specs.validate(loader.from_mapping(spec), "<dict>")
    raise TypeError(f"expected a ModelSpec, a spec file path or a dict, got {type(spec).__name__}")


def build_model(spec: Any, device: Any = None, *, features_only: bool | None = None, out_indices: Any = None):
    """Build the ``nn.Sequential`` for a spec (ModelSpec, path or dict); ``device="meta"`` allocates nothing.

    ``features_only=True`` returns a backbone giving the feature maps of ``out_indices`` (0 = stem,
    i = stage i), with ``.feature_info`` (channels and reduction per output), as timm's.
    """
    from . import builder

    return builder.build(as_spec(spec), device=device, features_only=features_only, out_indices=out_indices)


def register_block(name: str, cls: Any, **kwargs: Any) -> Any:
    """Register a block class under ``name`` (see ``archkit.blocks.base`` for the contract)."""
    from .registry import register_block as _register

    return _register(name, cls, **kwargs)


def list_blocks() -> list[str]:
    """Names of every registered block type."""
    from .registry import BLOCKS

    return BLOCKS.names()


def save_checkpoint(model: Any, spec: Any, path: str | os.PathLike) -> None:
    """Save weights plus the fully resolved spec atomically (see ``archkit.checkpoint``)."""
    from .checkpoint import save

    save(model, as_spec(spec), path)


def load_checkpoint(path: str | os.PathLike, device: Any = None):
    """Rebuild a model from a checkpoint's stored spec and load its weights (``weights_only=True``)."""
    from .checkpoint import load

    return load(path, device=device)
