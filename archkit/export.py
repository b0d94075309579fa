"""Export a built model: ONNX, TorchScript (traced) or a ``torch.export`` ExportedProgram."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ExportError, OutputError, first_line
from .files import atomic_path

FORMATS = ("onnx", "torchscript", "exported-program")


def _export(model: nn.Module, fmt: str, example: torch.Tensor, dynamic_batch: bool, path: Path) -> None:
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(model, example).save(str(path))
    elif fmt == "exported-program":
        torch.export.save(torch.export.export(model, (example,), dynamic_shapes=dynamic), str(path))
    elif fmt == "onnx":
        try:
            import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
        except ImportError:
            raise ExportError("ONNX export needs onnx and onnxscript: pip install onnx onnxscript "
                              "(or pip install 'archkit[export]')") from None
        torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=dynamic, external_data=False,
                          input_names=["input"], output_names=["output"], verbose=False)


def _culprit(model: nn.Module, fmt: str, example: torch.Tensor) -> str:
    """Name the first block type that fails to export on its own, for the error message."""
    from .catalog import BLOCKS

    names = {entry.obj.cls_name: (name, entry.origin) for name, entry in BLOCKS.listing()}
    x = example
    for child_name, child in model.named_children():
        blocks = list(child.children()) if isinstance(child, nn.Sequential) else [child]
        for block in blocks:
            if type(block).__name__ in names:
                try:
                    with torch.no_grad():
                        if fmt == "torchscript":
                            torch.jit.trace(block, x)
                        else:
                            torch.export.export(block, (x,))
                except Exception as exc:  # noqa: BLE001 - looking for the block to blame
                    name, origin = names[type(block).__name__]
                    first = first_line(exc, 200)
                    return f"block type {name!r} ({origin}) in {child_name} cannot be exported: {first}"
            with torch.no_grad():
                x = block(x)
    return ""


def export(model: nn.Module, fmt: str, output: str | os.PathLike, example: torch.Tensor,
           dynamic_batch: bool = True) -> None:
    """Export ``model`` (put in eval mode) to ``output``, written atomically; ExportError names what failed.
    ``dynamic_batch``: the batch dimension may vary (1..4096) in ONNX and ExportedProgram files."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from: {', '.join(FORMATS)}")
    model.eval()
    path = Path(output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            with atomic_path(path) as tmp, torch.no_grad():
                _export(model, fmt, example, dynamic_batch, tmp)
        except (ExportError, OutputError):
            raise
        except Exception as exc:  # noqa: BLE001 - turned into one line naming the block at fault
            blame = _culprit(model, fmt, example)
            first = first_line(exc)
            raise ExportError(f"{fmt} export failed: {blame or first}") from exc


def example_input(spec: Any, batch_size: int = 2) -> torch.Tensor:
    """A random input of the spec's size (batch 2 by default, so a dynamic batch is not specialized to 1)."""
    return torch.randn(batch_size, spec.input.channels, *spec.input.size)
