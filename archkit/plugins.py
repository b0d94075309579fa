"""Third-party block and layer types through entry points, each plugin isolated from the others.

A distribution adds a block with one line in its ``pyproject.toml``::

    [project.entry-points."archkit.blocks"]
    se_bottleneck = "archkit_se:se_bottleneck"

The entry point's name is the spec's ``type``; its object is the block type (a description made
with ``archkit.blocks.block``, or an ``nn.Module`` class; ``archkit.layers`` group: a ``LayerParams``
subclass; ``archkit.attention``: an ``AttentionParams`` subclass; ``archkit.specs``: a directory of
spec files). Discovery reads names from the installed metadata; a plugin's module is imported when
one of its names is first used. A plugin that fails to import, names nothing usable or breaks the
contract is recorded in ``registry.broken`` and never stops archkit. A plugin never replaces a
built-in, and two plugins never silently replace each other: every plugin entry is also reachable as
``<distribution>:<name>``, and a bare name two plugins claim is an error listing both.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from collections import defaultdict
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Iterable

BLOCK_GROUP = "archkit.blocks"
LAYER_GROUP = "archkit.layers"
ATTENTION_GROUP = "archkit.attention"
STAGE_GROUP = "archkit.stages"
GENERATOR_GROUP = "archkit.generators"
DISABLE_ENV = "ARCHKIT_NO_PLUGINS"

_enabled: bool | None = None  # None: decided by $ARCHKIT_NO_PLUGINS


_on_change: list[Callable[[], None]] = []  # what forgets plugin state (the catalog's registries, the zoo)


def on_change(reset: Callable[[], None]) -> None:
    """Call ``reset`` whenever plugins are turned on or off (the registries and the zoo register here)."""
    _on_change.append(reset)


def set_enabled(enabled: bool | None) -> None:
    """Turn plugin discovery on or off (None: follow $ARCHKIT_NO_PLUGINS); resets what depends on it."""
    global _enabled, _ALL
    _ALL = None  # rescan: a test or a user may have installed something since
    _enabled = enabled
    for reset in _on_change:
        reset()


def enabled() -> bool:
    """Whether plugins are discovered: ``--no-plugins`` / ``set_enabled`` first, then the environment."""
    if _enabled is not None:
        return _enabled
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("", "0", "false", "no")


_ALL: Any = None


def _entry_points(group: str) -> Iterable[EntryPoint]:
    # one scan of the installed distributions per process, shared by every group (each scan reads
    # every distribution's metadata: ~10 ms in an environment with torch)
    global _ALL
    if _ALL is None:
        _ALL = entry_points()
    return _ALL.select(group=group)


def entry_points_of(group: str) -> Iterable[EntryPoint]:
    """The installed entry points of ``group`` (one indirection, so tests can fake them)."""
    return _entry_points(group)


def _distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown-distribution", "?"
    return dist.metadata["Name"] or dist.name, dist.version


def distributions() -> list[str]:
    """``"NAME VERSION"`` of every installed distribution that has an archkit entry point (none when off)."""
    if not enabled():
        return []
    groups = (BLOCK_GROUP, LAYER_GROUP, ATTENTION_GROUP, STAGE_GROUP, GENERATOR_GROUP, "archkit.specs")
    return sorted({" ".join(_distribution(ep)) for group in groups for ep in entry_points_of(group)})


def qualified_name(distribution: str, name: str) -> str:
    """``archkit-se`` + ``se_bottleneck`` -> ``archkit_se:se_bottleneck``."""
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', distribution).lower()}:{name}"


def _one_line(exc: BaseException) -> str:
    from .errors import first_line

    return f"{type(exc).__name__}: {first_line(exc)}"[:300]


TIMEOUT_ENV = "ARCHKIT_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT_S = 30


class PluginTimeout(Exception):
    """A plugin took too long to import."""


def _timeout_s() -> float:
    """$ARCHKIT_PLUGIN_TIMEOUT: seconds; 0 or inf turn the limit off; anything else unreadable is the default."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        return float(DEFAULT_TIMEOUT_S)
    if value != value:  # NaN
        return float(DEFAULT_TIMEOUT_S)
    return 0.0 if value == float("inf") else max(0.0, value)


def load_isolated(ep: EntryPoint) -> Any:
    """``ep.load()`` with stdout kept clean (a plugin's prints go to stderr, so ``--json`` stays JSON) and,
    in the main thread, a time limit ($ARCHKIT_PLUGIN_TIMEOUT seconds, default 30; 0 turns it off)."""
    limit = _timeout_s()
    use_alarm = limit > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()

    def expire(signum: int, frame: object) -> None:
        raise PluginTimeout(f"import took longer than {limit:g} s (${TIMEOUT_ENV})")

    previous = signal.signal(signal.SIGALRM, expire) if use_alarm else None
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, limit)
    torch = sys.modules.get("torch")
    dtype = torch.get_default_dtype() if torch is not None else None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return ep.load()
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        _restore_default_dtype(ep, dtype)


def _restore_default_dtype(ep: EntryPoint, before: Any) -> None:
    """Undo a plugin's ``torch.set_default_dtype`` at import (models would silently change dtype), saying so."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_default_dtype"):
        return
    before = before or torch.float32
    now = torch.get_default_dtype()
    if now != before:
        torch.set_default_dtype(before)
        dist, version = _distribution(ep)
        print(f"archkit: note: plugin {dist} {version} set torch's default dtype to {str(now).replace('torch.', '')} "
              f"at import; restored to {str(before).replace('torch.', '')}", file=sys.stderr)


def discover(registry: Any, group: str, check: Callable[[str, Any], Any], kind: Callable[[Any], str]) -> None:
    """Make every entry point of ``group`` known to ``registry`` by name; each plugin's module is imported
    (isolated) when one of its names is first used, and a failure becomes ``registry.broken``.

    ``check(name, obj)`` validates a loaded object against the contract and returns what to register.
    """
    if not enabled():
        return
    from .registry import BrokenPlugin

    providers: dict[str, list[EntryPoint]] = defaultdict(list)
    try:
        eps = sorted(_entry_points(group), key=lambda e: (e.name, _distribution(e)))
    except Exception as exc:  # noqa: BLE001 - broken metadata on the path must not stop archkit
        registry.add_broken(BrokenPlugin(group, "*", "", "?", "?", f"cannot list entry points: {_one_line(exc)}"))
        return
    seen: set[str] = set()
    for ep in eps:
        dist, version = _distribution(ep)
        qualified = qualified_name(dist, ep.name)
        if qualified in seen:  # one distribution seen twice on the path: keep the first
            registry.add_broken(BrokenPlugin(group, ep.name, ep.value, dist, version,
                                             f"ValueError: {registry.what} {qualified!r} is already registered by "
                                             f"{dist} {version} (the distribution is on the path twice); the first "
                                             "is kept"))
            continue
        seen.add(qualified)
        if not ep.name.isidentifier():
            registry.add_broken(BrokenPlugin(group, ep.name, ep.value, dist, version,
                                             f"ValueError: entry point name {ep.name!r} is not an identifier"))
            continue
        providers[ep.name].append(ep)
    for name, eps_of_name in providers.items():
        builtin = name in registry  # a built-in (or an earlier registration) keeps the bare name
        bare = None if builtin or len(eps_of_name) > 1 else name
        for ep in eps_of_name:
            dist, version = _distribution(ep)
            qualified = qualified_name(dist, name)
            registry.pend(qualified, _loader(registry, group, ep, check, kind, bare))
            if bare is not None:
                registry.pend(bare, _loader(registry, group, ep, check, kind, bare))
            if builtin:
                owner = registry.get(name).origin
                registry.add_conflict(f"plugin {dist} {version} also defines {registry.what} {name!r}, which "
                                      f"stays {owner}'s; use {qualified} for the plugin's")
        if len(eps_of_name) > 1 and not builtin:
            both = ", ".join(f"{qualified_name(_distribution(e)[0], name)} ({' '.join(_distribution(e))})"
                             for e in eps_of_name)
            registry.note(name, f"{registry.what} type {name!r} is provided by several plugins: {both}; "
                                "use a qualified name")


def _loader(registry: Any, group: str, ep: EntryPoint, check: Callable[[str, Any], Any], kind: Callable[[Any], str],
            bare: str | None) -> Callable[[], None]:
    """Load ``ep`` once and register it under its qualified (and, where it owns it, its bare) name."""
    from .registry import BrokenPlugin

    def load() -> None:
        dist, version = _distribution(ep)
        qualified = qualified_name(dist, ep.name)
        names = [qualified] + ([bare] if bare is not None else [])
        for other in names:  # whichever name came first, load once
            registry._pending.pop(other, None)
        try:
            obj = check(ep.name, load_isolated(ep))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - isolate each plugin (even sys.exit at import): record it
            registry.add_broken(BrokenPlugin(group, ep.name, ep.value, dist, version, _one_line(exc)))
            for other in names:
                registry.note(other, f"{registry.what} type {ep.name!r} comes from plugin {dist} {version}, "
                                     f"which failed to load: {_one_line(exc)}")
            return
        for other in names:
            registry.register(other, obj, kind=kind(obj), origin=f"{dist} {version}", qualified=qualified)

    return load
