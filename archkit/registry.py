"""Name -> entry registries (data only), with suggestions for unknown names.

A ``Registry`` is a plain dict behind ``register``, ``get`` and ``names``. It knows nothing of where
its entries come from: ``archkit.catalog`` holds the block, layer and attention registries and fills
each on first use (built-ins, then plugins, whose modules load only when a name of theirs is used).
"""

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
    obj: Any  # a BlockType (blocks), a LayerParams or AttentionParams subclass
    kind: str  # "block", "layer", "norm", "activation" or "attention"
    origin: str = BUILTIN  # "built-in" or "<distribution> <version>"
    description: str = ""
    qualified: str | None = None  # "<distribution>:<name>" for plugin entries

    @property
    def expansion(self) -> int | None:
        """Output channels per plane for blocks; None for layers."""
        return getattr(self.obj, "expansion", None) if self.kind == "block" else None


@dataclasses.dataclass(frozen=True)
class BrokenPlugin:
    """A plugin entry point that could not be used, and why (one line)."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    error: str


class UnknownName(SpecError, KeyError):
    """A type name that no registry entry has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return SpecError.__str__(self)


def suggest(name: str, choices: list[str], limit: int = 12, synonyms: dict[str, str] | None = None) -> str:
    """`` did you mean 'x'?`` plus the list of choices when it is short, for error messages.

    ``synonyms`` maps words a user may reach for to the choice they mean (``after_add`` ->
    ``post_add``); they win over spelling, which can point to the opposite (``pre_add``).
    """
    meant = (synonyms or {}).get(str(name).lower())
    close = [meant] if meant in choices else difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
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
    """A plain dict of name -> Entry; ``fill`` (given by the owner) populates it on first use.

    Names may also be *pending*: known from a plugin's metadata, loaded by ``load_pending`` (given by
    the owner) when first asked for. ``reset()`` re-arms everything (tests, ``--no-plugins``).
    """

    def __init__(self, what: str, fill: Callable[["Registry"], None] | None = None,
                 hint: Callable[[], str] | None = None):
        self.what = what
        self._fill_fn = fill
        self._hint = hint  # more to say about an unknown name (the owner knows, e.g. that plugins are off)
        self.generation = 0  # bumped on every change: caches built from the registry key on it
        self.reset()

    def reset(self) -> None:
        """Forget every entry; the next use fills the registry again."""
        self._entries: dict[str, Entry] = {}
        self._pending: dict[str, Callable[[], None]] = {}
        self._notes: dict[str, str] = {}  # names that resolve to an explanation instead of an entry
        self._broken: list[BrokenPlugin] = []
        self._conflicts: list[str] = []  # plugin names that a built-in keeps
        self._fill = self._fill_fn
        self.generation += 1

    def _ready(self) -> None:
        if self._fill is not None:
            fill, self._fill = self._fill, None
            fill(self)

    def _load_all(self) -> None:
        self._ready()
        while self._pending:
            self._load(next(iter(self._pending)))

    def _load(self, name: str) -> None:
        loader = self._pending.pop(name, None)
        if loader is not None:
            loader()

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plugin entry points that failed to load, with their one-line errors (loads every plugin)."""
        self._load_all()
        return self._broken

    @property
    def conflicts(self) -> list[str]:
        """Plugin entries that wanted a name another owner keeps."""
        self._ready()
        return self._conflicts

    def register(self, name: str, obj: Any, *, kind: str, origin: str = BUILTIN,
                 description: str | None = None, qualified: str | None = None) -> Any:
        """Add ``obj`` under ``name``; a name already taken raises and names both owners."""
        self._ready()
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(":", 1)):
            raise ValueError(f"{self.what} name must be an identifier, got {name!r}")
        if name in self._entries:
            old = self._entries[name]
            raise ValueError(f"{self.what} {name!r} is already registered by {old.origin}; "
                             f"{origin} cannot register it again")
        self._pending.pop(name, None)
        doc = description or getattr(obj, "doc", "") or first_line(getattr(obj, "__doc__", ""))
        self._entries[name] = Entry(name, obj, kind, origin, doc, qualified)
        self._notes.pop(name, None)
        self.generation += 1
        return obj

    def pend(self, name: str, loader: Callable[[], None]) -> None:
        """Make ``name`` known now and loaded by ``loader`` (which registers it) when first used."""
        self._pending[name] = loader
        self.generation += 1

    def add_broken(self, broken: BrokenPlugin) -> None:
        """Record a plugin entry point that could not be used."""
        self._broken.append(broken)

    def add_conflict(self, text: str) -> None:
        """Record a plugin entry that wanted a name another owner keeps."""
        self._conflicts.append(text)

    def note(self, name: str, explanation: str) -> None:
        """Make ``name`` resolve to an error with this explanation (ambiguous or broken plugin names)."""
        self._pending.pop(name, None)
        self._notes[name] = explanation
        self.generation += 1

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests and interactive use)."""
        self._ready()
        del self._entries[name]
        self.generation += 1

    def explain(self, name: str) -> str | None:
        """Why ``name`` is not usable, if a plugin made it so (ambiguous, failed to load)."""
        self._ready()
        self._load(name)
        return self._notes.get(name)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises UnknownName with suggestions."""
        self._ready()
        self._load(name)
        if name in self._entries:
            return self._entries[name]
        if name in self._notes:
            raise UnknownName(self._notes[name])
        raise UnknownName(f"unknown {self.what} type {name!r}" + suggest(str(name), self.names())
                          + (self._hint() if self._hint is not None else ""))

    def names(self, kind: str | None = None) -> list[str]:
        """Usable names (plugin entries also under ``dist:name``), optionally of one kind (loads plugins)."""
        if kind is not None:
            self._load_all()
        else:
            self._ready()
        known = [n for n, e in self._entries.items() if kind is None or e.kind == kind]
        return known + ([n for n in self._pending if n not in self._entries] if kind is None else [])

    def listing(self) -> list[tuple[str, Entry]]:
        """(name, entry) to show people: a plugin entry once, by its bare name where that name is its own."""
        self._load_all()
        return [(n, e) for n, e in self._entries.items()
                if not (n == e.qualified and self._entries.get(e.name) is not None
                        and self._entries[e.name].obj is e.obj)]

    def __iter__(self) -> Iterator[Entry]:
        self._load_all()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._entries or name in self._pending
