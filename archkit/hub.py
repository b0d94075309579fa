"""Sharing as self-describing folders, the Hugging Face way: ``config.json`` (timm's keys plus the full
archkit spec), ``model.safetensors`` and a ``README.md`` model card.

A folder is read back by name: ``local-dir:PATH`` (a folder on disk) or ``hf-hub:ORG/NAME[@REV]``
(through ``huggingface_hub``'s cache, so ``HF_HUB_OFFLINE=1`` works once it is cached). Its
``config.json`` is data: parsed with the spec loader's limits (size, values, depth) and positions, so
a mistake in it is one located line; the spec is validated like any spec. The folder's weights are a
declared weights entry named ``folder`` (``--weights folder``; ``pretrained=True`` picks it), loaded
through the same checks and transfer plan as any weights.

This module reads folders (writing them is ``share``); it imports no torch, and ``huggingface_hub`` only
for ``hf-hub:``. It knows no spec names: ``zoo.resolve`` hands it its own ``find``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from .errors import Mark, SpecError

LOCAL = "local-dir:"
HUB = "hf-hub:"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
WEIGHTS_NAME = "folder"  # the declared weights entry a folder's spec gets
_WEIGHT_FILES = (WEIGHTS, "pytorch_model.bin", "pytorch_model.pth", "model.pth")  # timm's preference order
_HF_REPO_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def valid_repo_id(repo: str) -> bool:
    """The hub's rules for ORG/NAME: letters, digits, ``._-``; no ``--`` or ``..``; not ending in ``.``, ``-``
    or ``.git``."""
    return repo_id_problem(repo) is None


def repo_id_problem(repo: str) -> str | None:
    """What breaks the hub's rules in ``repo`` (None: a valid ORG/NAME)."""
    if repo.count("/") != 1 or not all(repo.split("/")):
        return "it must be ORG/NAME, one slash between two names"
    if len(repo.split("/")[0]) > 96 or len(repo.split("/")[1]) > 96:
        return "each part is at most 96 characters"
    if not _HF_REPO_PATTERN.match(repo):
        return "names take letters, digits, '.', '_' and '-', and start with a letter or digit"
    for bad, why in (("--", "'--' is reserved"), ("..", "'..' is not allowed")):
        if bad in repo:
            return why
    if repo.endswith(".git"):
        return "it may not end in '.git'"
    if repo.endswith((".", "-")):
        return "it may not end in '.' or '-'"
    return None


_REMOTE: dict[Path, tuple[str, str | None]] = {}  # snapshot folder -> (repo id, revision): fetched on demand


def is_ref(ref: Any) -> bool:
    """Whether ``ref`` names a shared folder (``local-dir:`` or ``hf-hub:``)."""
    return isinstance(ref, str) and ref.startswith((LOCAL, HUB))


def folder(ref: str) -> Path:
    """The local folder a ``local-dir:`` / ``hf-hub:`` name means (for ``hf-hub:``, its cached snapshot
    with ``config.json`` fetched; the weights are fetched when first needed)."""
    if ref.startswith(LOCAL):
        path = Path(ref[len(LOCAL):]).expanduser()
        if not ref[len(LOCAL):]:
            raise SpecError("local-dir: needs a folder, e.g. local-dir:./my_model", Mark(ref))
        if not path.is_dir():
            raise SpecError("no such folder" if not path.exists() else "not a folder", Mark(ref))
        return path
    repo, revision = _split_hub(ref)
    config = _hf_download(repo, CONFIG, revision, ref)
    snapshot = config.parent
    _REMOTE[snapshot.resolve()] = (repo, revision)
    return snapshot


def _split_hub(ref: str) -> tuple[str, str | None]:
    body = ref[len(HUB):]
    repo, _, revision = body.partition("@")
    if not valid_repo_id(repo) or (revision == "" and "@" in body):
        raise SpecError("hf-hub: takes ORG/NAME or ORG/NAME@REVISION", Mark(ref))
    return repo, revision or None


def _hf_download(repo: str, filename: str, revision: str | None, ref: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError:
        raise SpecError("hf-hub: needs huggingface_hub: pip install huggingface_hub (or 'archkit[hub]')",
                        Mark(ref)) from None
    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except HfHubHTTPError as exc:
        raise SpecError(f"{filename}: {_first(exc)}", Mark(ref)) from None
    except (OSError, ValueError) as exc:  # offline without a cached copy, a missing file, a bad revision
        raise SpecError(f"{filename}: {_first(exc)}", Mark(ref)) from None


def _first(exc: BaseException) -> str:
    from .errors import first_line

    return first_line(exc, 240)


def fetch_missing(path: Path) -> bool:
    """Fetch a folder file that ``hf-hub:`` has not downloaded yet (the weights); whether it now exists."""
    snapshot = path.parent.resolve()
    if snapshot not in _REMOTE or path.exists():
        return path.exists()
    repo, revision = _REMOTE[snapshot]
    got = _hf_download(repo, path.name, revision, f"{HUB}{repo}" + (f"@{revision}" if revision else ""))
    return got.exists()


def weights_file(ref: str) -> Path:
    """The weights file of a shared folder (fetched from the hub if needed)."""
    root = folder(ref)
    found = next((root / n for n in _WEIGHT_FILES if (root / n).exists()), None)
    if found is None and ref.startswith(HUB) and fetch_missing(root / WEIGHTS):
        found = root / WEIGHTS
    if found is None:
        raise SpecError(f"no weights in the folder (one of {', '.join(_WEIGHT_FILES)})", Mark(ref))
    _check_file(found, root, ref, hub=ref.startswith(HUB))
    return found


def _check_file(path: Path, root: Path, ref: str, *, hub: bool) -> None:
    """A folder's file is a regular file inside it (a symlink may point into the hub's own cache only)."""
    if path.is_symlink() and not hub:
        raise SpecError(f"{path.name} is a symlink; a shared folder holds its files", Mark(str(path)))
    if path.is_symlink():  # a hub snapshot links its files to the repository's blobs (../../blobs/SHA), nowhere else
        repo = root.resolve().parent.parent
        if not path.resolve().is_relative_to(repo):
            raise SpecError(f"{path.name} links outside the Hugging Face cache ({path.resolve()}); refused",
                            Mark(str(path)))
    if not path.is_file():
        raise SpecError(f"{path.name}: not a regular file" if path.exists() else f"no {path.name} in the folder",
                        Mark(str(path) if path.exists() else ref))


def spec_tree(ref: str, find: Callable[[str], Path | None], resolve: Callable[..., Any]) -> Any:
    """The spec a folder describes, as a loader tree with positions in its ``config.json``; the folder's
    weights (if any) declared as ``weights: {folder: {file: ...}}``. ``find`` gives the file of a packaged
    spec name (a folder timm wrote names its ``architecture``), ``resolve`` that file's ``base:`` names."""
    root = folder(ref)
    config = root / CONFIG
    _check_file(config, root, ref, hub=ref.startswith(HUB))
    data = _config_json(config)
    marks = getattr(data, "marks", {})
    section = data.get("archkit")
    if section is not None:
        if not isinstance(section, dict) or not isinstance(section.get("spec"), dict):
            raise SpecError("must be an object with the archkit spec under 'spec'", marks.get("archkit"), "archkit")
        tree = section["spec"]
        tree.pop("weights", None)
        _one_truth(tree, data, marks, config, find, resolve)
    else:
        tree = _timm_tree(data, marks, config, find, resolve)
    weights = next((root / n for n in _WEIGHT_FILES if (root / n).exists() or (root / n).is_symlink()), None)
    if weights is None and ref.startswith(HUB):
        weights = root / WEIGHTS  # fetched from the hub when first used
    elif weights is not None:
        _check_file(weights, root, ref, hub=ref.startswith(HUB))
    if weights is not None:
        tree["weights"] = _declared_weights(weights, data, section, config)
        tree.marks["weights"] = Mark(str(config))
    return tree


def _config_json(config: Path) -> Any:
    """``config.json`` as a loader tree with positions, read as strict JSON (no YAML anchors or tags, no NaN
    or Infinity) within the loader's limits."""
    from . import loader

    budget = loader.Budget()
    text = loader.read_text(config, budget)
    try:
        json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SpecError(f"not valid JSON: {exc.msg}", Mark(str(config), exc.lineno, exc.colno)) from None
    except RecursionError:
        raise SpecError(f"nested more than {loader.MAX_DEPTH} levels deep", Mark(str(config))) from None
    except ValueError as exc:  # NaN / Infinity, an integer of thousands of digits
        raise SpecError(f"not valid JSON: {_first(exc)}", Mark(str(config))) from None
    # escaped surrogate pairs (Python's json.dumps writes every emoji so) as the characters they mean, for the
    # YAML parser that reads positions; a lone half is no character, and nothing downstream can read it
    text = _SURROGATE_PAIR.sub(lambda m: m.group(1) + json.loads(f'"{m.group(2)}"'), text)
    lone = _LONE_SURROGATE.search(text)
    if lone is not None:
        line = text.count("\n", 0, lone.start()) + 1
        raise SpecError(f"not valid JSON text: {lone.group(2)} is half of a UTF-16 surrogate pair, not a character",
                        Mark(str(config), line, lone.start(2) - text.rfind("\n", 0, lone.start(2))))
    data = loader.parse(text, str(config), budget=budget)
    if not isinstance(data, dict):
        raise SpecError("config.json must hold a JSON object", Mark(str(config), 1, 1))
    return data


def _declared_weights(weights: Path, data: Any, section: Any, config: Path) -> Any:
    """``{folder: {file, format, meta, sha256}}``: the folder's weights as a spec declares weights."""
    from . import loader

    marks = getattr(data, "marks", {})
    entry = loader.MDict({"file": weights.name, "format": "safetensors" if weights.suffix == ".safetensors" else "timm"},
                         mark=Mark(str(config)))
    entry.marks = {"file": Mark(str(config)), "format": Mark(str(config))}
    meta = _folder_meta(data, marks)
    if meta:
        entry["meta"] = meta
        entry.marks["meta"] = marks.get("pretrained_cfg") or Mark(str(config))
    digest = section.get("weights_sha256") if isinstance(section, dict) else None
    if digest is not None and not isinstance(digest, str):
        raise SpecError(f"must be a hex string (got {digest!r})", getattr(section, "marks", {}).get(
            "weights_sha256") or marks.get("archkit"), "archkit.weights_sha256")
    if isinstance(digest, str):
        entry["sha256"] = digest
        entry.marks["sha256"] = marks.get("archkit") or Mark(str(config))
    declared = loader.MDict({WEIGHTS_NAME: entry}, mark=Mark(str(config)))
    declared.marks = {WEIGHTS_NAME: Mark(str(config))}
    return declared


def _timm_tree(data: dict, marks: dict, config: Path, find: Callable[[str], Path | None],
               resolve: Callable[..., Any]) -> Any:
    """The spec timm builds from a config: its ``architecture`` (a packaged name) with ``model_args`` applied."""
    from . import loader

    arch = data.get("architecture")
    found = find(arch) if isinstance(arch, str) and arch.isidentifier() else None
    if found is None:
        raise SpecError(f"names no model archkit knows ({arch!r}); a folder archkit writes carries its spec "
                        "under 'archkit'", marks.get("architecture") or Mark(str(config)), "architecture")
    tree = loader.load_file(found, resolve=resolve)
    tree.pop("weights", None)
    num_classes, in_chans = _timm_args(data, marks)
    loader.set_classes_and_channels(tree, num_classes, in_chans)
    args = data.get("model_args")
    if args is not None and not isinstance(args, dict):
        raise SpecError("must be an object of timm keywords", marks.get("model_args"), "model_args")
    where = getattr(args, "marks", {}) if args else {}
    for key, value in (args or {}).items():
        if key not in _TIMM_KEYWORDS:
            raise SpecError(f"archkit does not apply the timm keyword {key!r} (it applies "
                            f"{', '.join(_TIMM_KEYWORDS)})", where.get(key) or marks.get("model_args"),
                            f"model_args.{key}")
        if _TIMM_KEYWORDS[key]:
            tree[_TIMM_KEYWORDS[key]] = value
            tree.marks[_TIMM_KEYWORDS[key]] = where.get(key) or marks.get("model_args")
    return tree


def _one_truth(ours: Any, data: dict, marks: dict, config: Path, find: Callable[[str], Path | None],
               resolve: Callable[..., Any]) -> None:
    """A folder archkit wrote says what the model is twice: its spec under ``archkit`` (archkit reads it) and
    what timm builds (``model_args.spec`` of the ``archkit`` architecture, else a timm name with its keywords).
    An edit to one alone would make archkit and timm build different models: refused, naming the field."""
    from . import loader
    from .specs import validate
    from .version import __version__

    args = data.get("model_args")
    skip = {"weights", "description"}
    if data.get("architecture") == "archkit":
        if not isinstance(args, dict) or "spec" not in args:
            return  # timm cannot build it either: nothing to disagree with
        theirs, where = args["spec"], (getattr(args, "marks", {}).get("spec") or marks.get("model_args"),
                                       "model_args.spec")
        if not isinstance(theirs, dict):
            raise SpecError("must be an object (the spec timm builds)", *where)
        # two full copies written together: compared as written
        a, b = ({k: v for k, v in loader.flatten(t)[0].items() if k not in skip} for t in (ours, theirs))
    else:
        if (data.get("archkit") or {}).get("version") != __version__:
            return  # what timm builds is archkit's packaged spec of today: a folder of another version may differ
        theirs = _timm_tree(data, marks, config, find, resolve)
        where = (marks.get("model_args") or marks.get("architecture") or Mark(str(config)), "model_args")
        a = validate(ours, str(config)).model_dump(mode="json", exclude=skip)
        b = validate(theirs, str(config)).model_dump(mode="json", exclude=skip)
    if a != b:
        raise SpecError(f"differs from archkit.spec at {_first_difference(a, b)}: the two copies of the model in "
                        "config.json disagree (edited by hand?); export the folder again", *where)


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """The dotted path of the first value where ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return path or "the top level"


_META_KEYS = ("num_classes", "crop_pct", "interpolation", "mean", "std", "license")


def _folder_meta(data: dict, marks: dict) -> Any:
    """The folder weights' meta (preprocessing, classes, license) from timm's ``pretrained_cfg``, positions kept;
    validated with the spec like any declared weights' meta."""
    from . import loader

    cfg = data.get("pretrained_cfg")
    if not isinstance(cfg, dict):
        return None
    where = getattr(cfg, "marks", {})
    meta = loader.MDict({k: cfg[k] for k in _META_KEYS if cfg.get(k) is not None},
                        mark=marks.get("pretrained_cfg"))
    meta.marks = {k: where.get(k) for k in meta}
    size = cfg.get("input_size")
    if isinstance(size, list) and len(size) == 3:
        meta["input_size"] = size[1:]
        meta.marks["input_size"] = where.get("input_size")
    if meta.get("num_classes") == 0:
        del meta["num_classes"]  # a headless model
    return meta or None


# an escape is a backslash that an even number of backslashes precede (``\\\\ud83d`` is text, not an escape)
_ESCAPED = r"(?<!\\)((?:\\\\)*)"
_SURROGATE_PAIR = re.compile(_ESCAPED + r"(\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LONE_SURROGATE = re.compile(_ESCAPED + r"(\\u[dD][89a-fA-F][0-9a-fA-F]{2})")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# timm's create_model keywords a folder timm wrote may carry, as the spec keys archkit applies them to
_TIMM_KEYWORDS = {"num_classes": None, "in_chans": None, "drop_path_rate": "drop_path_rate",
                  "output_stride": "output_stride", "drop_block_rate": "drop_block_rate"}


def _timm_args(data: dict, marks: dict) -> tuple[int | None, int | None]:
    """num_classes and in_chans of a timm config (top level, model_args, or the input size)."""
    args = data.get("model_args") if isinstance(data.get("model_args"), dict) else {}
    cfg = data.get("pretrained_cfg") if isinstance(data.get("pretrained_cfg"), dict) else {}
    num_classes = args.get("num_classes", data.get("num_classes"))
    in_chans = args.get("in_chans")
    if in_chans is None and isinstance(cfg.get("input_size"), list) and cfg["input_size"]:
        in_chans = cfg["input_size"][0]
    where = getattr(data.get("model_args"), "marks", {})
    for name, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        mark = where.get(name) or marks.get(name) or marks.get("model_args")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SpecError(f"must be an integer (got {value!r})", mark, name)
        if value is not None and value < low:
            raise SpecError(f"must be an integer >= {low} (got {value})", mark, name)
    return num_classes, in_chans
