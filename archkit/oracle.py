"""The reference the analytic summary is tested against: the whole model built on the meta device and run
once under torch's ``FlopCounterMode``, a row per module. Nothing is allocated."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import SummaryError, first_line
from .specs import ModelSpec
from .summary import Row, Summary


def _shape(out: Any) -> list:
    """A tensor's shape, or the shapes of a list of tensors (a features_only model's outputs)."""
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (list, tuple)):
        return [_shape(o) for o in out]
    return []


def _type_name(module: nn.Module) -> str:
    """The class name; a stage shows its block type and depth instead of 'Sequential'."""
    kinds = {type(m).__name__ for m in module.children()}
    if type(module) is nn.Sequential and len(kinds) == 1 and len(module):
        return f"{kinds.pop()} x{len(module)}"
    return type(module).__name__


def measure_meta(spec: ModelSpec, batch_size: int = 1, depth: int = 1,
                 dtype: torch.dtype = torch.float32) -> Summary:
    """Build ``spec`` on the meta device and run one forward pass under FlopCounterMode, with a row
    per module to ``depth``; the oracle the analytic path is tested against."""
    from torch.utils.flop_counter import FlopCounterMode

    from .build import build

    model = build(spec, device="meta").to(dtype).eval()
    x = torch.empty(batch_size, spec.input.channels, *spec.input.size, device="meta", dtype=dtype)
    counter = FlopCounterMode(display=False)
    rows: list[Row] = []
    hooks = []
    entered: list[str] = []  # modules whose forward started, innermost last
    written = [0]

    def attach(module: nn.Module, name: str, level: int) -> None:
        row = Row(name, _type_name(module), level, [], sum(p.numel() for p in module.parameters()), 0)
        rows.append(row)
        start = [0]

        def pre(_m: nn.Module, _args: Any) -> None:
            start[0] = counter.get_total_flops()
            entered.append(f"{name} ({type(_m).__name__})")

        def post(_m: nn.Module, _args: Any, out: Any) -> None:
            row.macs = (counter.get_total_flops() - start[0]) // 2
            row.output_shape = _shape(out)
            entered.pop()

        hooks.append(module.register_forward_pre_hook(pre))
        hooks.append(module.register_forward_hook(post))
        if level < depth and not getattr(module, "archkit_primitive", False):
            for child_name, child in module.named_children():
                attach(child, f"{name}.{child_name}", level + 1)

    def count_written(_m: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and not getattr(_m, "inplace", False) and not isinstance(
                _m, (nn.Identity, nn.Flatten, nn.Dropout)):
            written[0] += out.numel()

    # the rows of depth 1 are the plan's parts (stem layers, stages, head layers) whatever the layout
    for name in (*model.stem_names, *model.stage_names, *getattr(model, "head_names", ())):
        attach(model.get_submodule(name), name, 1)
    hooks += [m.register_forward_hook(count_written) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad(), counter:
            out = model(x)
    except Exception as exc:  # e.g. a plugin block that reads tensor values, which meta tensors lack
        where = entered[-1] if entered else spec.name
        raise SummaryError(f"{where} cannot run on the meta device: {first_line(exc, 200)}") from exc
    finally:
        for h in hooks:
            h.remove()
    params = list(model.parameters())
    return Summary(
        name=spec.name,
        input_shape=list(x.shape),
        output_shape=_shape(out),
        batch_size=batch_size,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=counter.get_total_flops() // 2,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        activation_bytes=written[0] * x.element_size(),
        dtype=str(dtype).replace("torch.", ""),
        rows=rows,
    )

