"""Expanding a generator's key (``regnet:``) into the ``stages:`` its numbers make, on the located tree, before
validation: each generated stage is marked at the key's line, so a problem in it points at the numbers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import Mark, SpecError
from .generators import Generator
from .loader import MDict, MList, flatten
from .spec_errors import problem


def expand(tree: Any, generators: dict[str, Generator]) -> Any:
    """``tree`` with every generator key it gives replaced by the stages it makes (located errors otherwise)."""
    given = [key for key in tree if key in generators]
    if len(given) > 1:
        raise SpecError(f"a spec takes one generator; this one gives {' and '.join(given)}",
                        getattr(tree, "marks", {}).get(given[1]), given[1])
    for key in given:
        tree = _expand_one(generators[key], tree, *flatten(tree))
    return tree


def _expand_one(gen: Generator, tree: Any, data: dict, marks: dict) -> Any:
    mark = getattr(tree, "marks", {}).get(gen.name)
    try:
        numbers = gen.params.model_validate(data[gen.name])
    except ValidationError as exc:
        wrapper = type("Spec", (BaseModel,), {"__annotations__": {gen.name: gen.params}})
        raise SpecError([problem({**err, "loc": (gen.name, *err["loc"])}, data, marks, wrapper)
                         for err in exc.errors()]) from None
    if "stages" in tree:
        raise SpecError(f"a {gen.name}: spec generates its stages from the {gen.name}: numbers; set those (or "
                        "block:/stage: defaults) instead of stages:", getattr(tree, "marks", {}).get("stages")
                        or mark, "stages")
    try:
        generated = gen.stages(numbers)
    except ValueError as exc:  # the rule's own refusal, at the number it names (GeneratorProblem)
        field = getattr(exc, "field", None)
        where = _mark_at(tree.get(gen.name), field.split(".")) if field else None
        raise SpecError(str(exc), where or mark, f"{gen.name}.{field}" if field else gen.name) from None
    except Exception as exc:  # a plugin's rule that broke: named, not a traceback
        raise SpecError(f"generator {gen.name!r} failed: {type(exc).__name__}: {exc}", mark, gen.name) from None
    if not isinstance(generated, list) or not all(isinstance(s, dict) for s in generated):
        raise SpecError(f"generator {gen.name!r} returned {type(generated).__name__}, not a list of stage "
                        "mappings", mark, gen.name)
    if not generated or any(not isinstance(s.get("depth"), int) or s["depth"] < 1 for s in generated):
        raise SpecError("yields no valid stage widths", mark, gen.name)
    return _with_stages(tree, gen.name, generated, mark)


ORIGIN = "__origin__"  # a generated mapping's key: the dotted path of the generator's field it came from


def _mark_at(node: Any, path: list[str]) -> Mark | None:
    """The position of ``path`` (keys and list indices) inside ``node``: the deepest one known."""
    found = None
    for part in path:
        marks = getattr(node, "marks", None)
        key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
        try:
            found, node = (marks[key] if marks is not None else found), node[key]
        except (KeyError, IndexError, TypeError):
            break
    return found


def _with_stages(tree: Any, key: str, generated: list[dict], mark: Mark | None) -> Any:
    """A copy of ``tree`` without ``key`` and with ``stages`` made of ``generated``, all marked at ``key``'s line."""
    def marked(value: Any, at: Mark | None = mark) -> Any:
        if isinstance(value, dict):  # "__origin__": the generator's own field it came from (a block string)
            origin = value.get(ORIGIN)
            at = (_mark_at(tree.get(key), origin.split(".")) or at) if isinstance(origin, str) else at
            items = {k: v for k, v in value.items() if k != ORIGIN}
            node = MDict({k: marked(v, at) for k, v in items.items()}, mark=at)
            node.marks = {k: at for k in items}
            return node
        if isinstance(value, list):
            out = MList([marked(v, at) for v in value], mark=at)
            out.marks = [getattr(v, "mark", at) for v in out]
            return out
        return value

    out = MDict(tree, mark=getattr(tree, "mark", None))
    out.marks = dict(getattr(tree, "marks", {}))
    del out[key]
    out.marks.pop(key, None)
    stage_list = MList([marked(s) for s in generated], mark=mark)
    stage_list.marks = [mark] * len(generated)
    out["stages"] = stage_list
    out.marks["stages"] = mark or Mark(key)
    types = {s["block"].get("type") for s in generated if isinstance(s.get("block"), dict)}
    block = out.get("block")
    taken = {k for s in generated if isinstance(s.get("block"), dict) for k in s["block"]} - {"type"}
    clash = sorted(taken & set(block)) if isinstance(block, MDict) else []
    if clash:  # the generated stages' own value would win, silently
        raise SpecError(f"{clash[0]} is set by the {key}: numbers for every stage they make; set {key}.{clash[0]} "
                        "instead", getattr(block, "marks", {}).get(clash[0]), f"block.{clash[0]}")
    given = block.get("type") if isinstance(block, MDict) else None
    if given is not None and len(types) == 1 and given not in types:  # the stages' own type would win, silently
        raise SpecError(f"the {key}: numbers make {next(iter(types))} blocks; set {key}.block to choose the type "
                        f"(not block.type: {given})", getattr(block, "marks", {}).get("type"), "block.type")
    if len(types) == 1 and None not in types and isinstance(block, MDict) and "type" not in block:
        typed = MDict(block, mark=getattr(block, "mark", None))  # a top-level block: default (``--set block.x=...``)
        typed.marks = dict(getattr(block, "marks", {}))  # takes the type the generated stages use
        typed["type"], typed.marks["type"] = next(iter(types)), mark
        out["block"] = typed
    return out
