"""Safe checkpoints: state_dict + fully resolved spec + versions; never a pickled module.

``torch.save(model)`` pickles the module's classes, and loading such a file runs arbitrary code.
An archkit checkpoint holds only tensors and plain data, loaded with ``torch.load(weights_only=True)``,
and the model is rebuilt from the stored spec.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, builder, loader, specs
from .errors import CheckpointError, SpecError
from .files import atomic_path

FORMAT = "archkit-checkpoint"
FORMAT_VERSION = 1


def save(model: nn.Module, spec: specs.ModelSpec, path: str | os.PathLike) -> None:
    """Write the checkpoint to a temp file beside ``path``, then rename: an old file is never half-replaced."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "archkit_version": __version__,
        "torch_version": str(torch.__version__),
        "spec": spec.model_dump(mode="json"),
        "state_dict": model.state_dict(),
    }
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint: {exc.strerror or exc}") from None


def read(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a checkpoint's payload (tensors on CPU), or raise CheckpointError."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory") from None
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable archkit checkpoint (truncated or corrupted?): {first}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an archkit checkpoint (no '{FORMAT}' marker); "
                              "archkit saves with 'archkit build SPEC --output FILE'")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')!r} is not supported "
                              f"by archkit {__version__} (expects {FORMAT_VERSION})")
    if not isinstance(payload.get("spec"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"{path}: checkpoint lacks its spec or state_dict")
    return payload


def load(path: str | os.PathLike, device: Any = None) -> nn.Sequential:
    """Rebuild the model from the stored spec and load the weights strictly."""
    payload = read(path)
    try:
        spec = specs.validate(loader.from_mapping(payload["spec"], f"{path} (stored spec)"), f"{path} (stored spec)")
    except SpecError as exc:
        raise CheckpointError(f"{path}: stored spec is invalid here (a plugin missing?): {exc.problems[0]}") from None
    model = builder.build(spec, device=device)
    load_weights(model, payload["state_dict"], path)
    return model


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Load ``state`` strictly, or raise CheckpointError naming the missing, unexpected and misshapen keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                parts.append(f"{label}: " + ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""))
        raise CheckpointError(f"{path}: weights do not fit the spec; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
