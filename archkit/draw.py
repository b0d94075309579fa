"""An SVG picture of a spec: input -> stem -> stages -> head, with shapes and shortcuts. No dependencies."""

from __future__ import annotations

from xml.sax.saxutils import escape

from . import summary
from .builder import stage_plan
from .specs import ModelSpec, layer_names

WIDTH = 840
BOX_X, BOX_W = 110, 480
ROW_H, GAP = 54, 26
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
COLORS = {"io": "#eef1f5", "stem": "#dbe9f6", "stage": "#e3f2e1", "head": "#f8e6d3"}


def _layer_text(layer) -> str:  # noqa: ANN001
    fields = layer.model_dump(exclude={"name", "type"}, exclude_defaults=True)
    inner = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{layer.type}({inner})" if inner else layer.type


def _dims(shape: list) -> str:
    return "\u00d7".join(str(s) for s in shape[1:])


def render(spec: ModelSpec) -> str:
    """The SVG document for ``spec`` (shapes measured on the meta device)."""
    rows = {r.name: r for r in summary.measure(spec, depth=1).rows}
    stem_names, head_names = layer_names(spec)
    items: list[tuple[str, str, str, str | None]] = []  # (kind, title, detail, shortcut note)
    items.append(("io", "input", _dims([1, spec.input.channels, *spec.input.size]), None))
    if spec.stem:
        last = rows[stem_names[-1]].output_shape
        text = " \u2192 ".join(_layer_text(layer) for layer in spec.stem)
        items.append(("stem", "stem", f"{text}  \u21d2  {_dims(last)}", None))
    in_channels = rows[stem_names[-1]].output_shape[1] if spec.stem else spec.input.channels
    for i, stage in enumerate(spec.stages):
        name = f"layer{i + 1}"
        row = rows[name]
        planes, depth = stage_plan(spec, i)
        out_channels = row.output_shape[1]
        stride = f"dilated \u00d7{stage.stride}" if stage.dilate and stage.stride > 1 else f"stride {stage.stride}"
        detail = (f"{stage.block.type} \u00d7{depth}  \u00b7  {in_channels}\u2192{out_channels} ch  \u00b7  "
                  f"{stride}  \u00b7  out {_dims(row.output_shape)}  \u00b7  {row.params:,} params")
        projection = stage.stride != 1 and not stage.dilate or in_channels != out_channels
        note = ("1 projection + " if projection else "") + f"{depth - (1 if projection else 0)} identity"
        items.append(("stage", name, detail, note))
        in_channels = out_channels
    if spec.head:
        text = " \u2192 ".join(_layer_text(layer) for layer in spec.head)
        items.append(("head", "head", text, None))
    total = sum(r.params for r in rows.values())
    macs = sum(r.macs for r in rows.values())
    last_name = (head_names or [f"layer{len(spec.stages)}"])[-1]
    items.append(("io", "output", _dims(rows[last_name].output_shape), None))

    height = 70 + len(items) * (ROW_H + GAP)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
           f"viewBox='0 0 {WIDTH} {height}' {FONT}>",
           "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
           "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>",
           f"<rect width='{WIDTH}' height='{height}' fill='white'/>",
           f"<text x='{WIDTH / 2}' y='28' font-size='18' font-weight='bold' text-anchor='middle'>"
           f"{escape(spec.name)}</text>",
           f"<text x='{WIDTH / 2}' y='48' font-size='12' fill='#555' text-anchor='middle'>"
           f"{total:,} parameters \u00b7 {macs / 1e9:,.3f} GMACs at {_dims([1, *spec.input.size])}</text>"]
    y = 64
    for n, (kind, title, detail, note) in enumerate(items):
        if n:
            out.append(f"<line x1='{BOX_X + BOX_W / 2}' y1='{y - GAP}' x2='{BOX_X + BOX_W / 2}' y2='{y - 2}' "
                       "stroke='#555' stroke-width='1.5' marker-end='url(#arrow)'/>")
        out.append(f"<rect x='{BOX_X}' y='{y}' width='{BOX_W}' height='{ROW_H}' rx='8' fill='{COLORS[kind]}' "
                   "stroke='#7a8591'/>")
        out.append(f"<text x='{BOX_X - 12}' y='{y + ROW_H / 2 + 5}' font-size='14' font-weight='bold' "
                   f"text-anchor='end'>{escape(title)}</text>")
        for k, line in enumerate(_wrap(detail, 72)[:2]):
            out.append(f"<text x='{BOX_X + 12}' y='{y + 22 + 17 * k}' font-size='12'>{escape(line)}</text>")
        if note:  # the residual shortcuts around the stage
            x = BOX_X + BOX_W
            out.append(f"<path d='M{x},{y + 10} C{x + 40},{y + 10} {x + 40},{y + ROW_H - 10} {x + 4},{y + ROW_H - 10}' "
                       "fill='none' stroke='#2f7d32' stroke-width='1.5' stroke-dasharray='4 3' "
                       "marker-end='url(#arrow)'/>")
            out.append(f"<text x='{x + 38}' y='{y + ROW_H / 2 + 4}' font-size='11' fill='#2f7d32'>"
                       f"{escape(note)} shortcuts</text>")
        y += ROW_H + GAP
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines
