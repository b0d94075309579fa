"""Design-space tools: ``fit`` a spec to a compute budget, ``diff`` two specs, ``explain`` a field.

All three read the plan and the analytic costs (``summary.estimate`` / ``summary.measure``): no model
is built, so ``fit`` evaluates thousands of candidates a second, deterministically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import math
import re
from typing import Any, Callable, Iterator

from .errors import SpecError, reason
from .generators.base import Axis
from .registry import suggest

# --- fit -------------------------------------------------------------------------------------------

DEPTHS = (0.5, 0.67, 0.75, 1.0, 1.25, 1.5, 2.0)
MAX_CANDIDATES = 20_000  # a grid that would take more evaluations is sampled instead (Search.method)

# the multipliers every spec has; a generator's numbers come from the generator registry (``regnet.w_a``)
GENERIC = (Axis("width_multiplier", "width", lambda v: [v], lambda v: (0.05, 4.0)),
           Axis("depth_multiplier", "depth", lambda v: list(DEPTHS)))
DEFAULT_AXES = ("width_multiplier", "depth_multiplier")


def all_axes() -> dict[str, Axis]:
    """Every number fit may vary, by the name a fitted spec writes: the multipliers, then each generator's
    (kept while the registry is unchanged: a search asks once per candidate)."""
    from .catalog import GENERATORS

    listed = GENERATORS.listing()  # (filled first: filling changes the generation)
    if _AXES.get("generation") != GENERATORS.generation:
        found = {a.name: a for a in GENERIC}
        for _, entry in listed:
            found.update((a.name, a) for a in entry.obj.qualified_axes())
        _AXES.update(generation=GENERATORS.generation, axes=found)
    return _AXES["axes"]


_AXES: dict[str, Any] = {}


def _aliases(known: dict[str, Axis], tree: Any) -> dict[str, str]:
    """The short names --vary takes: width, depth (the multipliers), and a generator's own names where no
    multiplier has them (plain ``depth`` stays the multiplier: a RegNet's block count is ``regnet.depth``).
    Two generators may share a short name: the one this spec gives wins."""
    out = {"width": "width_multiplier", "depth": "depth_multiplier"}
    given = [k for k in tree if isinstance(tree.get(k), dict)] if isinstance(tree, dict) else []
    for name in sorted(known, key=lambda n: n.split(".", 1)[0] not in given):
        short = name.split(".", 1)[-1]
        if "." in name and short not in out:
            out[short] = name
    return out


def axes(names: str | None, tree: Any) -> tuple[Axis, ...]:
    """The axes named in ``--vary`` (comma-separated; default: the width and depth multipliers)."""
    known = all_axes()
    if names is None:
        return tuple(known[n] for n in DEFAULT_AXES)
    if not names.strip():
        raise SpecError("names no number: give e.g. width,depth (or leave --vary out)", None, "--vary")
    aliases = _aliases(known, tree)
    out: list[Axis] = []
    for raw in (n.strip() for n in names.split(",")):
        name = aliases.get(raw, raw)
        if name not in known:
            raise SpecError(f"cannot vary {raw!r}" + suggest(raw, [*aliases, *(n for n in known if "." in n)], limit=20),
                            None, "--vary")
        key = name.split(".")[0] if "." in name else None
        if key and not (isinstance(tree, dict) and isinstance(tree.get(key), dict)):
            raise SpecError(f"cannot vary {raw!r}: this spec has no {key}: numbers (it declares its stages); "
                            "vary width and depth", None, "--vary")
        if known[name] not in out:
            out.append(known[name])
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the searched space (the varied numbers, in ``--vary`` order) and its figures."""

    values: tuple[tuple[str, float], ...]
    params: int
    macs: int

    @property
    def text(self) -> str:
        known = all_axes()
        return ", ".join(f"{known[n].label if n in known else 'divisor'} {v!r}" for n, v in self.values)


@dataclasses.dataclass
class Search:
    """What ``fit`` did: the best candidate (None: none met the budget), every candidate evaluated in order,
    the refusals by reason (numbers as N), and how the space was searched."""

    best: Candidate | None
    seen: list[Candidate]
    refused: dict[str, int]
    method: str  # "grid" (every combination, the continuous number bisected) or "sampled"
    combinations: int  # of the grid numbers


SAMPLED_COMBINATIONS = 48  # a space too large for the grid: combinations drawn (seeded), then their neighbours
DIVISOR_AXIS = "width_divisor"
MAX_DIVISOR = 256  # widening the width divisor stops there (group sizes and widths of real networks divide it)


def fit(spec: Any, macs: float, params_max: float | None = None, vary: tuple[Axis, ...] | None = None,
        tree: Any = None, *, seed: int = 0) -> Search:
    """The varied numbers whose MACs come closest to ``macs`` from below (and parameters stay under
    ``params_max``). One continuous axis (the width multiplier, else ``w_a``, else ``w_0``) is bisected
    for every combination of the others' grids; with none continuous the grid is searched whole. A grid
    too large to walk (over ``MAX_CANDIDATES`` evaluations) is sampled: seeded combinations, then the
    neighbours of the best until none improves. Where scaled widths break a block's groups, the width
    divisor is widened (x2, x4, ..., and to its least common multiples with the blocks' group widths, up to 256:
    widths stay multiples of the one asked for). ``tree`` is the loaded
    (unvalidated) spec, needed to vary a generator's numbers. Deterministic."""
    vary = vary or tuple(all_axes()[n] for n in DEFAULT_AXES)
    search = _fit(spec, macs, params_max, vary, tree, seed, ())
    varies_width = any(a.name == "width_multiplier" for a in vary)
    if varies_width and search.refused and (search.best is None or search.best.macs < 0.97 * macs):
        wider = _fit(spec, macs, params_max, vary, tree, seed, _wider_divisors(spec))
        if wider.best is not None and (search.best is None or wider.best.macs > search.best.macs):
            return wider
        if search.best is None and len(wider.seen) > len(search.seen):  # none fits: the closest valid one
            return wider
    return search


def _wider_divisors(spec: Any) -> tuple[int, ...]:
    """The width divisors to try where scaled widths break a block's groups: the spec's divisor and its
    doublings, and the least common multiples of it with every group width the blocks name (RegNetY-1.6GF's
    24 is no power of two), with their doublings: seven doublings at most, none above ``MAX_DIVISOR`` (or the
    largest multiple, where a group width is above it)."""
    d = spec.width_divisor
    groups = {v for st in spec.stages for b in (getattr(st, "block", None), *(getattr(st, "blocks", None) or ()))
              for v in (getattr(b, "group_width", None), getattr(b, "group_size", None)) if isinstance(v, int) and v > 0}
    starts = {d, *(math.lcm(d, g) for g in groups)}
    limit = max(MAX_DIVISOR, *starts)  # a group width above it (regnety_640's 328) still gets its own multiple
    return tuple(sorted({m << k for m in starts for k in range(8) if m << k <= limit}))


class _Trial:
    """Evaluates candidates of one search: each combination of generator numbers (and divisor) validated once,
    costs from the plan, refusals tallied by reason, the best under the budget kept."""

    def __init__(self, spec: Any, tree: Any, order: list[str], macs: float, params_max: float | None):
        self.spec, self.tree, self.order, self.macs, self.params_max = spec, tree, order, macs, params_max
        self.specs: dict[tuple, Any] = {}
        self.refused: dict[str, int] = {}
        self.seen: list[Candidate] = []
        self.best: Candidate | None = None

    def refuse(self, exc: BaseException) -> None:
        why = reason(exc)
        self.refused[why] = self.refused.get(why, 0) + 1

    def evaluate(self, values: dict[str, float]) -> Candidate | None:
        from .summary import estimate

        numbers = tuple((n, v) for n, v in values.items() if "." in n or n == DIVISOR_AXIS)
        if numbers not in self.specs:
            self.specs[numbers] = _respec(self.spec, self.tree, numbers)
        base = self.specs[numbers]
        if isinstance(base, SpecError):
            self.refuse(base)
            return None
        multipliers = {n: v for n, v in values.items() if "." not in n and n != DIVISOR_AXIS}
        try:
            cost = estimate(base, **multipliers)
        except (SpecError, ValueError, ZeroDivisionError) as exc:  # e.g. a width that leaves a group empty
            self.refuse(exc)
            return None
        c = Candidate(tuple((n, _number(n, values[n]) if n != DIVISOR_AXIS else int(values[n])) for n in self.order),
                      cost.params, cost.macs)
        self.seen.append(c)
        return c

    def consider(self, c: Candidate | None) -> bool:
        """Whether ``c`` meets the budget (and keep it if it is the best so far)."""
        if c is None or c.macs > self.macs or (self.params_max is not None and c.params > self.params_max):
            return False
        if self.best is None or c.macs > self.best.macs:
            self.best = c
        return True


def _fit(spec: Any, macs: float, params_max: float | None, vary: tuple[Axis, ...], tree: Any, seed: int,
         divisors: tuple[int, ...]) -> Search:
    current, primary, others, grids = _search_space(spec, tree, vary)
    if divisors:  # a grid number of its own, applied to the spec (not a field fit --vary names)
        others = [*others, Axis(DIVISOR_AXIS, "divisor", lambda v: list(divisors), integer=True)]
        grids = [*grids, list(divisors)]
        current[DIVISOR_AXIS] = float(divisors[0])
    trial = _Trial(spec, tree, [*(a.name for a in vary), *([DIVISOR_AXIS] if divisors else [])], macs, params_max)
    combinations = math.prod(len(g) for g in grids)
    method = "grid" if combinations * (40 if primary is not None else 1) <= MAX_CANDIDATES else "sampled"
    with _collector_paused():  # thousands of short-lived descriptions: no cycles to collect, only time lost
        if method == "grid":
            for combo in itertools.product(*grids):
                _bisect(combo, others, primary, current, trial.evaluate, trial.consider)
        else:
            _sampled(grids, others, primary, current, trial.evaluate, trial.consider, lambda: trial.best, seed)
    return Search(trial.best, trial.seen, dict(sorted(trial.refused.items(), key=lambda kv: -kv[1])), method,
                  combinations)


def _search_space(spec: Any, tree: Any, vary: tuple[Axis, ...]) -> tuple[dict, Any, list, list]:
    """Each axis' current value, the axis bisected (continuous), the others and their grids; refused where a
    pruned network has nothing to scale."""
    explicit = [i + 1 for i, s in enumerate(spec.stages) if s.blocks is not None
                or getattr(s.block, "widths", None) or getattr(s.block, "out_channels", None)]
    if explicit and any(a.name in DEFAULT_AXES for a in vary):
        raise SpecError(f"stage {explicit[0]} lists its blocks or sets explicit widths (a pruned network): its "
                        "width and depth multipliers cannot scale it, so fit has nothing to vary", None, "--vary")
    current = {a.name: _current(spec, tree, a.name) for a in vary}
    primary = next((a for a in all_axes().values() if a in vary and a.bounds is not None), None)
    others = [a for a in vary if a != primary]
    grids = [sorted(set(a.grid(current[a.name]))) for a in others]
    return current, primary, others, grids


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _bisect(combo: tuple, others: list, primary: Any, current: dict, evaluate: Callable, consider: Callable) -> None:
    """Bisect the primary axis (or take the combination as it is) for one combination of the others."""
    fixed = {a.name: (_number(a.name, v) if a.name != DIVISOR_AXIS else v) for a, v in zip(others, combo)}
    if primary is None:
        consider(evaluate(fixed))
        return
    lo, hi = primary.bounds(current[primary.name])
    if primary.quantum:  # bisection over the lattice's indices
        lo, hi = lo // primary.quantum, hi // primary.quantum
    for _ in range(40):  # MACs grow with the continuous number: bisection to the budget's edge
        mid = (lo + hi) / 2
        if primary.quantum:
            mid = float(int(mid))
        value = mid * primary.quantum if primary.quantum else mid
        if consider(evaluate({**fixed, primary.name: _number(primary.name, value)})):
            lo = mid
        else:
            hi = mid
        if hi - lo <= (1 if primary.quantum else 10.0 ** -(primary.digits - 1)):
            break


def _sampled(grids: list, others: list, primary: Any, current: dict, evaluate: Callable, consider: Callable,
             best: Callable[[], Candidate | None], seed: int) -> None:
    """A grid too large to walk: ``SAMPLED_COMBINATIONS`` combinations drawn without repetition (seeded), each
    bisected, then local refinement: the neighbours (one grid step in one number) of the best combination,
    until a round finds nothing better."""
    import random

    rng = random.Random(f"archkit-fit:{seed}")
    sizes = [len(g) for g in grids]
    done: set[tuple[int, ...]] = set()

    def run(index: tuple[int, ...]) -> None:
        if index not in done:
            done.add(index)
            _bisect(tuple(g[i] for g, i in zip(grids, index)), others, primary, current, evaluate, consider)

    start = tuple(min(range(n), key=lambda i, g=g, a=a: abs(g[i] - current[a.name])) for g, n, a in
                  zip(grids, sizes, others))  # the spec's own numbers first
    run(start)
    while len(done) < SAMPLED_COMBINATIONS:
        run(tuple(rng.randrange(n) for n in sizes))
    while True:  # coordinate moves around the best so far
        b = best()
        if b is None:
            return
        values = dict(b.values)
        at = tuple(g.index(_closest(g, values[a.name])) for g, a in zip(grids, others))
        before = b.macs
        for k in range(len(sizes)):
            for step in (-1, 1):
                moved = list(at)
                moved[k] += step
                if 0 <= moved[k] < sizes[k]:
                    run(tuple(moved))
        if best() is None or best().macs <= before:
            return


def _closest(grid: list, value: float) -> float:
    return min(grid, key=lambda g: abs(g - value))


def _number(name: str, value: float) -> float | int:
    """A varied number as the spec takes it: an integer where the field is one, else rounded."""
    axis = all_axes()[name]
    return int(round(value)) if axis.integer else round(float(value), axis.digits)


def _current(spec: Any, tree: Any, name: str) -> float:
    if "." not in name:
        return float(getattr(spec, name))
    from .catalog import GENERATORS

    key, field = name.split(".", 1)
    params = GENERATORS.get(key).obj.params
    value = tree[key].get(field, params.model_fields[field].default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SpecError(f"{name} must be a number to vary it (got {value!r})", None, "--vary")
    return float(value)


def _respec(spec: Any, tree: Any, numbers: tuple[tuple[str, float], ...]) -> Any:
    """The spec with other generator numbers (and width divisor), or the error that says why they yield no
    valid network."""
    divisor = dict(numbers).get(DIVISOR_AXIS)
    numbers = tuple((n, v) for n, v in numbers if n != DIVISOR_AXIS)
    if numbers:
        from .loader import MDict
        from .specs import validate

        changed = MDict(tree, mark=tree.mark)
        changed.marks = dict(tree.marks)
        for name, value in numbers:
            key, field = name.split(".", 1)
            if not isinstance(changed[key], MDict) or changed[key] is tree[key]:
                copied = MDict(tree[key], mark=tree[key].mark)
                copied.marks = dict(tree[key].marks)
                changed[key] = copied
            changed[key][field] = value
        try:
            spec = validate(changed)
        except SpecError as exc:
            return exc
    if divisor is not None:
        spec = spec.model_copy(update={"width_divisor": int(divisor)})
    return spec


def _plain(node: Any) -> Any:
    """A loaded tree as plain dicts, lists and scalars (what a YAML emitter takes)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def write_fitted(output: str, ref: str, overrides: list[str], spec: Any, c: Candidate, target: float, *,
                 num_classes: int | None = None, in_chans: int | None = None) -> None:
    """Write the chosen candidate as a spec that builds exactly what ``fit`` measured.

    The file is ``base: REF`` plus every top-level key that the overrides (``--set``, ``--input-size``)
    and the chosen numbers change, written whole, emitted by a YAML emitter (any name or path is
    quoted as needed). It is read back from its final directory and compared with the measured spec
    (every field but the name, and its parameters and MACs) before it replaces anything; when the
    short form cannot express the change (a ``--set`` that replaced a mapping the base file extends),
    the whole spec is written without ``base:``. SpecError if neither reads back equal: nothing written.
    """
    import os
    from pathlib import Path

    import yaml

    from . import loader, specs, zoo
    from .errors import Mark
    from .files import is_special
    from .summary import measure

    final = loader.load(ref, overrides, num_classes=num_classes, in_chans=in_chans, resolve=zoo.resolve)
    for name, value in c.values:
        loader.set_value(final, name, value, Mark("archkit fit"))
    expected = specs.validate(final, str(ref))
    counted = measure(expected)
    if (counted.total_params, counted.macs) != (c.params, c.macs):  # the search's estimate and the spec agree
        raise SpecError(f"fit: the chosen spec measures {counted.macs:,} MACs, not the searched {c.macs:,}; "
                        "nothing written (please report this)")
    special = is_special(Path(output))
    base = ref
    if zoo.is_path(ref):  # a packaged name stays a name; a path becomes relative to the written file
        base = os.path.abspath(ref) if special else \
            os.path.relpath(os.path.abspath(ref), os.path.dirname(os.path.realpath(output)))
    inherited = loader.load(ref, resolve=zoo.resolve)
    header = f"# archkit fit --macs {target / 1e9:g}G: {c.params:,} parameters, {c.macs / 1e9:.3f} GMACs\n"
    own = {k: _plain(v) for k, v in final.items() if k not in ("name", "weights")}
    short = {"base": base, "name": f"{expected.name}_fit",
             **{k: v for k, v in own.items() if k not in inherited or _plain(inherited[k]) != v}}
    whole = {"name": f"{expected.name}_fit", **own}
    want = expected.model_dump(mode="json", exclude={"name", "weights", "description"})

    def reads_back(path: Path) -> bool:
        try:
            got = zoo.load(path)
        except SpecError:
            return False
        counted = measure(got)
        return got.model_dump(mode="json", exclude={"name", "weights", "description"}) == want and \
            (counted.total_params, counted.macs) == (c.params, c.macs)

    for tree in (short, whole):
        if _written_if_it_reads_back(output, header + yaml.safe_dump(tree, sort_keys=False, allow_unicode=False,
                                                                      width=100), special, reads_back):
            return
    raise SpecError(f"fit: {output} would not build the measured spec; nothing written")


def _written_if_it_reads_back(output: str, text: str, special: bool, reads_back: Callable[[Any], bool]) -> bool:
    """Write ``text`` to ``output`` only if it reads back as the measured spec; whether it was written."""
    import tempfile
    from pathlib import Path

    from .files import atomic_path

    if special:  # /dev/stdout and the like: checked beside nothing, written in place
        with tempfile.TemporaryDirectory() as tmp:
            check = Path(tmp) / "fit.yaml"
            check.write_text(text, encoding="utf-8")
            if not reads_back(check):
                return False
        with atomic_path(output) as path, open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return True
    try:
        with atomic_path(output) as path:  # replaces the target only if the block ends without an exception
            path.write_text(text, encoding="utf-8")
            if not reads_back(path):
                raise _NotWritten
    except _NotWritten:
        return False
    return True


class _NotWritten(Exception):
    """A candidate file that does not read back: its atomic write is rolled back."""


# --- diff ------------------------------------------------------------------------------------------

def _blocks_text(texts: list[str]) -> str:
    """A stage's blocks: one text when they agree, else their shortest repeating run (a pattern) or all."""
    for n in range(1, len(texts) + 1):
        if all(texts[j] == texts[j % n] for j in range(len(texts))):
            break
    if n == 1:
        return texts[0]
    return f"[{', '.join(texts[:n])}]" + (" repeated" if n < len(texts) else "")


def diff(a: Any, b: Any) -> dict[str, Any]:
    """Stage by stage and in total: parameters, MACs, output shapes and block settings of two specs."""
    from .draw import _layer_text as _block_text  # type(key=value, ...) of the non-default fields
    from .plan import plan
    from .summary import measure

    pa, pb = plan(a), plan(b)
    ra = {r.name: r for r in measure(a).rows}
    rb = {r.name: r for r in measure(b).rows}
    stages = []
    for i in range(max(len(pa.stages), len(pb.stages))):
        sa = pa.stages[i] if i < len(pa.stages) else None
        sb = pb.stages[i] if i < len(pb.stages) else None
        name = (sa or sb).name

        def side(s: Any, rows: dict) -> dict | None:
            if s is None:
                return None
            return {"module": s.name, "stage": _stage_text(s),
                    "block": _blocks_text([_block_text(b.params) for b in s.blocks]), "depth": s.depth,
                    "channels": s.out_shape[0],
                    "output_shape": list(s.out_shape), "params": rows[s.name].params, "macs": rows[s.name].macs}

        stages.append({"stage": name, "a": side(sa, ra), "b": side(sb, rb)})
    ta, tb = measure(a), measure(b)
    # every top-level field but the parts compared above and below (a stage's block: / stage: defaults are
    # compared where they land, in the stages), the name and the words
    da, db = (spec.model_dump(mode="json") for spec in (a, b))
    skip = {"name", "description", "family", "weights", "stages", "stem", "final", "head", "block", "stage"}
    fields = {key: {"a": da.get(key), "b": db.get(key)} for key in [*da, *(k for k in db if k not in da)]
              if key not in skip and da.get(key) != db.get(key)}
    layers = {part: {"a": [[lp.name, _block_text(lp.layer)] for lp in getattr(pa, part)],
                     "b": [[lp.name, _block_text(lp.layer)] for lp in getattr(pb, part)],
                     "figures": {"a": _figures(getattr(pa, part), ra), "b": _figures(getattr(pb, part), rb)}}
              for part in ("stem", "final", "head")}
    total = {"a": {"params": ta.total_params, "macs": ta.macs, "output_shape": ta.output_shape},
             "b": {"params": tb.total_params, "macs": tb.macs, "output_shape": tb.output_shape}}
    same = (all(s["a"] == s["b"] for s in stages) and not fields and total["a"] == total["b"]
            and all(v["a"] == v["b"] and v["figures"]["a"] == v["figures"]["b"] for v in layers.values()))
    return {"a": a.name, "b": b.name, "equal": same, "stages": stages, "fields": fields,
            "layers": layers, "total": total}


def _figures(part: Any, rows: dict) -> dict:
    """A part's parameters and MACs (its layers' rows summed)."""
    found = [rows[lp.name] for lp in part if lp.name in rows]
    return {"params": sum(r.params for r in found), "macs": sum(r.macs for r in found)}


def _stage_text(sp: Any) -> str:
    """``csp(expand_ratio=2.0, down_growth=True)``: the stage type and its own keys that differ from their
    defaults."""
    from .params import StageSpec

    stage = sp.stage
    if stage is None:
        return sp.type
    fields = type(stage).model_fields
    own = [f"{k}={getattr(stage, k)}" for k in fields if k not in StageSpec.model_fields
           and getattr(stage, k) != fields[k].default and not isinstance(getattr(stage, k), list)]  # (block lists:
    # the block line shows them)
    return f"{sp.type}({', '.join(own)})" if own else sp.type


def render_diff(d: dict) -> str:
    """The diff as a table: a line per differing figure, with the change."""
    out = [f"{d['a']}  ->  {d['b']}"]
    for key, v in d["fields"].items():
        out.append(f"  {key}: {v['a']} -> {v['b']}")
    for part, v in d["layers"].items():
        fa, fb = v["figures"]["a"], v["figures"]["b"]
        if v["a"] == v["b"] and fa == fb:
            continue
        if [n for n, _ in v["a"]] != [n for n, _ in v["b"]]:  # other layers: both lists, by name
            out.append(f"  {part}: {' '.join(n for n, _ in v['a'])} -> {' '.join(n for n, _ in v['b'])}")
        for (name, ta), (_, tb) in zip(v["a"], v["b"]):
            if ta != tb:
                out.append(f"  {part} {name}: {ta} -> {tb}")
        for key in ("params", "macs"):  # a part changes with what feeds it too (a head after narrower stages)
            if fa[key] != fb[key]:
                out.append(f"  {part} {key}: {fa[key]:,} -> {fb[key]:,} ({fb[key] - fa[key]:+,})")
    for s in d["stages"]:
        a, b = s["a"], s["b"]
        if a == b:
            continue
        if a is None or b is None:
            only = a or b
            out.append(f"  {s['stage']}: only in {d['b'] if a is None else d['a']} ({only['block']} x{only['depth']}, "
                       f"{only['params']:,} params, {only['macs']:,} MACs, out {'x'.join(map(str, only['output_shape']))})")
            continue
        out.append(f"  {s['stage']}:")
        for key in ("module", "stage", "block", "depth", "channels", "output_shape"):
            if a[key] != b[key]:
                out.append(f"    {key}: {a[key]} -> {b[key]}")
        for key in ("params", "macs"):
            if a[key] != b[key]:
                out.append(f"    {key}: {a[key]:,} -> {b[key]:,} ({b[key] - a[key]:+,})")
    ta, tb = d["total"]["a"], d["total"]["b"]
    out.append(f"  total params: {ta['params']:,} -> {tb['params']:,} ({tb['params'] - ta['params']:+,})")
    out.append(f"  total MACs:   {ta['macs']:,} -> {tb['macs']:,} ({tb['macs'] - ta['macs']:+,})")
    if d["equal"]:
        out.append("  (no differences)")
    return "\n".join(out)


# --- explain ---------------------------------------------------------------------------------------

def explain(ref: str, field: str, overrides: list[str]) -> list[str]:
    """Where ``field`` got its value: each file of the base: chain (and --set) that sets it, last wins. A
    stage's value may come from the top-level ``block:`` / ``stage:`` defaults of any file of the chain."""
    from . import loader, zoo
    from .errors import Mark
    from .zoo import load as load_spec

    from .catalog import GENERATORS

    spec = load_spec(ref, overrides)
    field = re.sub(r"\[(\d+)\]", r".\1", field)  # block.attn[0] is block.attn.0, as --set spells it
    parts = field.split(".")
    generators = set(GENERATORS.names())
    if parts[0] in generators:  # expanded into stages on validation: its numbers are read from the merged file
        numbers = loader.flatten(loader.load(ref, overrides, resolve=zoo.resolve))[0]
        fields = GENERATORS.get(parts[0]).obj.params.model_fields
        if len(parts) == 2 and isinstance(numbers.get(parts[0]), dict) and parts[0] in numbers and \
                parts[1] not in numbers[parts[0]] and parts[1] in fields:  # a number left at its default
            numbers[parts[0]] = {**numbers[parts[0]], parts[1]: fields[parts[1]].default}
        value = _lookup(numbers, parts, field)
    else:
        data = spec.model_dump(mode="json")
        data["layout"] = spec.names.model_dump(mode="json") if parts[0] == "layout" and len(parts) > 1 \
            else data["layout"]  # a preset's name, or read as the scheme it names
        value = _lookup(data, parts, field)
    aliases = [parts]  # where a file may set this value: the field itself, or the defaults it merges over
    if len(parts) >= 3 and parts[0] == "stages":
        aliases.append(["stage", *parts[2:]])  # the top-level stage: defaults (a pattern: there, say)
        if parts[2] in ("blocks", "pattern"):  # items merge over the stage's block, which merges over block:
            aliases.append(["stages", parts[1], "block", *parts[4:]])
        if parts[2] in ("block", "blocks", "pattern"):
            aliases.append(["block", *parts[3 + (parts[2] != "block"):]])
    sources = []
    top = zoo.resolve(ref)  # a file, or the tree of a shared folder's config.json (one "file")
    for path, tree in reversed([(None, top)] if isinstance(top, loader.MDict) else loader.chain(top, zoo.resolve)):
        generator = next((key for key in tree if key in generators), None) if parts[0] == "stages" else None
        if generator is not None:
            sources.append((str(tree.marks[generator]), f"generated by its {generator}: numbers"))
            continue
        found = [found for alias in aliases if (found := _mark_at(tree, alias)) is not None]
        if found:
            sources.append(found[0])  # the field itself wins over a default in the same file
    for text in overrides:
        key, _, raw = text.partition("=")
        if key.strip() in (".".join(a) for a in aliases) or (parts[0] == "stages" and key.strip().partition(".")[0] in generators):
            sources.append((str(Mark(f"--set {text}")), raw))
    lines = [f"{field} = {value!r}"]
    if not sources:
        lines.append("  not set by any file: the default")
    for i, (where, val) in enumerate(reversed(sources)):
        generated = isinstance(val, str) and val.startswith("generated")
        lines.append(f"  {'set at' if i == 0 else 'overrides'} {where}" + (f" ({val})" if generated else
                                                                           "" if i == 0 else f" ({val!r})"))
    return lines


def _mark_at(tree: Any, parts: list[str]) -> tuple[str, Any] | None:
    """(position, value) where ``tree`` sets the dotted path ``parts``, or None."""
    node, mark = tree, None
    for part in parts:
        if isinstance(node, dict) and part in node:
            mark, node = node.marks.get(part), node[part]
        elif isinstance(node, list) and part.isascii() and part.isdecimal() and int(part) < len(node):
            mark, node = node.marks[int(part)], node[int(part)]
        else:
            return None
    return (str(mark), node) if mark is not None else None


def _lookup(data: Any, parts: list[str], field: str) -> Any:
    node, done = data, []
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdecimal() and int(part) < len(node):
            node = node[int(part)]
        else:
            where = ".".join(done) or "the spec"
            if isinstance(node, list):
                what = f"item {part}" if part.isdecimal() else f"field {part!r} (a list has numbered items)"
                held = "an empty list" if not node else f"a list of {len(node)} (items 0..{len(node) - 1})"
                raise SpecError(f"{where} is {held}: no {what}", None, field)
            choices = list(node) if isinstance(node, dict) else []
            raise SpecError(f"no field {part!r} in {where}" + suggest(part, choices, limit=20), None, field)
        done.append(part)
    return node


def plot_svg(candidates: list[Candidate], best: Candidate | None, macs: float, params_max: float | None,
             title: str) -> str:
    """Parameters against MACs of every evaluated candidate, the budget as lines, the chosen one marked."""
    from xml.sax.saxutils import escape

    width, height, left, bottom, top, right = 760, 520, 90, 60, 50, 30
    candidates = [c for c in candidates if c.macs <= 2.5 * macs]  # far past the budget says nothing
    xs = [c.macs for c in candidates] + [macs]
    ys = [c.params for c in candidates] + ([params_max] if params_max else [])
    x_max, y_max = max(xs) * 1.05, max(ys, default=1e6) * 1.05  # nothing under 2.5x the budget: an empty plot

    def px(v: float) -> float:
        return left + (width - left - right) * v / x_max

    def py(v: float) -> float:
        return height - bottom - (height - bottom - top) * v / y_max

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"font-family='DejaVu Sans, Helvetica, Arial, sans-serif'>",
           f"<rect width='{width}' height='{height}' fill='white'/>",
           f"<text x='{width / 2}' y='28' font-size='16' text-anchor='middle'>{escape(title)}</text>",
           f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='#333'/>",
           f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#333'/>",
           f"<text x='{width / 2}' y='{height - 18}' font-size='13' text-anchor='middle'>GMACs</text>",
           f"<text x='22' y='{height / 2}' font-size='13' text-anchor='middle' "
           f"transform='rotate(-90 22 {height / 2})'>parameters (M)</text>"]
    for i in range(6):  # ticks
        xv, yv = x_max * i / 5, y_max * i / 5
        out.append(f"<text x='{px(xv)}' y='{height - bottom + 18}' font-size='11' text-anchor='middle'>"
                   f"{xv / 1e9:.2f}</text>")
        out.append(f"<text x='{left - 8}' y='{py(yv) + 4}' font-size='11' text-anchor='end'>{yv / 1e6:.1f}</text>")
    out.append(f"<line x1='{px(macs)}' y1='{top}' x2='{px(macs)}' y2='{height - bottom}' stroke='#c62828' "
               f"stroke-dasharray='6 4'/><text x='{px(macs) + 4}' y='{top + 12}' font-size='11' fill='#c62828'>"
               f"budget {macs / 1e9:g} GMACs</text>")
    if params_max:
        out.append(f"<line x1='{left}' y1='{py(params_max)}' x2='{width - right}' y2='{py(params_max)}' "
                   f"stroke='#c62828' stroke-dasharray='6 4'/><text x='{width - right - 4}' y='{py(params_max) - 5}' "
                   f"font-size='11' fill='#c62828' text-anchor='end'>at most {params_max / 1e6:g} M parameters</text>")
    for c in candidates:
        out.append(f"<circle class='candidate' cx='{px(c.macs):.1f}' cy='{py(c.params):.1f}' r='3' "
                   f"fill='#1565c0' fill-opacity='0.5'/>")
    if best is not None:  # the label in the plot's free top-left corner, a leader line to the point
        bx, by, lx, ly = px(best.macs), py(best.params), left + 12, top + 16
        out.append(f"<circle class='chosen' cx='{bx:.1f}' cy='{by:.1f}' r='8' fill='none' stroke='#2e7d32' "
                   f"stroke-width='3'/><line x1='{lx + 4}' y1='{ly + 6}' x2='{bx:.1f}' y2='{by - 8:.1f}' "
                   f"stroke='#2e7d32' stroke-width='1' stroke-dasharray='2 3'/><text x='{lx}' y='{ly}' "
                   f"font-size='12' fill='#2e7d32'>chosen: {escape(best.text)} ({best.macs / 1e9:.3f} GMACs, "
                   f"{best.params / 1e6:.2f} M parameters)</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
