"""The index of packaged specs that ``archkit list`` prints: each name's family, parameters, MACs, input
size and declared weights, computed once and kept in the user's cache.

Validating and measuring every spec costs about a second for 170 specs and grows with every family; the
index makes ``list`` cost what reading one JSON file costs. It is keyed by what the figures depend on:
archkit's version, whether plugins are on and which plugin distributions are installed, and the bytes of
every spec file (a changed file, or a new one, rebuilds the index). A cache that cannot be read or written
is rebuilt or skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

Row = dict[str, Any]  # {"family", "params", "macs", "input", "weights"} or {"error"}
FORMAT = 1


def cache_file() -> Path:
    """``$ARCHKIT_CACHE`` (a file), else ``$XDG_CACHE_HOME/archkit/list-index.json`` (``~/.cache`` by default)."""
    explicit = os.environ.get("ARCHKIT_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archkit" / "list-index.json"


def key(directories: list[tuple[str, Path]], plugin_dists: list[str], enabled: bool) -> str:
    """What the rows depend on, hashed: the version and archkit's own files (an editable install changes them
    without a new version), the plugins, every spec file's name and bytes."""
    from ..version import __version__

    package = Path(__file__).resolve().parent.parent
    code = sorted((str(p.relative_to(package)), p.stat().st_mtime_ns, p.stat().st_size) for p in package.rglob("*.py"))
    digest = hashlib.sha256(json.dumps([FORMAT, __version__, enabled, sorted(plugin_dists), code]).encode())
    for origin, directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            try:
                data = path.read_bytes()
            except OSError:
                data = b"\0unreadable"
            digest.update(f"\0{origin}\0{path.name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def rows(names: list[str], index_key: str, measure: Callable[[str], Row]) -> dict[str, Row]:
    """Each name's row: from the cache where its key matches, else ``measure(name)`` (then cached)."""
    path = cache_file()
    cached: dict[str, Row] = {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == index_key and isinstance(stored.get("rows"), dict):
            cached = stored["rows"]
    except (OSError, ValueError, RecursionError):
        pass
    missing = [n for n in names if not isinstance(cached.get(n), dict)]
    if not missing:
        return {n: cached[n] for n in names}
    fresh = {n: measure(n) for n in missing}
    cached.update({n: row for n, row in fresh.items() if "error" not in row})  # an error may pass: measured again
    _write(path, {"key": index_key, "rows": cached})
    return {n: cached.get(n) or fresh[n] for n in names}


def _write(path: Path, data: dict) -> None:
    from ..files import write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(data, separators=(",", ":")))
    except Exception:  # noqa: BLE001 - a read-only home, a full disk: list works without its cache
        pass
