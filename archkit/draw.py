"""An SVG picture of a spec: input -> stem -> stages -> head, with shapes and shortcuts. No dependencies."""

from __future__ import annotations

from collections import Counter
from typing import Any
from xml.sax.saxutils import escape

from . import summary
from .graph import Add, Conv1d, Conv2d, Graph, Linear
from .plan import StagePlan, plan
from .specs import ModelSpec

WIDTH = 840
BOX_X, BOX_W = 110, 480
ROW_H, GAP = 54, 26
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
COLORS = {"io": "#eef1f5", "stem": "#dbe9f6", "stage": "#e3f2e1", "head": "#f8e6d3"}


def _layer_text(layer) -> str:  # noqa: ANN001
    if getattr(layer, "layers", None) is not None:
        return "[" + " \u2192 ".join(_layer_text(inner) for inner in layer.layers) + "]"
    fields = layer.model_dump(exclude={"name", "type", "position"}, exclude_defaults=True)
    fields = {k: dict(list(getattr(layer, k).model_dump().items())[:1]) if v == {} and
              hasattr(getattr(layer, k), "model_dump") else v for k, v in fields.items()}  # a nested setting of
    # defaults only (se: {ratio: 0.25}): its first field
    inner = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{layer.type}({inner})" if inner else layer.type


def _dims(shape) -> str:  # noqa: ANN001
    return "\u00d7".join(str(s) for s in shape)


def _shortcuts(stage: StagePlan) -> str:
    """``1 projection + 2 identity``: the stage's shortcuts by kind, as the plan has them; blocks without a
    shortcut of their own may still add their input back inside (RepVGG's identity branch)."""
    counts = Counter(b.shortcut for b in stage.blocks)
    if counts.get("none") == stage.depth:
        inside = sum(_identity_path(op) for op in stage.ops)
        if inside:
            return f"{inside} of {stage.depth} blocks add their input inside (identity branch)"
        return "no shortcuts (plain)"
    return " + ".join(f"{n} {kind}" for kind, n in counts.items()) + (" shortcuts" if stage.depth > 1 else " shortcut")


def _identity_path(op: Any) -> bool:
    """Whether a block's description adds its input, through no weighted layer, to something (a residual)."""
    if not isinstance(op, Graph) or not op.inputs:
        return False
    source, made_by = op.inputs[0].index, {n.output: n for n in op.nodes}

    def unweighted(index: int) -> bool:
        while index != source:
            node = made_by.get(index)
            if node is None or len(node.inputs) != 1 or isinstance(node.op, (Graph, Conv2d, Conv1d, Linear)):
                return False
            index = node.inputs[0]
        return True

    return any(isinstance(n.op, Add) and any(unweighted(i) for i in n.inputs) for n in op.nodes)


def _flow(sp: StagePlan, blocks: str) -> str:
    """A stage module's data flow from its description: ``conv_down → conv_exp → split → blocks → ...``."""
    graph = sp.result.graph if sp.result is not None else None
    if graph is None:
        return ""
    steps: list[str] = []
    for node in graph.nodes:
        if node.target is not None:
            label = f"[{blocks}]" if node.target == "blocks" else node.target
            if not (getattr(node.op, "type_name", "") == "Identity"):
                steps.append(label)
        else:
            label = {"Narrow": "split", "Concat": "concat"}.get(type(node.op).__name__)
            if label and (not steps or steps[-1] != label):
                steps.append(label)
    return " \u2192 ".join(steps)


def _norm_act(spec: ModelSpec) -> str:
    return f"norm {_layer_text(spec.norm)} \u00b7 act {_layer_text(spec.activation)}"


Item = tuple[str, str, str, "str | None"]  # (kind, title, detail, shortcut note)


def render(spec: ModelSpec) -> str:
    """The SVG document for ``spec``: shapes and shortcuts from the plan, parameters and MACs measured."""
    rows = {r.name: r for r in summary.measure(spec, depth=1).rows}
    items = _items(spec, plan(spec), rows)
    total, macs = sum(r.params for r in rows.values()), sum(r.macs for r in rows.values())
    wrapped = [_wrap(detail, 72) for _, _, detail, _ in items]  # every word shown: a box grows to hold it
    heights = [max(ROW_H, 22 + 17 * (len(lines) - 1) + 15) for lines in wrapped]
    height = 70 + sum(heights) + len(items) * GAP
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
           f"viewBox='0 0 {WIDTH} {height}' {FONT}>",
           "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
           "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>",
           f"<rect width='{WIDTH}' height='{height}' fill='white'/>",
           f"<text x='{WIDTH / 2}' y='28' font-size='18' font-weight='bold' text-anchor='middle'>"
           f"{escape(spec.name)}</text>",
           f"<text x='{WIDTH / 2}' y='48' font-size='12' fill='#555' text-anchor='middle'>"
           f"{total:,} parameters \u00b7 {macs / 1e9:,.3f} GMACs at {_dims(spec.input.size)} \u00b7 "
           f"{escape(_norm_act(spec))}</text>"]
    y = 64
    for n, (item, lines, box) in enumerate(zip(items, wrapped, heights)):
        if n:
            out.append(f"<line x1='{BOX_X + BOX_W / 2}' y1='{y - GAP}' x2='{BOX_X + BOX_W / 2}' y2='{y - 2}' "
                       "stroke='#555' stroke-width='1.5' marker-end='url(#arrow)'/>")
        out += _box(item, lines, y, box)
        y += box + GAP
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _items(spec: ModelSpec, p: Any, rows: dict) -> list[Item]:
    """The boxes: input, stem, each stage (its flow, widths, stride or dilation, parameters), final, head, output."""
    items: list[Item] = [("io", "input", _dims(p.input_shape), None)]
    if p.stem:
        text = " \u2192 ".join(_layer_text(lp.layer) for lp in p.stem)
        items.append(("stem", "stem", f"{text}  \u21d2  {_dims(p.stem[-1].out_shape)}", None))
    dilation = 1
    for sp in p.stages:
        first, stage = sp.blocks[0], spec.stages[sp.index]
        after = sp.result.dilation if sp.result is not None else dilation  # dilate: or output_stride's doing
        stride = f"dilated \u00d7{after // dilation} (dilation {after})" if after > dilation else f"stride {stage.stride}"
        dilation = after
        attn = "+".join(a.type for a in first.attn)
        blocks = f"{first.type}{' + ' + attn if attn else ''} \u00d7{sp.depth}"
        detail = (f"{sp.type + ': ' if sp.type != 'resnet' else ''}{_flow(sp, blocks) or blocks}  \u00b7  "
                  f"{sp.in_shape[0]}\u2192{sp.out_shape[0]} ch  \u00b7  {stride}  \u00b7  out {_dims(sp.out_shape)}"
                  f"  \u00b7  {rows[sp.name].params:,} params")
        items.append(("stage", sp.name, detail, _shortcuts(sp)))
    if p.final:
        text = " \u2192 ".join(_layer_text(lp.layer) for lp in p.final)
        items.append(("stem", "final", f"{text}  \u21d2  {_dims(p.final[-1].out_shape)}", None))
    if p.head:
        items.append(("head", "head", " \u2192 ".join(_layer_text(lp.layer) for lp in p.head), None))
    items.append(("io", "output", _dims(p.output_shape), None))
    return items


def _box(item: Item, lines: list[str], y: float, box: float) -> list[str]:
    """One box's SVG: its title on the left, its lines, and the shortcut arc and note on the right."""
    kind, title, _, note = item
    out = [f"<rect x='{BOX_X}' y='{y}' width='{BOX_W}' height='{box}' rx='8' fill='{COLORS[kind]}' "
           "stroke='#7a8591'/>",
           f"<text x='{BOX_X - 12}' y='{y + box / 2 + 5}' font-size='14' font-weight='bold' "
           f"text-anchor='end'>{escape(title)}</text>"]
    for k, line in enumerate(lines):
        out.append(f"<text x='{BOX_X + 12}' y='{y + 22 + 17 * k}' font-size='12'>{escape(line)}</text>")
    if note:  # the residual shortcuts around the stage
        x = BOX_X + BOX_W
        out.append(f"<path d='M{x},{y + 10} C{x + 40},{y + 10} {x + 40},{y + box - 10} {x + 4},{y + box - 10}' "
                   "fill='none' stroke='#2f7d32' stroke-width='1.5' stroke-dasharray='4 3' marker-end='url(#arrow)'/>")
        for k, part in enumerate(_wrap(note, 36)):
            out.append(f"<text x='{x + 38}' y='{y + box / 2 + 4 + 13 * k}' font-size='11' fill='#2f7d32'>"
                       f"{escape(part)}</text>")
    return out


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines
