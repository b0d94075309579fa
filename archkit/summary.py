"""Per-layer output shapes, parameters and MACs, measured on the meta device (no weights allocated)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import types
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from . import builder
from .errors import SummaryError, first_line
from .specs import ModelSpec

SCHEMA_VERSION = 1


@dataclasses.dataclass
class Row:
    """One module in the table."""

    name: str
    type: str
    depth: int
    output_shape: list[int]
    params: int
    macs: int


@dataclasses.dataclass
class Summary:
    """Everything ``archkit build --summary`` reports; ``as_dict()`` is the stable ``--json`` form."""

    name: str
    input_shape: list[int]
    output_shape: list[int]
    batch_size: int
    total_params: int
    trainable_params: int
    macs: int
    param_bytes: int
    activation_bytes: int
    dtype: str
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        """The JSON document: keys are documented in README and stable within ``schema_version``."""
        data = dataclasses.asdict(self)
        data["layers"] = data.pop("rows")
        return {"schema_version": SCHEMA_VERSION, **data}


class _Counter(TorchDispatchMode):
    """Counts MACs with ``torch.utils.flop_counter``'s own per-op formulas (FLOPs / 2), and the bytes
    every non-inplace, non-view op writes (an estimate of forward activation memory).

    ``FlopCounterMode`` gives the same totals (the tests use it as the oracle) but tracks every module
    on its own; here forward hooks read the running total only at the depth the user asked for.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode wraps __torch_dispatch__ in torch._disable_dynamo unless told otherwise,
        # and the first call then imports torch._dynamo: seconds of start-up for nothing, since a
        # summary never runs under torch.compile.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = _shape_only(func, args)
        if out is None:
            out = func(*args, **kwargs)
        counter = flop_registry.get(func._overloadpacket)
        if counter is not None:
            self.macs += counter(*args, **kwargs, out_val=out) // 2
        if not func.is_view and not func._schema.is_mutable:
            for t in (out if isinstance(out, tuple) else (out,)):
                if isinstance(t, torch.Tensor):
                    self.bytes += t.numel() * t.element_size()
        return out


def _shape_only(func: Any, args: tuple) -> Any:
    """Outputs for norm ops on meta tensors, whose meta kernels are slow Python decompositions
    (about 5 ms a call) although their shapes are trivial; None for every other op."""
    x = args[0] if args else None
    if not (isinstance(x, torch.Tensor) and x.device.type == "meta"):
        return None
    if func is torch.ops.aten.native_batch_norm.default:  # (out, save_mean[C], save_invstd[C])
        return x.new_empty(x.shape), x.new_empty(x.shape[1]), x.new_empty(x.shape[1])
    if func is torch.ops.aten.native_group_norm.default:  # (out, mean[N, G], rstd[N, G])
        n, groups = args[3], args[6]
        return x.new_empty(x.shape), x.new_empty(n, groups), x.new_empty(n, groups)
    return None


@contextlib.contextmanager
def without_compiler_import() -> Iterator[None]:
    """For a short-lived CLI process only: keep torch from importing torch._dynamo (seconds here).

    Meta kernels of several ops are Python decompositions wrapped in ``torch._disable_dynamo``, whose
    first call imports the whole compiler just to mark the function "do not compile". A summary never
    compiles, so a stub that returns the function unchanged stands in while it runs. Library callers
    (who may compile later in the same process) never get the stub.
    """
    if "torch._dynamo" in sys.modules:
        yield
        return
    stub = types.ModuleType("torch._dynamo")
    stub.disable = lambda fn, recursive=True, wrapping=True: fn  # type: ignore[attr-defined]
    sys.modules["torch._dynamo"] = stub
    try:
        yield
    finally:
        if sys.modules.get("torch._dynamo") is stub:
            del sys.modules["torch._dynamo"]


def _shape(out: Any) -> list:
    """A tensor's shape, or the shapes of a list of tensors (a features_only model's outputs)."""
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (list, tuple)):
        return [_shape(o) for o in out]
    return []


def _dims(shape: list) -> str:
    if shape and isinstance(shape[0], list):
        return ", ".join(_dims(s) for s in shape)
    return "x".join(map(str, shape))


def _type_name(module: nn.Module) -> str:
    """The class name; a stage shows its block type and depth instead of 'Sequential'."""
    kinds = {type(m).__name__ for m in module.children()}
    if isinstance(module, nn.Sequential) and len(kinds) == 1:
        return f"{kinds.pop()} x{len(module)}"
    return type(module).__name__


def measure(spec: ModelSpec, batch_size: int = 1, depth: int = 1, dtype: torch.dtype = torch.float32) -> Summary:
    """Build ``spec`` on the meta device and run one forward pass to measure it; nothing is allocated."""
    model = builder.build(spec, device="meta").to(dtype).eval()
    x = torch.empty(batch_size, spec.input.channels, *spec.input.size, device="meta", dtype=dtype)
    counter = _Counter()
    rows: list[Row] = []
    hooks = []
    entered: list[str] = []  # modules whose forward started, innermost last

    def attach(module: nn.Module, name: str, level: int) -> None:
        row = Row(name, _type_name(module), level, [], sum(p.numel() for p in module.parameters()), 0)
        rows.append(row)
        start = [0]

        def pre(_m: nn.Module, _args: Any) -> None:
            start[0] = counter.macs
            entered.append(f"{name} ({type(_m).__name__})")

        def post(_m: nn.Module, _args: Any, out: Any) -> None:
            row.macs = counter.macs - start[0]
            row.output_shape = _shape(out)
            entered.pop()

        hooks.append(module.register_forward_pre_hook(pre))
        hooks.append(module.register_forward_hook(post))
        if level < depth:
            for child_name, child in module.named_children():
                attach(child, f"{name}.{child_name}", level + 1)

    for name, child in model.named_children():
        attach(child, name, 1)
    try:
        with torch.no_grad(), counter:
            out = model(x)
    except Exception as exc:  # e.g. a plugin block that reads tensor values, which meta tensors lack
        where = entered[-1] if entered else spec.name
        first = first_line(exc, 200)
        raise SummaryError(f"{where} cannot run on the meta device: {first}") from exc
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
        macs=counter.macs,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        activation_bytes=counter.bytes,
        dtype=str(dtype).replace("torch.", ""),
        rows=rows,
    )


def _scaled(n: float, base: int, prefixes: tuple[str, ...]) -> tuple[float, str]:
    """``n`` divided down to below ``base`` (or the last prefix), and that prefix."""
    for prefix in prefixes[:-1]:
        if abs(n) < base:
            return n, prefix
        n /= base
    return n, prefixes[-1]


def _human(n: float) -> str:
    """MACs with a decimal prefix: ``218.366 M``."""
    value, prefix = _scaled(n, 1000, ("", "K", "M", "G", "T", "P"))
    return f"{value:,.3f} {prefix}" if prefix else f"{value:,.0f}"


def _bytes(n: int) -> str:
    """Bytes with a binary prefix: ``97.49 MiB``."""
    value, prefix = _scaled(n, 1024, ("B", "KiB", "MiB", "GiB", "TiB"))
    return f"{value:,.2f} {prefix}" if prefix != "B" else f"{n} B"


def render(summary: Summary, width: int = 80) -> str:
    """The summary as a table that fits ``width`` columns, then totals."""
    header = ("Layer", "Type", "Output shape", "Params", "MACs")
    cells = [(("  " * (r.depth - 1)) + r.name, r.type, _dims(r.output_shape),
              f"{r.params:,}", _human(r.macs) if r.macs else "-") for r in summary.rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    overflow = sum(widths) + 2 * (len(widths) - 1) - width
    for i in (0, 1):  # shorten the name, then the type column, never the numbers
        if overflow > 0:
            cut = min(overflow, widths[i] - len(header[i]) - 1 if widths[i] > 8 else 0)
            widths[i] -= max(cut, 0)
            overflow -= max(cut, 0)

    def fit(text: str, n: int) -> str:
        return text if len(text) <= n else text[: n - 1] + "~"

    def line(values: tuple) -> str:
        parts = [fit(v, widths[i]).ljust(widths[i]) if i < 3 else v.rjust(widths[i]) for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    rule = "-" * min(width, sum(widths) + 2 * (len(widths) - 1))
    out = [f"{summary.name}", rule, line(header), rule, *(line(c) for c in cells), rule]
    s = summary
    totals = [
        ("Total params", f"{s.total_params:,}"),
        ("Trainable params", f"{s.trainable_params:,}"),
        ("MACs (multiply-adds)", f"{_human(s.macs)} ({s.macs:,})"),
        ("Param memory", f"{_bytes(s.param_bytes)} ({s.dtype})"),
        ("Activation memory", f"{_bytes(s.activation_bytes)} (forward, batch {s.batch_size}, estimate)"),
        ("Input shape", "x".join(map(str, s.input_shape))),
        ("Output shape", _dims(s.output_shape)),
    ]
    out += [f"{k + ':':<22}{v}" for k, v in totals]
    return "\n".join(out)
