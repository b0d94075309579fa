"""Name -> entry registries for block and layer types, with suggestions for unknown names."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Iterator

from .errors import SpecError

BUILTIN = "built-in"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered type: its name, the object behind it, and where it came from."""

    name: str
    obj: Any
    kind: str  # "block", "layer", "norm" or "activation"
    origin: str = BUILTIN  # "built-in" or "<distribution> <version>"
    description: str = ""

    @property
    def expansion(self) -> int | None:
        """Output channels per plane for blocks; None for layers."""
        return getattr(self.obj, "expansion", None) if self.kind == "block" else None


class UnknownName(SpecError, KeyError):
    """A type name that no registry entry has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return SpecError.__str__(self)


def suggest(name: str, choices: list[str], limit: int = 12) -> str:
    """`` did you mean 'x'?`` plus the list of choices when it is short, for error messages."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if 0 < len(choices) <= limit:
        hint += " (choose from: " + ", ".join(sorted(choices)) + ")"
    return hint


def first_line(doc: str | None) -> str:
    """The first non-empty line of a docstring."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Registry:
    """A plain dict of name -> Entry behind ``register``, ``get`` and ``names``."""

    def __init__(self, what: str, populate: Callable[["Registry"], None] | None = None):
        self.what = what
        self._entries: dict[str, Entry] = {}
        self._populate = populate
        self.generation = 0  # bumped on every change: caches built from the registry key on it

    def _ready(self) -> None:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)

    def register(self, name: str, obj: Any, *, kind: str, origin: str = BUILTIN,
                 description: str | None = None) -> Any:
        """Add ``obj`` under ``name``; a name already taken raises and names both owners."""
        self._ready()
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.what} name must be an identifier, got {name!r}")
        if name in self._entries:
            old = self._entries[name]
            raise ValueError(f"{self.what} {name!r} is already registered by {old.origin}; "
                             f"{origin} cannot register it again")
        self._entries[name] = Entry(name, obj, kind, origin, description or first_line(obj.__doc__))
        self.generation += 1
        return obj

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests and interactive use)."""
        self._ready()
        del self._entries[name]
        self.generation += 1

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises UnknownName with suggestions."""
        self._ready()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.what} type {name!r}" + suggest(str(name), self.names())) from None

    def names(self, kind: str | None = None) -> list[str]:
        """Registered names, in registration order, optionally of one kind."""
        self._ready()
        return [n for n, e in self._entries.items() if kind is None or e.kind == kind]

    def __iter__(self) -> Iterator[Entry]:
        self._ready()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._entries


def _builtin_blocks(registry: Registry) -> None:
    from .blocks import BUILTIN_BLOCKS

    for name, cls in BUILTIN_BLOCKS.items():
        registry.register(name, cls, kind="block")


def _builtin_layers(registry: Registry) -> None:
    from .layers import BUILTIN_LAYERS

    for name, cls in BUILTIN_LAYERS.items():
        registry.register(name, cls, kind=cls.role)


BLOCKS = Registry("block", _builtin_blocks)
LAYERS = Registry("layer", _builtin_layers)


def register_block(name: str, cls: Any, *, origin: str = BUILTIN, description: str | None = None) -> Any:
    """Register a residual block class (see ``archkit.blocks.base.Block`` for the contract)."""
    for attr in ("Params",):
        if not hasattr(cls, attr):
            raise TypeError(f"block {name!r}: {cls!r} has no {attr!r} (a pydantic model of its parameters)")
    return BLOCKS.register(name, cls, kind="block", origin=origin, description=description)
