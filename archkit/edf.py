"""Empirical distribution functions (EDFs) of sampled models' complexity, as an SVG: one panel per figure
(parameters, MACs, activations), one curve per design space, log-scaled x (pycls' way of comparing design
spaces, Radosavovic et al. 2019). Plain SVG text, no plotting library."""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

COLOURS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#4e342e", "#ad1457")
LABELS = {"params": "parameters", "macs": "MACs", "activations": "activations"}
MAX_POINTS = 400  # per curve: an EDF of 10,000 models drawn through 400 of its quantiles looks the same


def edf(values: list[float]) -> list[tuple[float, float]]:
    """The EDF's steps: (value, fraction of values <= it), at most ``MAX_POINTS`` of them, the last at 1."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return []
    picks = sorted({min(n - 1, round(k * (n - 1) / (MAX_POINTS - 1))) for k in range(MAX_POINTS)}) \
        if n > MAX_POINTS else range(n)
    out: list[tuple[float, float]] = []
    for i in picks:
        if out and ordered[i] == out[-1][0]:
            continue  # a tie already reached its last copy
        j = i
        while j + 1 < n and ordered[j + 1] == ordered[i]:  # a tie's step reaches its last copy
            j += 1
        out.append((ordered[i], (j + 1) / n))
    return out


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}"


def svg(curves: dict[str, dict[str, list[float]]], title: str) -> str:
    """``curves``: space name -> figure name -> the sampled values. Panels for params, MACs, activations."""
    figures = [f for f in LABELS if any(f in c for c in curves.values())]
    panel_w, panel_h, left, bottom, top, gap = 330, 300, 56, 48, 58, 24
    width = left + len(figures) * (panel_w + gap)
    height = top + panel_h + bottom + 18 * ((len(curves) + 2) // 3)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"font-family='DejaVu Sans, Helvetica, Arial, sans-serif'>",
           f"<rect width='{width}' height='{height}' fill='white'/>",
           f"<text x='{width / 2}' y='24' font-size='15' text-anchor='middle'>{escape(title)}</text>"]
    for p, figure in enumerate(figures):
        _panel(out, figure, curves, left + p * (panel_w + gap), top, panel_w, panel_h, p == 0)
    if figures:
        out.append(f"<text x='14' y='{top + panel_h / 2}' font-size='12' text-anchor='middle' "
                   f"transform='rotate(-90 14 {top + panel_h / 2})'>cumulative fraction of models</text>")
    for i, (name, c) in enumerate(curves.items()):  # the legend, three to a row
        lx, ly = left + (i % 3) * 300, top + panel_h + bottom + 6 + 18 * (i // 3)
        n = max((len(v) for v in c.values()), default=0)
        out.append(f"<line x1='{lx}' y1='{ly - 4}' x2='{lx + 22}' y2='{ly - 4}' stroke='{COLOURS[i % len(COLOURS)]}' "
                   f"stroke-width='3'/><text x='{lx + 28}' y='{ly}' font-size='12'>{escape(name)} "
                   f"(n = {n:,})</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _panel(out: list[str], figure: str, curves: dict, x0: float, top: float, panel_w: float, panel_h: float,
           first: bool) -> None:
    """One figure's frame, ticks and a curve per space."""
    values = [v for c in curves.values() for v in c.get(figure, []) if v > 0]
    if not values:
        return
    lo, hi = math.log10(min(values)), math.log10(max(values))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    pad = (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad

    def px(v: float) -> float:
        return x0 + panel_w * (math.log10(v) - lo) / (hi - lo)

    def py(f: float) -> float:
        return top + panel_h * (1 - f)

    out.append(f"<g class='panel' data-figure='{figure}'>")
    out.append(f"<rect x='{x0}' y='{top}' width='{panel_w}' height='{panel_h}' fill='none' stroke='#333'/>")
    out.append(f"<text x='{x0 + panel_w / 2}' y='{top + panel_h + 36}' font-size='12' text-anchor='middle'>"
               f"{LABELS[figure]} (log scale)</text>")
    for k in range(5):  # y ticks
        f = k / 4
        out.append(f"<line x1='{x0}' y1='{py(f):.1f}' x2='{x0 + panel_w}' y2='{py(f):.1f}' stroke='#eee'/>")
        if first:
            out.append(f"<text x='{x0 - 6}' y='{py(f) + 4:.1f}' font-size='10' text-anchor='end'>{f:g}</text>")
    for k in range(5):  # x ticks: five values spread in log space
        v = float(f"{10 ** (lo + (hi - lo) * (k + 0.5) / 5):.2g}")
        out.append(f"<line x1='{px(v):.1f}' y1='{top + panel_h}' x2='{px(v):.1f}' y2='{top + panel_h + 4}' "
                   f"stroke='#333'/><text x='{px(v):.1f}' y='{top + panel_h + 16}' font-size='10' "
                   f"text-anchor='middle'>{_si(v)}</text>")
    for i, (name, c) in enumerate(curves.items()):
        steps = edf([v for v in c.get(figure, []) if v > 0])
        if not steps:
            continue
        points, previous = [], 0.0
        for v, f in steps:
            points.append(f"{px(v):.1f},{py(previous):.1f} {px(v):.1f},{py(f):.1f}")
            previous = f
        out.append(f"<polyline class='edf' data-space='{escape(name)}' fill='none' "
                   f"stroke='{COLOURS[i % len(COLOURS)]}' stroke-width='1.6' points='{' '.join(points)}'/>")
    out.append("</g>")
