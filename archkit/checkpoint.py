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

from . import build as builder, loader, specs
from .version import __version__
from .errors import CheckpointError, OutputError, SpecError, WeightsError
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
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint: {exc.strerror or exc}") from exc
    except RuntimeError as exc:  # torch's writer reports a full disk as "enforce fail ... unexpected pos"
        if "unexpected pos" in str(exc) or "write" in str(exc).lower():
            raise OutputError(f"{path}: cannot write the checkpoint (no space left on device?)") from exc
        raise


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


def _check_tree(data: Any, path: str | os.PathLike) -> None:
    """The stored spec within the limits a spec file has (values, depth), walked without recursion."""
    stack, count = [(data, 0)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > loader.MAX_NODES or depth > loader.MAX_DEPTH:
            raise CheckpointError(f"{path}: stored spec is larger or deeper than any spec may be")
        if isinstance(node, dict):
            if not all(isinstance(k, str) for k in node):
                raise CheckpointError(f"{path}: stored spec has non-string keys")
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def load(path: str | os.PathLike, device: Any = None, max_params: int = loader.MAX_PARAMS) -> nn.Sequential:
    """Rebuild the model from the stored spec and load the weights strictly.

    The file's tensors are read (never unpickling code); no model is built before the stored spec
    passes the spec limits, its parameter count passes ``max_params`` and the stored tensors' keys and
    shapes match the model it describes (checked on the meta device).
    """
    payload = read(path)
    _check_tree(payload["spec"], path)
    try:
        spec = specs.validate(loader.from_mapping(payload["spec"], f"{path} (stored spec)"), f"{path} (stored spec)")
        skeleton = builder.build(spec, device="meta")
    except SpecError as exc:
        raise CheckpointError(f"{path}: stored spec is invalid here (a plugin missing?): {exc.problems[0]}") from None
    count = sum(p.numel() for p in skeleton.parameters())
    if count > max_params:
        raise CheckpointError(f"{path}: its spec has {count:,} parameters, above the limit of {max_params:,}")
    check_fit(skeleton, payload["state_dict"], path)
    model = builder.build(spec, device=device)
    model.load_state_dict(payload["state_dict"], strict=True)
    return model


def check_fit(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Raise CheckpointError naming the missing, unexpected and misshapen keys of ``state`` for ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    from .transfer import dtype_problem

    for key, value in expected.items():
        if isinstance(state.get(key), torch.Tensor) and state[key].shape == value.shape:
            problem = dtype_problem(key, state[key], value)
            if problem:
                raise CheckpointError(f"{path}: {problem}")
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                parts.append(f"{label}: " + ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""))
        raise CheckpointError(f"{path}: weights do not fit the spec; " + "; ".join(parts))
