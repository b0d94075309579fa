"""Design spaces as pycls studies them (Radosavovic et al., "On Network Design Spaces for Visual Recognition",
ICCV 2019; "Designing Network Design Spaces", CVPR 2020): a base spec, the numbers that vary (each with its
distribution) and the constraints a sampled model must meet. ``sample`` draws models from a space, seeded and
reproducible, and gives each one's numbers and complexity from the analytic costs (no torch).

A space file::

    space: anynetx_a
    description: ...
    spec: {...}              # the base: a spec mapping (it may say base: NAME) or a spec name / file
    axes:                    # field path (as --set writes it; ``*`` = every stage) -> distribution
      stages.*.depth: {log_uniform: [1, 16]}
      stages.*.planes: {log_uniform: [8, 1024], quantize: 8}
      stages.*.block.bottleneck_multiplier: {values: [1.0, 0.5, 0.25], shared: true}
    constraints:
      macs: [360M, 400M]     # inclusive; null leaves a side open
      increasing: [stages.*.planes]   # drawn per stage, then sorted

The distributions are pycls' sweep samplers' (``pycls/sweep/random.py``), drawn with Python's seeded
``random`` so that spaces need neither numpy nor torch: ``uniform``, ``log_uniform``, ``power2_uniform``,
``power2_or_log_uniform``, ``normal``, ``log_normal`` over a closed ``[low, high]`` quantized to ``quantize``
(integers when low, high and quantize are), and ``values`` (one of a list, uniformly).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema,
                      field_validator, model_validator)

from .errors import Mark, SpecError, reason
from .loader import MDict, _copy, flatten, from_mapping, inherit, load_file, parse, read_text, set_value

FIGURES = ("params", "macs", "activations")
DISTRIBUTIONS = ("uniform", "log_uniform", "power2_uniform", "power2_or_log_uniform", "normal", "log_normal")
MAX_DRAWS = 1_000_000  # pycls' SETUP.NUM_SAMPLES: attempts before a sweep gives up
SPACES = Path(__file__).resolve().parent / "zoo" / "spaces"

_UNITS = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def amount(value: Any) -> float | None:
    """``400M`` / ``2.5G`` / ``3e9`` / a number as a float (None stays None)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        text = value.strip()
        scale = _UNITS.get(text[-1:].upper(), 1.0)
        try:
            return float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            pass
    raise ValueError(f"expected a number such as 400M or 2.5G, got {value!r}")


BOUND = 1e15  # the largest magnitude a range may name (a width, a depth, a ratio: far below it)


def _number(value: Any) -> int | float:
    """A finite int or float within ``BOUND`` (one message for any other value, not one per union member)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    if abs(value) > BOUND:
        raise ValueError(f"{value!r} is beyond {BOUND:g}")
    return value


Number = Annotated[Any, BeforeValidator(_number), WithJsonSchema({"type": "number"})]
Pair = Annotated[list[Number], Field(min_length=2, max_length=2, description="[low, high], both included")]
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Distribution(BaseModel):
    """How one axis is drawn: ``values`` or one of pycls' random types over ``[low, high]``."""

    model_config = STRICT

    values: list[Any] | None = Field(None, min_length=1, max_length=10_000, description="Draw one of these, "
                                     "uniformly.")
    uniform: Pair | None = None
    log_uniform: Pair | None = None
    power2_uniform: Pair | None = None
    power2_or_log_uniform: Pair | None = None
    normal: Pair | None = None
    log_normal: Pair | None = None
    quantize: Number | None = Field(None, gt=0, description="Values are multiples of it (default 1 for integer "
                                    "ranges, 0.00001 otherwise: pycls' defaults).")
    shared: bool = Field(False, description="A ``*`` path: one draw for every stage (pycls' AnyNetX_B/C).")

    @model_validator(mode="after")
    def _one_kind(self) -> "Distribution":
        given = [k for k in ("values", *DISTRIBUTIONS) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of values, " + ", ".join(DISTRIBUTIONS)
                             + (f" (got {', '.join(given)})" if given else ""))
        if given[0] == "values":
            if self.quantize is not None:
                raise ValueError("quantize applies to a range, not to values")
            return self
        low, high = getattr(self, given[0])
        q = self.step
        if not low <= high:
            raise ValueError(f"{given[0]}: low {low} is above high {high}")
        if low <= 0 and given[0] not in ("uniform", "normal"):
            raise ValueError(f"{given[0]} needs a positive low, got {low}")
        if q > high and high > 0:
            raise ValueError(f"quantize {q} is above high {high}: every value would round to 0 or past the range")
        if given[0] in ("power2_uniform", "power2_or_log_uniform") and \
                not all(math.log2(v).is_integer() for v in (low, high, q)):
            said = "" if self.quantize is not None else " (quantize not given: 1 for whole numbers, 0.00001 otherwise)"
            raise ValueError(f"{given[0]} needs powers of two for low, high and quantize, got {low}, {high} and "
                             f"{q}{said}")
        if given[0] != "power2_or_log_uniform" and not (_multiple(low, q) and _multiple(high, q)):
            raise ValueError(f"{given[0]}: low {low} and high {high} must be multiples of quantize {q} (pycls' rule)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("values", *DISTRIBUTIONS) if getattr(self, k) is not None)

    @property
    def step(self) -> Number:
        if self.quantize is not None:
            return self.quantize
        low, high = getattr(self, self.kind)
        return 1 if isinstance(low, int) and isinstance(high, int) else 0.00001

    def draw(self, rng: random.Random) -> Any:
        """One value, as pycls' ``pycls.sweep.random`` draws it (its closed ranges and its quantization)."""
        kind = self.kind
        if kind == "values":
            return self.values[int(rng.random() * len(self.values))]
        low, high = getattr(self, kind)
        return _DRAW[kind](rng, low, high, self.step)


def _multiple(v: Number, q: Number) -> bool:
    ratio = v / q  # relative: 256.0 / 0.00001 is 25,600,000 give or take a float's last bits
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, abs(ratio))


def _quantize(f: float, q: Number, op: Callable[[float], float]) -> Number:
    """``op(f / q) * q`` with ``q``'s type (pycls' quantize, which rounds the product through Decimal)."""
    steps = op(f / q)
    if isinstance(q, int):
        return int(steps) * q
    return float(f"{steps * q:.12g}")


def _uniform(rng: random.Random, low: Number, high: Number, q: Number) -> Number:
    return _quantize(rng.uniform(low, high + q), q, math.floor)  # f in [low, high + q), floored onto [low, high]


def _log_uniform(rng: random.Random, low: Number, high: Number, q: Number) -> Number:
    # f in (low - q*, high], ceiled onto [low, high], q* = min(q, low / 2): log-linear CDF over the lattice
    return _quantize(math.exp(-rng.uniform(-math.log(high), -math.log(low - min(q, low / 2)))), q, math.ceil)


def _power2_uniform(rng: random.Random, low: Number, high: Number, q: Number) -> Number:
    f2 = math.floor(rng.uniform(math.log2(low), math.log2(high) + 1))
    return _quantize(2.0 ** min(f2, math.log2(high)), q, math.floor)


def _power2_or_log_uniform(rng: random.Random, low: Number, high: Number, q: Number) -> Number:
    f = _power2_uniform(rng, low, high, low)
    f = type(q)(f)
    return _log_uniform(rng, max(low, q), high, min(high, q)) if f >= q else f


def _normal(rng: random.Random, low: Number, high: Number, q: Number) -> Number:
    if low == high:
        return low
    f, mu, sigma = math.inf, (low + high) / 2, (high - low) / 6
    while not low <= f <= high:
        f = rng.gauss(mu, sigma)
    return _quantize(f, q, round)


def _log_normal(rng: random.Random, low: Number, high: Number, q: Number) -> Number:
    if low == high:  # exp(log(x)) need not be x: the loop below would never end
        return low
    lo, hi = math.log(low), math.log(high)
    f, mu, sigma = math.inf, (lo + hi) / 2, (hi - lo) / 6
    while not low <= f <= high:
        f = rng.lognormvariate(mu, sigma)
    return _quantize(f, q, round)


_DRAW = {"uniform": _uniform, "log_uniform": _log_uniform, "power2_uniform": _power2_uniform,
         "power2_or_log_uniform": _power2_or_log_uniform, "normal": _normal, "log_normal": _log_normal}


Range = Annotated[list[Any], Field(min_length=2, max_length=2, description="[low, high], both included; null: open")]


class Constraints(BaseModel):
    """What a sampled model must meet: complexity ranges (inclusive; ``null`` leaves a side open), the number of
    stages, and axes that may not decrease from one stage to the next (pycls' AnyNetX_D and _E)."""

    model_config = STRICT

    params: Range | None = None
    macs: Range | None = None
    activations: Range | None = None
    stages: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(
        None, description="Fewest and most stages (a generator's output).")
    increasing: list[str] = Field(default_factory=list, description="``*`` axes whose value never decreases "
                                  "from one stage to the next (drawn per stage, then sorted).")

    @field_validator("params", "macs", "activations")
    @classmethod
    def _range(cls, value: Range | None) -> Range | None:
        if value is None:
            return None
        low, high = amount(value[0]), amount(value[1])
        if any(v is not None and not math.isfinite(v) for v in (low, high)):
            raise ValueError("a range's ends are finite numbers (or null)")
        if any(v is not None and v < 0 for v in (low, high)):
            raise ValueError(f"a count is never negative (got {value[0]}, {value[1]})")
        if low is not None and high is not None and low > high:
            raise ValueError(f"low {value[0]} is above high {value[1]}")
        return [low, high]

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(f"[fewest, most] with 1 <= fewest <= most, got {value}")
        return value


class SpaceSpec(BaseModel):
    """A design-space file's fields (``spec`` is loaded apart: a spec of its own)."""

    model_config = STRICT

    space: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100, description="The space's name (tables, legends, file names).")
    description: str = Field("", max_length=10_000)
    spec: Any = Field(description="The base spec: a mapping (it may say base: NAME) or a spec name or file.")
    axes: dict[str, Distribution] = Field(min_length=1, max_length=1_000)
    constraints: Constraints = Field(default_factory=Constraints)


@dataclasses.dataclass
class Space:
    """A loaded space: its fields, the base spec tree, and each axis expanded to the paths it sets."""

    spec: SpaceSpec
    tree: MDict
    source: str
    marks: dict  # the space file's field paths -> positions
    paths: dict[str, list[str]]  # axis -> the paths it sets (``stages.*.x``: one per stage)
    files: list[Path] = dataclasses.field(default_factory=list)  # the space file and its base spec's files

    @property
    def name(self) -> str:
        return self.spec.space

    def columns(self) -> list[str]:
        """The table's number columns: one per path set (``stages.1.depth``) or per shared axis."""
        out = []
        for axis, dist in self.spec.axes.items():
            out += [axis] if dist.shared or len(self.paths[axis]) == 1 else self.paths[axis]
        return out

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One point: every path's value. An ``increasing`` axis draws a value per stage and sorts them (the
        order statistics of its distribution: no draw is wasted, as rejecting unsorted ones would waste 23 of
        24 for four stages)."""
        out: dict[str, Any] = {}
        increasing = self.spec.constraints.increasing
        for axis, dist in self.spec.axes.items():
            paths = self.paths[axis]
            if dist.shared:
                value = dist.draw(rng)
                out.update((p, value) for p in paths)
            else:
                drawn = [dist.draw(rng) for _ in paths]
                out.update(zip(paths, sorted(drawn) if axis in increasing else drawn))
        return out

    def tree_of(self, values: dict[str, Any], name: str | None = None) -> MDict:
        """The base tree with ``values`` set (and ``name``, when given)."""
        tree = _copy(self.tree)
        for path, value in values.items():
            mark = self._mark(path)
            wrapped = from_mapping({"v": value}, self.source, mark)["v"] if isinstance(value, (dict, list)) else value
            set_value(tree, path, wrapped, mark)
        if name is not None:
            tree["name"] = name
        return tree

    def _mark(self, path: str) -> Mark:
        axis = next((a for a, ps in self.paths.items() if path in ps), path)
        return self.marks.get(("axes", axis)) or Mark(self.source)


def _mark(marks: dict, path: tuple, source: str) -> Mark:
    for n in range(len(path), -1, -1):
        if path[:n] in marks:
            return marks[path[:n]]
    return Mark(source)


def find(name: str) -> Path | None:
    """A packaged space's file (``anynetx_a``), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        return None
    path = SPACES / f"{name}.yaml"
    return path if path.is_file() else None


def names() -> list[str]:
    """The packaged spaces."""
    return sorted(p.stem for p in SPACES.glob("*.yaml"))


def load(ref: str) -> Space:
    """A design space by packaged name or file, validated: every problem a located one-line SpecError."""
    from .registry import suggest

    from .zoo import is_path

    path = Path(ref)
    if path.is_dir():
        raise SpecError(f"{ref}: is a directory; give a design space file")
    if not path.is_file():
        found = None if is_path(ref) else find(ref)
        if found is None:
            raise SpecError(f"{ref}: no such file" if is_path(ref) else f"no design space named {ref!r} (a "
                            "packaged name, or a path to a .yaml file)" + suggest(ref, names(), limit=0))
        path = found
    source = str(path)
    tree = parse(read_text(path), source)
    if not isinstance(tree, MDict):
        raise SpecError("a design space is a mapping (space:, spec:, axes:, constraints:)", Mark(source, 1, 1))
    data, marks = flatten(tree)
    try:
        spec = SpaceSpec.model_validate(data)
    except ValidationError as exc:
        from .spec_errors import problem

        raise SpecError([problem(err, data, marks, SpaceSpec) for err in exc.errors()]) from None
    base, files = _base_tree(tree["spec"], marks, path)
    space = Space(spec, base, source, marks, {}, [path, *files])
    _expand_axes(space)
    taken = [p for ps in space.paths.values() for p in ps]
    twice = sorted({p for p in taken if taken.count(p) > 1})
    if twice:
        raise SpecError(f"{twice[0]} is set by two axes", _mark(marks, ("axes",), source), "axes")
    parts = set(taken)
    inside = next(((".".join(b.split(".")[:k]), b) for b in taken for k in range(1, b.count(".") + 1)
                   if ".".join(b.split(".")[:k]) in parts), None)
    if inside:
        axis = next(a for a, ps in space.paths.items() if inside[1] in ps)
        raise SpecError(f"{inside[1]} lies inside {inside[0]}, set by another axis: one would undo the other",
                        _mark(marks, ("axes", axis), source), f"axes.{axis}")
    named = next((a for a in spec.axes if a.split(".")[0] in ("name", "description", "weights")), None)
    if named:
        raise SpecError(f"a sampled model's {named.split('.')[0]} is sample's to write (SPACE_INDEX, where it came "
                        "from); vary the network's numbers", _mark(marks, ("axes", named), source), f"axes.{named}")
    space.check()
    return space


def _base_tree(base: Any, marks: dict, path: Path) -> tuple[MDict, list[Path]]:
    """The space's base spec tree, a mapping (its own ``base:`` merged under it) or a spec name or file, and
    the files it was read from."""
    files: list[Path] = []
    if isinstance(base, str):
        base_tree, files = _spec_file(base, marks.get(("spec",)), "spec", path.parent)
    elif isinstance(base, MDict):
        base_tree = base
        if "base" in base_tree:
            ref_, mark = base_tree.pop("base"), base_tree.marks.pop("base")
            if not isinstance(ref_, str) or not ref_:
                raise SpecError(f"must be a spec name or a file path (got {ref_!r})", mark, "spec.base")
            found, files = _spec_file(ref_, mark, "spec.base", path.parent)
            base_tree = inherit(found, base_tree)
    else:
        raise SpecError("must be a spec mapping, or a spec name or file", marks.get(("spec",)), "spec")
    base_tree.pop("weights", None)  # a sampled model is another network: the base's weights are not its own
    base_tree.marks.pop("weights", None)
    return base_tree, files


def _spec_file(ref: str, mark: Mark | None, field: str, directory: Path) -> tuple[MDict, list[Path]]:
    """A spec reference's merged tree and its ``base:`` chain's files; a missing file, a directory or a
    shared folder that cannot be read is the space file's error, at ``mark``."""
    from .loader import chain
    from .zoo import resolve

    try:
        found = resolve(ref, directory)
    except SpecError as exc:
        raise SpecError(exc.problems[0].message, mark, field) from None
    if isinstance(found, MDict):
        return found, []
    if found.is_dir():
        raise SpecError(f"{found}: is a directory; give a spec file or name", mark, field)
    if not found.is_file():
        raise SpecError(f"{found}: no such file", mark, field)
    files = [p for p, _ in chain(found, resolve)]
    return load_file(found, resolve=resolve), files


def _expand_axes(space: Space) -> None:
    """Each axis' paths (``stages.*.x``: one per stage of the base), checked, and the ``increasing`` axes."""
    spec, marks, source = space.spec, space.marks, space.source
    stages = space.tree.get("stages")
    for axis in spec.axes:
        where = _mark(marks, ("axes", axis), source)
        if "*" in axis.split("."):
            if axis.count("*") > 1 or not axis.startswith("stages.*."):
                raise SpecError(f"'*' stands for every stage: write stages.*.FIELD (got {axis!r})", where,
                                f"axes.{axis}")
            if not isinstance(stages, list) or not stages:
                raise SpecError(f"{axis}: the base spec lists no stages: (a generator's stages are set through its "
                                "numbers, e.g. regnet.w_a)", where, f"axes.{axis}")
            space.paths[axis] = [axis.replace("*", str(i), 1) for i in range(len(stages))]
        else:
            if spec.axes[axis].shared:
                raise SpecError("shared: applies to a stages.* axis", where, f"axes.{axis}.shared")
            space.paths[axis] = [axis]
    for axis in spec.constraints.increasing:
        where = _mark(marks, ("constraints", "increasing"), source)
        if axis not in spec.axes or not axis.startswith("stages.*."):
            raise SpecError(f"increasing: names a stages.* axis of this space, not {axis!r}", where,
                            "constraints.increasing")
        dist = spec.axes[axis]
        if dist.kind == "values" and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in dist.values or ()):
            raise SpecError(f"increasing: {axis} draws values that are not all numbers", where,
                            "constraints.increasing")


@dataclasses.dataclass
class Sample:
    """One accepted model: its draw number, the values set and its complexity (per sample, at the spec's input)."""

    index: int
    draw: int
    values: dict[str, Any]
    params: int
    macs: int
    activations: int
    stages: int


@dataclasses.dataclass
class Result:
    """What ``sample`` found: the accepted models in draw order, and why the others were turned away."""

    space: Space
    samples: list[Sample]
    draws: int
    rejected: dict[str, int]
    seconds: float
    seed: int

    def figure(self, name: str) -> list[int]:
        return [getattr(s, name) for s in self.samples]


def _evaluate(space: Space, values: dict[str, Any]) -> tuple[Any, str | None]:
    """(cost, stage count) of the model ``values`` make, or (None, why it is refused)."""
    from .specs import validate
    from .summary import estimate

    try:
        spec = validate(space.tree_of(values), space.source)
        cost = estimate(spec)
    except (SpecError, ValueError, ZeroDivisionError, NotImplementedError) as exc:
        return None, "invalid: " + reason(exc)
    return (cost, len(spec.stages)), None


def _check_figures(space: Space, cost: Any, stages: int) -> str | None:
    c = space.spec.constraints
    got = {"params": cost.params, "macs": cost.macs, "activations": cost.acts}
    for name in FIGURES:
        bounds = getattr(c, name)
        if bounds is None:
            continue
        low, high = bounds
        if low is not None and got[name] < low:
            return f"{name} below {_short(low)}"
        if high is not None and got[name] > high:
            return f"{name} above {_short(high)}"
    if c.stages is not None and not c.stages[0] <= stages <= c.stages[1]:
        return f"stages outside {c.stages[0]}..{c.stages[1]}"
    return None


def _short(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:g}{unit}"
    return f"{n:g}"


def _chunk(space: Space, seed: int, chunk: int, size: int) -> tuple[list[Sample], list[str | None]]:
    """Draws ``chunk * size`` .. ``(chunk + 1) * size - 1`` (each chunk its own seeded stream, so the result is
    the same however many processes share the chunks): the accepted models and each draw's refusal (None:
    accepted)."""
    import gc

    rng = random.Random(f"archkit-space:{seed}:{chunk}")
    accepted: list[Sample] = []
    outcomes: list[str | None] = []
    enabled = gc.isenabled()
    gc.disable()  # thousands of short-lived descriptions: no cycles to collect, only time lost
    try:
        for k in range(size):
            values = space.draw(rng)
            found, why = _evaluate(space, values)
            if found is not None:
                cost, stages = found
                why = _check_figures(space, cost, stages)
            outcomes.append(why)
            if why is None:
                accepted.append(Sample(-1, chunk * CHUNK + k, values, cost.params, cost.macs, cost.acts, stages))
    finally:
        if enabled:
            gc.enable()
    return accepted, outcomes


CHUNK = 250  # draws per seeded stream


def sample(space: Space, n: int, seed: int = 0, *, max_draws: int = MAX_DRAWS, jobs: int = 1,
           progress: Callable[[int, int, float], None] | None = None) -> Result:
    """The first ``n`` models the seeded draws accept (fewer if ``max_draws`` runs out), in draw order, and
    the refusals among the draws it took. ``jobs`` processes share the draws; the result does not depend on it."""
    start = time.perf_counter()
    samples: list[Sample] = []
    rejected: dict[str, int] = {}
    draws = 0
    for accepted, outcomes in _chunks(space, seed, max_draws, jobs):
        for s in accepted:
            if len(samples) < n:
                s.index = len(samples)
                samples.append(s)
        used = len(outcomes) if len(samples) < n else samples[-1].draw + 1 - draws
        for why in outcomes[:used]:
            if why is not None:
                rejected[why] = rejected.get(why, 0) + 1
        draws += used
        if progress is not None:
            progress(len(samples), draws, time.perf_counter() - start)
        if len(samples) >= n:
            break
    return Result(space, samples, draws, dict(sorted(rejected.items(), key=lambda kv: -kv[1])),
                  time.perf_counter() - start, seed)


def _chunks(space: Space, seed: int, max_draws: int, jobs: int) -> Iterator[tuple[list[Sample], list[str | None]]]:
    """Each chunk's accepted models and outcomes, in chunk order (computed by ``jobs`` processes, a few chunks
    ahead)."""
    total = math.ceil(max_draws / CHUNK)

    def size(c: int) -> int:
        return min(CHUNK, max_draws - c * CHUNK)

    if jobs <= 1:
        for c in range(total):
            yield _chunk(space, seed, c, size(c))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _WORKER_SPACE
    _WORKER_SPACE = space  # a forked worker has it; others are handed it once
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if fork else "spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=None if fork else _init_worker,
                             initargs=() if fork else (space.source,)) as pool:
        ahead = jobs * 4
        futures = {c: pool.submit(_worker, seed, c, size(c)) for c in range(min(ahead, total))}
        for c in range(total):
            result = futures.pop(c).result()
            if c + ahead < total:
                futures[c + ahead] = pool.submit(_worker, seed, c + ahead, size(c + ahead))
            yield result
            if not futures:
                break
        for f in futures.values():
            f.cancel()


_WORKER_SPACE: Space | None = None


def _init_worker(source: str) -> None:
    global _WORKER_SPACE
    _WORKER_SPACE = load(source)


def _worker(seed: int, chunk: int, size: int) -> tuple[list[Sample], list[str | None]]:
    assert _WORKER_SPACE is not None
    return _chunk(_WORKER_SPACE, seed, chunk, size)


def spec_tree(space: Space, s: Sample, seed: int) -> MDict:
    """The sampled model's spec tree, named ``SPACE_INDEX`` and described by where it came from."""
    tree = space.tree_of(s.values, name=f"{space.name}_{s.index:05d}")
    tree["description"] = f"Model {s.index} sampled from design space {space.name} (seed {seed}, draw {s.draw})."
    return tree


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def csv_text(results: list[Result]) -> str:
    """One row per sampled model: space, index, draw, each varied number, params, MACs, activations, stages."""
    import csv
    import io

    columns: list[str] = []
    for r in results:
        columns += [c for c in r.space.columns() if c not in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["space", "index", "draw", *columns, "params", "macs", "activations", "stages"])
    for r in results:
        own = r.space.columns()
        for s in r.samples:
            cells = [_cell(r.space, s, c) if c in own else "" for c in columns]
            writer.writerow([r.space.name, s.index, s.draw, *cells, s.params, s.macs, s.activations, s.stages])
    return buf.getvalue()


def _cell(space: Space, s: Sample, column: str) -> Any:
    value = s.values[space.paths[column][0]] if column in space.paths else s.values[column]
    return value if isinstance(value, (int, float, str)) else json.dumps(_plain(value))  # a list, a mapping


def json_data(results: list[Result]) -> dict:
    """The sampled models and the refusals of every space (``--json``)."""
    return {"schema_version": 1, "spaces": [{
        "space": r.space.name, "description": r.space.spec.description, "source": r.space.source, "seed": r.seed,
        "draws": r.draws, "accepted": len(r.samples), "seconds": round(r.seconds, 3), "rejected": r.rejected,
        "samples": [{"index": s.index, "draw": s.draw, "values": {k: _plain(v) for k, v in s.values.items()},
                     "params": s.params, "macs": s.macs, "activations": s.activations, "stages": s.stages}
                    for s in r.samples]} for r in results]}


def write_specs(results: list[Result], directory: str) -> int:
    """Each sampled model as ``DIRECTORY/SPACE_INDEX.yaml``; the number written."""
    import yaml

    from .files import write_text

    out = Path(directory)
    out.mkdir(exist_ok=True)
    count = 0
    for r in results:
        for s in r.samples:
            tree = _plain(spec_tree(r.space, s, r.seed))
            text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=110)
            write_text(out / f"{tree['name']}.yaml", text)
            count += 1
    return count


def _check(space: Space) -> None:
    """The base spec must be valid, every axis path settable, and the axes' values must make a spec that
    validates (a misspelt field would refuse every draw), also each entry of a ``values`` list: a located
    error otherwise."""
    from .specs import validate

    validate(space.tree, space.source)
    first = _valid_draw(space, {})
    if first is not None:
        problem = first.problems[0]
        if problem.mark is not None and problem.mark.source == space.source:
            raise SpecError([problem]) from None
        raise SpecError(f"every one of {CHECK_DRAWS} draws is refused: {problem}", _mark(space.marks, ("axes",),
                        space.source), "axes") from None
    for axis, dist in space.spec.axes.items():
        for value in (dist.values or [])[:MAX_CHECKED]:
            failed = _valid_draw(space, dict.fromkeys(space.paths[axis], value))
            if failed is not None:
                raise SpecError(f"{value!r} makes no valid network in {CHECK_DRAWS} draws: "
                                f"{failed.problems[0].message}", _mark(space.marks, ("axes", axis, "values"),
                                                                       space.source), f"axes.{axis}.values") from None


CHECK_DRAWS = 20  # draws that must not all be refused (some may be: a group width that divides no width)
MAX_CHECKED = 64  # entries of a values list checked one by one at load


def _valid_draw(space: Space, forced: dict[str, Any]) -> SpecError | None:
    """None when one of ``CHECK_DRAWS`` seeded draws (with ``forced`` values) validates, else the first error."""
    from .specs import validate
    from .summary import estimate

    rng = random.Random(0)
    first: SpecError | None = None
    for _ in range(CHECK_DRAWS):
        tree = space.tree_of({**space.draw(rng), **forced})
        try:
            spec = validate(tree, space.source)
        except SpecError as exc:
            first = first or exc
            continue
        try:
            estimate(spec)
        except NotImplementedError as exc:  # a plugin type without a declared cost: measured with torch
            raise SpecError(f"sample computes costs without torch, thousands a second; {exc} (its plugin "
                            "can declare one: docs/plugins.md)", Mark(space.source), "spec") from None
        except (SpecError, ValueError):
            pass  # this draw plans no valid network; others may
        return None
    return first


Space.check = _check  # type: ignore[attr-defined]
