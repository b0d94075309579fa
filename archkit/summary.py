"""Per-layer output shapes, parameters and MACs: analytic from the plan (archkit.complexity), or measured
on the meta device (no weights allocated) where a type declares no cost or a deeper table is asked for."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from . import builder
from .complexity import Cost
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
    """The summary of ``spec``: analytic (no forward pass, nothing allocated) to ``depth`` 2, with
    plugin types that declare no cost measured on the meta device; deeper tables are measured whole."""
    if depth <= 2:
        return _analytic(spec, batch_size, depth, dtype)
    return measure_meta(spec, batch_size, depth, dtype)


def _block_key(bp: Any) -> tuple:
    """What a block's cost depends on: blocks of a stage after the first share one (computed once)."""
    return (bp.cls, id(bp.params), bp.in_channels, bp.planes, bp.stride, bp.dilation, bp.in_size, bp.shortcut)


# block configurations whose constructor already ran on meta in this process
_BUILT: set[tuple] = set()


def _has_cost(cls: type) -> bool:
    """A block class's own ``cost`` (never one inherited by a subclass that may change the structure)."""
    return "cost" in vars(cls)


def _analytic(spec: ModelSpec, batch_size: int, depth: int, dtype: torch.dtype) -> Summary:
    from .builder import block_context, make_block, make_context
    from .plan import plan

    p = plan(spec)
    ctx = make_context(spec)
    size = torch.empty((), dtype=dtype).element_size()
    rows: list[Row] = []
    total, written = Cost(), 0
    cache: dict[tuple, tuple[Cost, str]] = {}

    def layer_row(lp: Any) -> None:
        nonlocal total, written
        try:
            with torch.device("meta"):
                module = lp.layer.build(lp.in_shape, ctx)
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            raise spec.error((lp.part, lp.index), f"{lp.layer.type}: {first_line(exc)}") from exc
        try:
            cost = lp.layer.cost(lp.in_shape, ctx)
        except NotImplementedError:  # a plugin layer: measured on meta
            cost = _measured_cost(module, lp.in_shape, dtype, lp.name)
        rows.append(Row(lp.name, _type_name(module), 1, [batch_size, *lp.out_shape], cost.params,
                        cost.macs * batch_size))
        total, written = total + cost, written + cost.writes

    layers_key = (spec.norm.model_dump_json(), spec.activation.model_dump_json())

    def build(bp: Any, bctx: Any) -> nn.Module:
        try:
            with torch.device("meta"):
                return make_block(bp, bctx)
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            raise spec.error(("stages", bp.stage), f"{bp.type} block: {first_line(exc)}") from exc

    def block_cost(bp: Any) -> Cost:
        key = _block_key(bp)
        if key in cache:
            return cache[key][0]
        bctx = block_context(ctx, bp)
        # each distinct configuration is built once on meta, in this process (validating a zoo repeats
        # them): the constructor's own checks (a BasicBlock refusing dilation, say) hold as in a real build
        built = (bp.cls, bp.params.model_dump_json(), bp.in_channels, bp.planes, bp.stride, bp.dilation,
                 bp.shortcut, layers_key)
        module = None
        if built not in _BUILT:
            module = build(bp, bctx)
            if len(_BUILT) > 4096:
                _BUILT.clear()
            _BUILT.add(built)
        cost = None
        if _has_cost(bp.cls):
            try:
                cost = bp.cls.cost(bp, bctx)
            except NotImplementedError:  # e.g. a plugin attention type or norm without a cost
                cost = None
        if cost is None:
            cost = _measured_cost(module or build(bp, bctx), (bp.in_channels, *bp.in_size), dtype, bp.name)
        cache[key] = (cost, bp.cls.__name__)
        return cost

    def layer_rows(lp: Any) -> None:
        layer_row(lp)
        if depth >= 2 and getattr(lp.layer, "layers", None) is not None:  # a sequential's children
            shape = lp.in_shape
            for child_name, layer in zip(lp.layer.child_names(), lp.layer.layers):
                with torch.device("meta"):
                    module = layer.build(shape, ctx)
                cost, out = layer.cost(shape, ctx), layer.output_shape(shape)
                rows.append(Row(f"{lp.name}.{child_name}", _type_name(module), 2, [batch_size, *out], cost.params,
                                cost.macs * batch_size))
                shape = out

    for lp in p.stem:
        layer_rows(lp)
    for sp in p.stages:
        costs = [block_cost(bp) for bp in sp.blocks]
        stage = sum(costs, Cost())
        kinds = {bp.cls.__name__ for bp in sp.blocks}
        kind = f"{kinds.pop()} x{sp.depth}" if len(kinds) == 1 else "Sequential"
        rows.append(Row(sp.name, kind, 1, [batch_size, *sp.out_shape], stage.params, stage.macs * batch_size))
        if depth >= 2:
            for bp, cost in zip(sp.blocks, costs):
                rows.append(Row(bp.name, bp.cls.__name__, 2, [batch_size, bp.out_channels, *bp.out_size],
                                cost.params, cost.macs * batch_size))
        total = total + stage
    for lp in p.head:
        layer_rows(lp)
    if spec.features_only:
        output: list = [[batch_size, *i] for i in _feature_shapes(p)]
    else:
        output = [batch_size, *p.output_shape]
    return Summary(
        name=spec.name,
        input_shape=[batch_size, *p.input_shape],
        output_shape=output,
        batch_size=batch_size,
        total_params=total.params,
        trainable_params=total.params - _frozen_params(spec, rows),
        macs=total.macs * batch_size,
        param_bytes=total.params * size,
        activation_bytes=total.writes * batch_size * size,
        dtype=str(dtype).replace("torch.", ""),
        rows=rows,
    )


def _frozen_params(spec: ModelSpec, rows: list[Row]) -> int:
    """Parameters of the stem and the first ``frozen_stages`` stages (depth-1 rows)."""
    if spec.frozen_stages < 0:
        return 0
    frozen, stages = 0, 0
    for row in rows:
        if row.depth != 1:
            continue
        if row.name.startswith("layer") and row.name[5:].isdigit():
            stages += 1
            if stages > spec.frozen_stages:
                break
        frozen += row.params
    return frozen


def _feature_shapes(p: Any) -> list:
    from .plan import out_indices

    return [[d["num_chs"], *_size_of(p, d["index"])] for d in p.feature_info(out_indices(p.spec, None))]


def _size_of(p: Any, index: int) -> list:
    shape = p.stem_feature.out_shape if index == 0 else p.stages[index - 1].out_shape
    return list(shape[1:])


def _measured_cost(module: nn.Module, in_shape: tuple, dtype: torch.dtype, where: str) -> Cost:
    """One module measured on the meta device with torch's FlopCounterMode (the fallback and the oracle)."""
    from torch.utils.flop_counter import FlopCounterMode

    module = module.to(dtype).eval()
    x = torch.empty(1, *in_shape, device="meta", dtype=dtype)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            out = module(x)
    except Exception as exc:  # e.g. a plugin block that reads tensor values, which meta tensors lack
        raise SummaryError(f"{where} ({type(module).__name__}) cannot run on the meta device: "
                           f"{first_line(exc, 200)}") from exc
    params = sum(p.numel() for p in module.parameters())
    return Cost(params, counter.get_total_flops() // 2, out.numel() if isinstance(out, torch.Tensor) else 0)


def measure_meta(spec: ModelSpec, batch_size: int = 1, depth: int = 1,
                 dtype: torch.dtype = torch.float32) -> Summary:
    """Build ``spec`` on the meta device and run one forward pass under FlopCounterMode, with a row
    per module to ``depth``; the oracle the analytic path is tested against."""
    from torch.utils.flop_counter import FlopCounterMode

    model = builder.build(spec, device="meta").to(dtype).eval()
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
        if level < depth:
            for child_name, child in module.named_children():
                attach(child, f"{name}.{child_name}", level + 1)

    def count_written(_m: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and not getattr(_m, "inplace", False) and not isinstance(
                _m, (nn.Identity, nn.Flatten, nn.Dropout)):
            written[0] += out.numel()

    for name, child in model.named_children():
        attach(child, name, 1)
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


def estimate(spec: ModelSpec) -> Cost:
    """Per-sample parameters, MACs and writes of ``spec`` from the plan alone: no module is built.

    What design-space tools loop over (``archkit fit``); types without a declared cost raise
    NotImplementedError here (the summary measures those instead).
    """
    from .builder import block_context, make_context
    from .plan import plan

    p = plan(spec)
    ctx = make_context(spec)
    total = Cost()
    for lp in (*p.stem, *p.head):
        total = total + lp.layer.cost(lp.in_shape, ctx)
    cache: dict[tuple, Cost] = {}
    for bp in p.blocks:
        key = _block_key(bp)
        if key not in cache:
            if not _has_cost(bp.cls):
                raise NotImplementedError(f"block type {bp.type!r} declares no cost")
            cache[key] = bp.cls.cost(bp, block_context(ctx, bp))
        total = total + cache[key]
    return total
