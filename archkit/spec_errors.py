"""pydantic's validation errors in the user's words: one located line each, with did-you-mean."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel

from .errors import Mark, Problem, format_path
from .registry import suggest


def ordered(problems: list[Problem], source: str) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        key = (p.mark, p.message)
        if key not in seen:  # stage blocks share the top-level block's lines: report each line once
            seen.add(key)
            out.append(p)

    def order(p: Problem) -> tuple:
        m = p.mark
        if m is None:
            return (2, "", 0, 0)
        return (0 if m.source == source else 1, m.source, m.line or 0, m.column or 0)
    return sorted(out, key=order)


def mark_for(path: tuple, marks: dict) -> Mark | None:
    for n in range(len(path), -1, -1):
        if path[:n] in marks:
            return marks[path[:n]]
    return None


def _clean_loc(loc: tuple, data: Any) -> tuple:
    """Drop the union-tag parts pydantic adds (``block.bottleneck.groups`` -> ``block.groups``)."""
    path, node = [], data
    for i, part in enumerate(loc):
        if part == "[key]":  # pydantic's marker for a mapping key's own error: the path already names it
            continue
        if isinstance(node, dict) and part not in node and (node.get("type") == part or (
                isinstance(part, str) and i < len(loc) - 1)):  # a tag (layout.scheme.stage): not a missing key
            continue
        if isinstance(part, str) and not isinstance(node, dict) and path:
            continue  # e.g. a union member label under a scalar
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def _unwrap(tp: Any) -> list[Any]:
    """The model classes a type annotation may hold (through Optional, Annotated, list, Union)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, list, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _unwrap(arg)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model found at ``loc`` (a pydantic loc, tags included)."""
    models = [cls]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt = []
        for m in models:
            if part in m.model_fields:
                nxt.extend(_unwrap(m.model_fields[part].annotation))
            elif "type" in m.model_fields and typing.get_args(m.model_fields["type"].annotation) == (part,):
                nxt.append(m)
        models = nxt
    return sorted({f for m in models for f in m.model_fields})


def problem(err: dict, data: Any, marks: dict, cls: type[BaseModel], prefix: tuple = ()) -> Problem:
    """One pydantic error of validating ``data`` (found at ``prefix`` in the spec) against ``cls``."""
    loc = tuple(err["loc"])
    path = (*prefix, *_clean_loc(loc, data))
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_short(value)})"
    if kind == "missing" and path and path[-1] == "type":
        message = "needs a 'type'"
        if "block" in path or "blocks" in path:
            message += " (here or in a top-level 'block:' default)"
        elif path[:1] in (("norm",), ("activation",)) and len(path) == 2:  # the spec kept the default layer
            default = "{type: batchnorm, eps: 0.001}" if path[0] == "norm" else "{type: relu, inplace: false}"
            message += f" (a spec that sets none uses {default.split(',')[0][7:]}: give it with the keys, e.g. " \
                       f"{path[0]}={default})"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = f"unknown field {path[-1]!r}" + suggest(str(path[-1]), _fields_at(cls, loc[:-1]), limit=16)
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op, bound = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
                     "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}[kind]
        message = f"must be {op} {ctx.get(bound)}{got}"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        message = f"expected an integer{got}"
    elif kind in ("float_type", "float_parsing"):
        message = f"expected a number{got}"
    elif kind == "finite_number":
        message = f"must be a finite number{got}"
    elif kind == "bool_type":
        message = f"expected true or false{got}"
    elif kind == "string_type":
        message = f"expected a string{got}"
    elif kind in ("list_type",):
        message = f"expected a list{got}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping{got}"
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"must be one of {ctx.get('expected')}{got}" + (
            f"; did you mean {difflib.get_close_matches(str(value), choices, 1)[0]!r}?"
            if difflib.get_close_matches(str(value), choices, 1) else "")
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} item(s)" if isinstance(value, list) else \
            f"must not be empty{got}"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} item(s)" if isinstance(value, list) else \
            f"is too long (at most {ctx.get('max_length')} characters)"
    elif kind == "string_pattern_mismatch":
        message = _pattern_message(str(ctx.get("pattern", ""))) + got
    elif kind == "value_error":  # a validator's own message, without pydantic's "Value error, " prefix
        message = str(ctx.get("error") or err["msg"])
    else:
        message = err["msg"][:1].lower() + err["msg"][1:]
    return Problem(message, mark_for(path, marks), format_path(path))


_PATTERNS = {
    r"^[A-Za-z_][A-Za-z0-9_]*$": "must be a Python identifier (letters, digits, _; not starting with a digit)",
    r"^(?:[A-Za-z_][A-Za-z0-9_]*|0|[1-9][0-9]{0,3})$": "must be a Python identifier (letters, digits, _; not "
                                                      "starting with a digit) or an index (0, 1, ...)",
    r"^[0-9a-fA-F]{8,64}$": "must be 8 to 64 hexadecimal digits (a SHA-256 or its first digits)",
    r"^(https?|file)://": "must be an http://, https:// or file:// URL",
    r"^[A-Za-z0-9_.\-]{1,100}$": "must be 1 to 100 letters, digits, '.', '_' or '-'",
    r"^[A-Za-z0-9_\-]{1,40}$": "must be 1 to 40 letters, digits, '_' or '-'",
}


def _pattern_message(pattern: str) -> str:
    return _PATTERNS.get(pattern, f"must match {pattern}")


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
