"""The packaged specs, one YAML file per model, and the lookup that makes a name work wherever a path does.

``archkit build resnet50``, ``base: resnet50`` and ``archkit.build_model("resnet50")`` find
``archkit/zoo/resnet50.yaml`` from any directory. Plugins ship specs through the ``archkit.specs``
entry-point group, whose object is a directory (a path, or a package) of ``*.yaml`` files. A name
is a bare word; anything with a path separator or a ``.yaml``/``.yml`` suffix is a path, so a local
file of the same name is used only when given as a path.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from .. import plugins

HERE = Path(__file__).resolve().parent
SPEC_GROUP = "archkit.specs"
_dirs: list[tuple[str, Path]] | None = None


def is_path(ref: str | os.PathLike) -> bool:
    """Whether ``ref`` is meant as a file path rather than a spec name."""
    if isinstance(ref, os.PathLike):
        return True
    return "/" in ref or os.sep in ref or ref.endswith((".yaml", ".yml")) or ref in (".", "..")


def _plugin_dirs() -> list[tuple[str, Path]]:
    found = []
    if not plugins.enabled():
        return found
    try:
        eps = sorted(plugins.entry_points_of(SPEC_GROUP), key=lambda e: e.name)
    except Exception:  # noqa: BLE001 - broken metadata must not stop archkit
        return found
    for ep in eps:
        try:
            directory = _plugin_dir_of(plugins.load_isolated(ep))
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - a broken plugin's specs are skipped, the rest still resolve
            continue
        if directory is not None:
            dist = getattr(getattr(ep, "dist", None), "name", None) or ep.name
            found.append((dist, directory))
    return found


def _plugin_dir_of(obj: Any) -> Path | None:
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
    elif getattr(obj, "__path__", None):
        path = Path(list(obj.__path__)[0])
    elif getattr(obj, "__file__", None):
        path = Path(obj.__file__).parent
    else:
        return None
    return path if path.is_dir() else None


def directories() -> list[tuple[str, Path]]:
    """(origin, directory) pairs searched for names: the packaged specs first, then plugins'."""
    global _dirs
    if _dirs is None:
        _dirs = [("built-in", HERE), *_plugin_dirs()]
    return _dirs


def reset() -> None:
    """Forget the plugin directories (after plugins are turned on or off)."""
    global _dirs
    _dirs = None


plugins.on_change(reset)


def conflicts() -> list[str]:
    """One line per spec name shipped twice: archkit's own names win, then plugins in entry-point order;
    the line says whose file is used and how to reach the other (its path)."""
    owner: dict[str, tuple[str, Path]] = {}
    out = []
    for origin, directory in directories():
        for path in sorted(directory.glob("*.yaml")):
            if path.stem not in owner:
                owner[path.stem] = (origin, path)
                continue
            winner = owner[path.stem][0]
            who = "archkit's own" if winner == "built-in" else f"plugin {winner}'s"
            out.append(f"plugin {origin} also ships spec {path.stem!r}; {who} is used (give {path} as a path "
                       "for the other)")
    return out


def names(pattern: str = "*") -> list[str]:
    """Every spec name matching ``pattern`` (shell-style, as ``timm.list_models``), sorted."""
    out = set()
    for _, directory in directories():
        out.update(p.stem for p in directory.glob("*.yaml"))
    return sorted(n for n in out if fnmatch.fnmatchcase(n, pattern))


def find(name: str) -> Path | None:
    """The file of spec ``name``, or None (plugins are asked only for names the package lacks)."""
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return None
    packaged = HERE / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    for _, directory in directories():
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def load(ref: Any, overrides: Any = (), *, num_classes: int | None = None, in_chans: int | None = None) -> Any:
    """A spec by name (``"resnet50"``: packaged or a plugin's), file or shared folder, ``base:`` merged,
    ``--set``-style overrides (``"stages.2.depth=23"``) and timm's ``num_classes`` / ``in_chans`` applied,
    validated (a ModelSpec)."""
    from .. import loader
    from ..errors import SpecError
    from ..specs import validate

    if not isinstance(ref, (str, os.PathLike)) or isinstance(ref, bytes):
        raise SpecError(f"a spec is a name or a file path (or, for build_model, a dict or a ModelSpec), "
                        f"not a {type(ref).__name__}")
    tree = loader.load(ref, overrides or (), num_classes=num_classes, in_chans=in_chans, resolve=resolve)
    return validate(tree, str(ref))


def resolve(ref: str | os.PathLike, relative_to: Path | None = None) -> Any:
    """The file a spec reference means: a path (relative to ``relative_to``), else a packaged name; for a
    shared folder (``local-dir:`` / ``hf-hub:``), the spec tree its config.json describes."""
    from .. import hub
    from ..errors import SpecError
    from ..registry import suggest

    if hub.is_ref(ref):
        if relative_to is not None:
            raise SpecError(f"a shared folder cannot be a base ({ref}); name a spec file or a packaged spec")
        return hub.spec_tree(str(ref), find, resolve)
    if is_path(ref):
        path = Path(ref)
        return path if relative_to is None or path.is_absolute() else relative_to / path
    found = find(str(ref))
    if found is not None:
        return found
    local = Path(ref) if relative_to is None else relative_to / ref
    if local.is_file():  # a file without a .yaml suffix
        return local
    raise SpecError(f"no spec named {str(ref)!r} (a packaged name, or a path to a .yaml file)"
                    + suggest(str(ref), names(), limit=0))
