"""archkit: ResNet-family networks from YAML specs, built as plain ``torch.nn.Sequential``."""

from __future__ import annotations

from typing import Any

from .api import (as_spec, build_model, create_model, fuse, list_blocks, list_models, load_checkpoint, load_pretrained,
                  load_spec, param_groups, push_to_hub, register_block, reparameterize, save_checkpoint,
                  save_pretrained)
from .errors import CheckpointError, SpecError, WeightsError

__all__ = ["load_spec", "as_spec", "build_model", "create_model", "list_models", "load_pretrained", "fuse", "param_groups",
           "register_block",
           "list_blocks", "SpecError", "CheckpointError", "WeightsError", "load_checkpoint", "save_checkpoint",
           "save_pretrained", "push_to_hub", "reparameterize", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the package metadata on first use
        from .version import __version__

        return __version__
    raise AttributeError(f"module 'archkit' has no attribute {name!r}")
