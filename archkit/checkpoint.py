"""Safe checkpoints: state_dict + fully resolved spec + versions; never a pickled module.

``torch.save(model)`` pickles the module's classes, and loading such a file runs arbitrary code.
An archkit checkpoint holds only tensors and plain data, loaded with ``torch.load(weights_only=True)``,
and the model is rebuilt from the stored spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, builder, loader, specs
from .errors import CheckpointError, SpecError, WeightsError
from .files import atomic_path

FORMAT = "archkit-checkpoint"
FORMAT_VERSION = 1


def save(model: nn.Module, spec: specs.ModelSpec, path: str | os.PathLike) -> None:
    """Write the checkpoint to a temp file beside ``path``, then rename: an old file is never half-replaced.

    A ``.safetensors`` path writes safetensors (the hubs' format) with the spec in its metadata.
    """
    path = Path(path)
    info = {"format": FORMAT, "format_version": FORMAT_VERSION, "archkit_version": __version__,
            "torch_version": str(torch.__version__)}
    spec_data = spec.model_dump(mode="json")
    try:
        with atomic_path(path) as tmp:
            if path.suffix == ".safetensors":
                from safetensors.torch import save_file

                state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
                save_file(state, str(tmp), metadata={**{k: str(v) for k, v in info.items()},
                                                     "spec": json.dumps(spec_data)})
            else:
                with open(tmp, "wb") as fh:
                    torch.save({**info, "spec": spec_data, "state_dict": model.state_dict()}, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint: {exc.strerror or exc}") from None


def read(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's stored spec and state_dict (tensors on CPU), or CheckpointError."""
    from .weights import read_state

    path = Path(path)
    try:
        state, spec = read_state(path)
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    if spec is None:
        raise CheckpointError(f"{path}: not an archkit checkpoint (no stored spec); archkit saves with "
                              "'archkit build SPEC --output FILE'; to load other weights use --weights")
    return {"spec": spec, "state_dict": state}


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
