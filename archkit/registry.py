"""Name -> entry registries for block, layer and attention types, with suggestions for unknown names."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Iterator

from .errors import SpecError

BUILTIN = "built-in"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered type: its name, the object behind it, and where it came from."""

    name: str
    obj: Any
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
    """A plain dict of name -> Entry behind ``register``, ``get`` and ``names``.

    ``populate`` fills it on first use (built-ins, then plugins): importing archkit stays cheap and
    plugins load once, lazily. ``reset()`` re-arms it (tests, ``--no-plugins``).
    """

    def __init__(self, what: str, populate: Callable[["Registry"], None] | None = None):
        self.what = what
        self._populate_fn = populate
        self.generation = 0  # bumped on every change: caches built from the registry key on it
        self.reset()

    def reset(self) -> None:
        """Forget every entry; the next use populates the registry again."""
        self._entries: dict[str, Entry] = {}
        self._notes: dict[str, str] = {}  # names that resolve to an explanation instead of an entry
        self._broken: list[BrokenPlugin] = []
        self._conflicts: list[str] = []  # plugin names that a built-in keeps
        self._populate = self._populate_fn
        self.generation += 1

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Plugin entry points that failed to load, with their one-line errors."""
        self._ready()
        return self._broken

    @property
    def conflicts(self) -> list[str]:
        """Plugin entries that wanted a name a built-in keeps."""
        self._ready()
        return self._conflicts

    def _ready(self) -> None:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)

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
        self._entries[name] = Entry(name, obj, kind, origin, description or first_line(obj.__doc__), qualified)
        self._notes.pop(name, None)
        self.generation += 1
        return obj

    def add_broken(self, broken: BrokenPlugin) -> None:
        """Record a plugin entry point that could not be used."""
        self._broken.append(broken)

    def add_conflict(self, text: str) -> None:
        """Record a plugin entry that wanted a name another owner keeps."""
        self._conflicts.append(text)

    def note(self, name: str, explanation: str) -> None:
        """Make ``name`` resolve to an error with this explanation (ambiguous or broken plugin names)."""
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
        return self._notes.get(name)

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises UnknownName with suggestions."""
        self._ready()
        if name in self._entries:
            return self._entries[name]
        if name in self._notes:
            raise UnknownName(self._notes[name])
        raise UnknownName(f"unknown {self.what} type {name!r}" + suggest(str(name), self.names()))

    def names(self, kind: str | None = None) -> list[str]:
        """Usable names (plugin entries also under ``dist:name``), optionally of one kind."""
        self._ready()
        return [n for n, e in self._entries.items() if kind is None or e.kind == kind]

    def listing(self) -> list[tuple[str, Entry]]:
        """(name, entry) to show people: a plugin entry once, by its bare name where that name is its own."""
        self._ready()
        return [(n, e) for n, e in self._entries.items()
                if not (n == e.qualified and self._entries.get(e.name) is not None
                        and self._entries[e.name].obj is e.obj)]

    def __iter__(self) -> Iterator[Entry]:
        self._ready()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._entries


def check_block(name: str, cls: Any) -> None:
    """Raise TypeError unless ``cls`` follows the block contract (see ``archkit.blocks.base``)."""
    from pydantic import BaseModel
    from torch import nn

    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"block {name!r} must be an nn.Module subclass, got {cls!r}")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise TypeError(f"block {name!r}: {cls.__name__}.Params must be a pydantic model of its parameters")
    if "type" in params.model_fields:
        raise TypeError(f"block {name!r}: Params must not define 'type' (archkit adds the tag)")
    for attr in ("out_channels", "make_shortcut"):
        if not callable(getattr(cls, attr, None)):
            raise TypeError(f"block {name!r}: {cls.__name__} has no {attr}() (subclass archkit.blocks.Block)")
    for method in (cls.__init__, cls.make_shortcut):
        try:
            accepted = inspect.signature(method).parameters
        except (TypeError, ValueError):
            continue
        old_style = "norm" in accepted or "act" in accepted
        open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        if "ctx" not in accepted and (old_style or not open_ended):
            raise TypeError(f"block {name!r}: {cls.__name__}.{method.__name__} takes norm=/act= (archkit 0.1's "
                            "contract); blocks now take ctx= (norm, act, attention, shortcut kind, drop path): "
                            "see docs/plugins.md")
    from .context import ATTN_POSITIONS

    kinds = getattr(cls, "shortcuts", None)
    if not (isinstance(kinds, tuple) and kinds and all(isinstance(k, str) for k in kinds)):
        raise TypeError(f"block {name!r}: {cls.__name__}.shortcuts must be a non-empty tuple of shortcut kinds")
    positions = getattr(cls, "attn_positions", None)
    if not (isinstance(positions, tuple) and set(positions) <= set(ATTN_POSITIONS)):
        raise TypeError(f"block {name!r}: {cls.__name__}.attn_positions must be a tuple drawn from {ATTN_POSITIONS}")


def check_layer(name: str, cls: Any) -> None:
    """Raise TypeError unless ``cls`` is a layer params model (see ``archkit.layers.LayerParams``)."""
    from .layers import LayerParams

    if not (isinstance(cls, type) and issubclass(cls, LayerParams)):
        raise TypeError(f"layer {name!r} must subclass archkit.layers.LayerParams, got {cls!r}")
    if "type" in cls.model_fields:
        raise TypeError(f"layer {name!r}: must not define 'type' (archkit adds the tag)")


def check_attention(name: str, cls: Any) -> None:
    """Raise TypeError unless ``cls`` is an attention params model (see ``archkit.attention``)."""
    from .attention import AttentionParams

    if not (isinstance(cls, type) and issubclass(cls, AttentionParams)):
        raise TypeError(f"attention {name!r} must subclass archkit.attention.AttentionParams, got {cls!r}")
    if "type" in cls.model_fields:
        raise TypeError(f"attention {name!r}: must not define 'type' (archkit adds the tag)")


def _builtin_blocks(registry: Registry) -> None:
    from . import plugins
    from .blocks import BUILTIN_BLOCKS

    for name, cls in BUILTIN_BLOCKS.items():
        registry.register(name, cls, kind="block")
    plugins.discover(registry, plugins.BLOCK_GROUP, check_block, lambda cls: "block")


def _builtin_layers(registry: Registry) -> None:
    from . import plugins
    from .layers import BUILTIN_LAYERS

    for name, cls in BUILTIN_LAYERS.items():
        registry.register(name, cls, kind=cls.role)
    plugins.discover(registry, plugins.LAYER_GROUP, check_layer, lambda cls: cls.role)


def _builtin_attention(registry: Registry) -> None:
    from . import plugins
    from .attention import BUILTIN_ATTENTION

    for name, cls in BUILTIN_ATTENTION.items():
        registry.register(name, cls, kind="attention")
    plugins.discover(registry, plugins.ATTENTION_GROUP, check_attention, lambda cls: "attention")


BLOCKS = Registry("block", _builtin_blocks)
LAYERS = Registry("layer", _builtin_layers)
ATTENTION = Registry("attention", _builtin_attention)
REGISTRIES = (BLOCKS, LAYERS, ATTENTION)


def register_block(name: str, cls: Any, *, origin: str = BUILTIN, description: str | None = None) -> Any:
    """Register a residual block class (see ``archkit.blocks.base.Block`` for the contract)."""
    check_block(name, cls)
    return BLOCKS.register(name, cls, kind="block", origin=origin, description=description)
