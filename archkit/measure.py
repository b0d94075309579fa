"""One op or described module measured on the meta device with torch's ``FlopCounterMode``: the cost of a
plugin type that declares none (nothing is allocated)."""

from __future__ import annotations

from typing import Any

import torch

from .complexity import Cost
from .errors import SummaryError, first_line


def measure_op(op: Any, in_shapes: tuple, where: str = "") -> Cost:
    """One op or described graph, built on meta and run once under FlopCounterMode (per sample)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .lower import module_of

    with torch.device("meta"):
        module = module_of(op)
    module = module.eval()
    xs = [torch.empty(1, *shape, device="meta") for shape in in_shapes]
    counter = FlopCounterMode(display=False)
    acts = [0]

    def count(_module: Any, _args: Any, output: Any) -> None:  # pycls' activations: conv and linear outputs
        if isinstance(output, torch.Tensor):
            acts[0] += output.numel()

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad(), counter:
            out = module(*xs)
    except Exception as exc:  # e.g. a plugin block that reads tensor values, which meta tensors lack
        raise SummaryError(f"{where} ({type(module).__name__}) cannot run on the meta device: "
                           f"{first_line(exc, 200)}") from exc
    finally:
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for p in module.parameters())
    return Cost(params, counter.get_total_flops() // 2, out.numel() if isinstance(out, torch.Tensor) else 0, 0,
                acts[0])
