"""Per-layer output shapes, parameters and MACs, computed from the plan's descriptions: no torch, no
forward pass, no weights, so a model of any size summarises in the same time and memory.

Every primitive knows its cost (``archkit.graph``); a described module's cost is the sum of its
calls. Only a plugin type that declares no cost is measured, on the meta device with torch's
``FlopCounterMode`` (``archkit.oracle``), which is also the reference the property tests hold the
analytic figures to.

MACs are multiply-accumulates (FLOPs / 2) as ``FlopCounterMode`` counts them: convolutions, linear
layers and matrix products. Activation memory is the elements each op writes in an eval-mode
forward (in-place ops and views write none), times the batch and the element size: an estimate of
what a forward pass allocates for activations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .complexity import Cost
from .errors import SummaryError, first_line
from .graph import Graph, ListOf
from .specs import ModelSpec

SCHEMA_VERSION = 1
ELEMENT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


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
    activations: int  # elements output by convolutions and linear layers, times the batch (pycls' acts)
    param_bytes: int
    activation_bytes: int
    dtype: str
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        """The JSON document: keys are documented in docs/cli.md and stable within ``schema_version``."""
        data = dataclasses.asdict(self)
        data["layers"] = data.pop("rows")
        return {"schema_version": SCHEMA_VERSION, **data}


def _dims(shape: list) -> str:
    if shape and isinstance(shape[0], list):
        return ", ".join(_dims(s) for s in shape)
    return "x".join(map(str, shape))


_MEASURED: dict[tuple, Cost] = {}


def cost_of(op: Any, in_shapes: tuple, out_shape: tuple, where: str = "") -> Cost:
    """An op's cost per sample and call: declared, else (a plugin type declaring none) measured on the
    meta device, each such part on its own (imports torch)."""
    try:
        return op.cost(in_shapes, out_shape)
    except NotImplementedError:
        pass
    if isinstance(op, Graph):
        total, seen = Cost(), set()
        for node in op.nodes:
            cost = node.cost
            if cost is None:
                cost = cost_of(node.op, node.in_shapes, node.out_shape, f"{where}.{node.target}")
            if node.target is not None and node.target in seen:
                cost = cost.without_params()
            seen.add(node.target)
            total = total + cost
        return total
    key = (op, in_shapes)
    if key not in _MEASURED:
        from .measure import measure_op

        if len(_MEASURED) > 1024:
            _MEASURED.clear()
        _MEASURED[key] = measure_op(op, in_shapes, where)
    return _MEASURED[key]


def _params(op: Any, in_shapes: tuple, where: str) -> int:
    if isinstance(op, ListOf):
        return sum(_params(item, in_shapes, where) for item in op.items)
    try:
        return op.params
    except NotImplementedError:
        return cost_of(op, in_shapes, op.out_shape(*in_shapes), where).params


class _Stage:
    """A stage's cost without recording a graph of its blocks (tables of depth 1: ``list``)."""

    def __init__(self, sp: Any):
        self.sp = sp
        if sp.result is not None and sp.result.graph is not None:
            self.type_name = sp.result.graph.type_name
        else:
            kinds = {getattr(op, "type_name", "") for op in sp.ops}
            self.type_name = f"{kinds.pop()} x{len(sp.ops)}" if len(kinds) == 1 else "Sequential"

    def cost(self, shapes: tuple, out: tuple) -> Cost:
        if self.sp.cost is not None:
            return self.sp.cost
        if self.sp.result is not None and self.sp.result.graph is not None:
            return cost_of(self.sp.result.graph, (self.sp.in_shape,), self.sp.out_shape, self.sp.name)
        total, shape = Cost(), self.sp.in_shape
        for j, (op, out_shape) in enumerate(zip(self.sp.ops, self.sp.out_shapes)):
            total = total + cost_of(op, (shape,), out_shape, f"{self.sp.name}.{j}")
            shape = out_shape
        return total


def _type(op: Any) -> str:
    """The torch class name; a stage (a Sequential of blocks of one type) shows ``Bottleneck x3``."""
    if isinstance(op, Graph) and op.type_name == "Sequential" and op.children:
        kinds = {c.type_name for c in op.children.values()}
        if len(kinds) == 1:
            return f"{kinds.pop()} x{len(op.children)}"
    return op.type_name


def _child_rows(graph: Graph, prefix: str, level: int, depth: int, batch: int, rows: list[Row]) -> None:
    """Rows for ``graph``'s children (registration order), to ``depth``."""
    for name, op in graph.children.items():
        calls = graph.calls(name)
        if not calls:
            continue
        where = f"{prefix}.{name}"
        macs = sum((n.cost if n.cost is not None else cost_of(n.op, n.in_shapes, n.out_shape, where)).macs
                   for n in calls)
        rows.append(Row(where, _type(op), level, [batch, *calls[-1].out_shape], _params(op, calls[0].in_shapes, where),
                        macs * batch))
        if level < depth and isinstance(op, Graph):
            _child_rows(op, where, level + 1, depth, batch, rows)


def measure(spec: ModelSpec, batch_size: int = 1, depth: int = 1, dtype: Any = "float32") -> Summary:
    """The summary of ``spec`` with rows to ``depth`` (1: stem, stages, head; 2: blocks; 3: inside blocks)."""
    from .plan import out_indices, plan

    p = plan(spec)
    dtype = str(dtype).replace("torch.", "")
    size = ELEMENT_BYTES.get(dtype, 4)
    rows: list[Row] = []
    total, frozen = Cost(), 0
    stem_and_frozen = {lp.name for lp in p.stem} | {sp.name for sp in p.stages[: max(spec.frozen_stages, 0)]}
    if spec.frozen_stages >= len(p.stages):  # freezing every stage freezes the final layers too (model.py)
        stem_and_frozen |= {lp.name for lp in p.final}
    # a backbone keeps what its last output needs (as build does)
    stem, stages, final = p.backbone(out_indices(spec, None)) if spec.features_only else (p.stem, p.stages, p.final)
    top: list[tuple[str, Any, tuple, tuple, tuple, str]] = [
        (lp.name, lp.op, lp.in_shape, lp.out_shape, (lp.part, lp.index), lp.layer.type) for lp in stem]
    top += [(sp.name, sp.graph() if depth >= 2 else _Stage(sp), sp.in_shape, sp.out_shape, ("stages", sp.index),
             f"{sp.blocks[0].type} block") for sp in stages]
    top += [(lp.name, lp.op, lp.in_shape, lp.out_shape, (lp.part, lp.index), lp.layer.type)
            for lp in (*final, *p.head)]
    for name, op, in_shape, out_shape, path, what in top:
        try:
            cost = cost_of(op, (in_shape,), out_shape, name)
        except SummaryError:
            raise
        except (ValueError, TypeError, NotImplementedError, RuntimeError) as exc:  # a plugin's module refuses
            raise spec.error(path, f"{what}: {first_line(exc)}") from exc
        rows.append(Row(name, _type(op), 1, [batch_size, *out_shape], cost.params, cost.macs * batch_size))
        if depth >= 2 and isinstance(op, Graph):
            _child_rows(op, name, 2, depth, batch_size, rows)
        total = total + cost
        if spec.frozen_stages >= 0 and name in stem_and_frozen:
            frozen += cost.params
    if spec.features_only:
        info = p.feature_info(out_indices(spec, None))
        output: list = [[batch_size, d["num_chs"], *_size_of(p, d["index"])] for d in info]
    else:
        output = [batch_size, *p.output_shape]
    return Summary(
        name=spec.name,
        input_shape=[batch_size, *p.input_shape],
        output_shape=output,
        batch_size=batch_size,
        total_params=total.params,
        trainable_params=total.params - frozen,
        macs=total.macs * batch_size,
        activations=total.acts * batch_size,
        param_bytes=total.params * size,
        activation_bytes=(total.writes * batch_size + total.fixed) * size,
        dtype=dtype,
        rows=rows,
    )


def _size_of(p: Any, index: int) -> list:
    return list(p.feature_shape(index)[1:])


def estimate(spec: ModelSpec, *, width_multiplier: float | None = None,
             depth_multiplier: float | None = None) -> Cost:
    """Per-sample parameters, MACs, writes and activations of ``spec`` (with other multipliers, if given) from the plan
    alone: what design-space tools loop over (``archkit fit``). Types without a declared cost raise
    NotImplementedError here."""
    from .plan import plan

    p = plan(spec, width_multiplier=width_multiplier, depth_multiplier=depth_multiplier)
    total = Cost()
    for lp in (*p.stem, *p.final, *p.head):
        total = total + lp.cost
    for sp in p.stages:
        cost = sp.cost
        if cost is None:
            raise NotImplementedError(f"a block of {sp.name} declares no cost")
        total = total + cost
    return total


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


def _names(rows: list) -> list[str]:
    """Each row's name as shown: below depth 1, relative to the row it sits in (indented under it)."""
    out, parents = [], {}
    for r in rows:
        parent = parents.get(r.depth - 1)
        out.append(r.name[len(parent) + 1:] if parent and r.name.startswith(parent + ".") else r.name)
        parents[r.depth] = r.name
    return out


def render(summary: Summary, width: int = 80) -> str:
    """The summary as a table that fits ``width`` columns, then totals."""
    header = ("Layer", "Type", "Output shape", "Params", "MACs")
    cells = [(("  " * (r.depth - 1)) + name, r.type, _dims(r.output_shape),
              f"{r.params:,}", _human(r.macs) if r.macs else "-") for r, name in zip(summary.rows, _names(summary.rows))]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    overflow = sum(widths) + 2 * (len(widths) - 1) - width
    if overflow > 0:  # shorten the type column; never a name (two would read alike) nor a number
        cut = min(overflow, widths[1] - len(header[1]) - 1 if widths[1] > 8 else 0)
        widths[1] -= max(cut, 0)

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
