"""Writing shared folders (read back by ``hub``): ``config.json`` with timm's keys plus the full archkit
spec, ``model.safetensors`` and a ``README.md`` model card; uploading them to the Hugging Face hub.

timm reads the same folders: a spec equal to a timm model (a packaged spec of timm's name, changed
only by timm's keywords) is written as ``architecture: <timm name>`` and loads with
``timm.create_model("local-dir:PATH")`` without archkit; any other spec is written as
``architecture: archkit`` with ``model_args: {spec: ...}``, which timm builds after ``import archkit.timm``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import Mark, SpecError
from .hub import CARD, CONFIG, WEIGHTS, _first, repo_id_problem

def timm_name(spec: Any) -> str | None:
    """timm's model name when ``spec`` is that timm model changed only by timm's keywords (num_classes,
    in_chans, drop_path_rate), else None."""
    from . import loader, specs, zoo

    name = spec.name
    path = zoo.find(name)
    if path is None or path.parent != zoo.HERE or name not in _timm_names():
        return None
    try:
        tree = loader.load(name, resolve=zoo.resolve)
        loader.set_classes_and_channels(tree, _num_classes(spec), spec.input.channels)
        loader.set_value(tree, "drop_path_rate", spec.drop_path_rate, Mark("drop_path_rate"))
        same = specs.validate(tree, name)
    except SpecError:
        return None
    return name if _same_model(same, spec) else None


def _timm_names() -> set[str]:
    from . import zoo

    path = zoo.HERE / "timm_models.txt"
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def _num_classes(spec: Any) -> int:
    linear = [layer for layer in spec.head if layer.classifier]
    return getattr(linear[-1], "features", 0) if linear and not spec.features_only else 0


def config(model: Any, spec: Any, weights_sha256: str | None = None) -> dict:
    """``config.json``: timm's keys (architecture, num_classes, num_features, global_pool, pretrained_cfg)
    and, under ``archkit``, the full spec and archkit's version."""
    from .version import __version__

    meta = _meta(spec)
    num_classes = _num_classes(spec)
    first = _first_conv(model, spec)
    pretrained = {"input_size": [spec.input.channels, *spec.input.size],
                  "interpolation": meta.get("interpolation") or "bilinear",
                  "crop_pct": meta.get("crop_pct") or _crop(meta, spec),
                  "mean": meta.get("mean") or [0.485, 0.456, 0.406][: spec.input.channels],
                  "std": meta.get("std") or [0.229, 0.224, 0.225][: spec.input.channels],
                  "num_classes": num_classes, "first_conv": first,
                  "classifier": _classifier(model, spec)}
    if meta.get("license"):
        pretrained["license"] = meta["license"]
    if any(layer.fixed_input_size for layer in spec.head):  # CLIP's attention pooling
        pretrained["fixed_input_size"] = True
    pools = [layer.global_pool for layer in spec.head]
    arch = timm_name(spec)
    out: dict[str, Any] = {"architecture": arch or "archkit", "num_classes": num_classes,
                           "num_features": getattr(model, "num_features", None),
                           "global_pool": next((p for p in pools if p), "avg"), "pretrained_cfg": pretrained}
    stored = spec.model_dump(mode="json", exclude={"weights"})
    if arch is None:
        out["model_args"] = {"spec": stored}
    else:
        out["model_args"] = {"num_classes": num_classes, "in_chans": spec.input.channels}
        if spec.drop_path_rate:
            out["model_args"]["drop_path_rate"] = spec.drop_path_rate
    out["archkit"] = {"version": __version__, "spec": stored, **({"weights_sha256": weights_sha256}
                                                                 if weights_sha256 else {})}
    return out


def _meta(spec: Any) -> dict:
    if not spec.weights:
        return {}
    return next(iter(spec.weights.values())).meta.model_dump(exclude_none=True)


def _crop(meta: dict, spec: Any) -> float:
    if meta.get("resize_size") and meta.get("input_size"):
        return round(meta["input_size"][0] / meta["resize_size"], 4)
    return 0.875


def _first_conv(model: Any, spec: Any) -> Any:
    """timm's ``first_conv``: the module reading the input, or a list of them (a re-parameterizable stem)."""
    from .transfer import first_convs

    names = [key.rpartition(".")[0] for key in first_convs(model, spec.input.channels)]
    return None if not names else names[0] if len(names) == 1 else names


def _classifier(model: Any, spec: Any) -> str | None:
    from .transfer import classifier_name

    name = classifier_name(model, list(getattr(model, "head_names", ())))
    if name is None and spec.head:  # where num_classes puts one (loader.set_classes_and_channels), as timm's _gap
        name = f"{spec.names.head}.fc" if spec.names.head else "fc"
    return name


def card(spec: Any, cfg: dict, provenance: str) -> str:
    """The model card: front matter for the hub, the summary table, the spec, where the weights came from."""
    import yaml

    from .summary import measure, render

    license_ = cfg["pretrained_cfg"].get("license")
    front = {"library_name": "timm" if cfg["architecture"] != "archkit" else "archkit",
             "tags": ["image-classification", "archkit", *(["timm"] if cfg["architecture"] != "archkit" else [])],
             **({"license": license_} if license_ else {})}
    spec_yaml = yaml.safe_dump(spec.data(exclude={"weights"}),
                               sort_keys=False, width=100)
    name = cfg["architecture"] if cfg["architecture"] != "archkit" else spec.name
    packaged, changes = _changes_from_packaged(spec)
    title = f"# {spec.name}" + (" (modified)" if changes else "")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", title, ""]
    if changes:  # the packaged spec's words describe the packaged model, not this one
        classes = _num_classes(spec)
        lines += [f"A variant of the packaged spec `{spec.name}`"
                  + (f" with {classes} classes" if classes else " without a classifier") + ", changed as follows:",
                  "", "```text", *changes, "```", "", f"The packaged `{spec.name}`: {packaged.description}", ""]
    elif spec.description:
        lines += [spec.description, ""]
    lines += ["Built by [archkit](https://pypi.org/project/archkit/) from the spec below; the folder loads with "
              "`archkit.create_model(\"local-dir:PATH\", pretrained=True)`"
              + (f" and with timm alone: `timm.create_model(\"local-dir:PATH\", pretrained=True)` ({name})."
                 if cfg["architecture"] != "archkit" else
                 " and in timm after `import archkit.timm`: `timm.create_model(\"local-dir:PATH\", pretrained=True)`."),
              "", "## Summary", "", "```text", render(measure(spec)), "```", "",
              "## Weights", "", provenance, "", "## Spec", "", "```yaml", spec_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


def _changes_from_packaged(spec: Any) -> tuple[Any, list[str]]:
    """The packaged (or a plugin's) spec of the same name and ``archkit diff``'s lines from it to ``spec``
    (no lines: no such spec, or the same model)."""
    from . import design, zoo

    if zoo.find(spec.name) is None:
        return None, []
    try:
        packaged = zoo.load(spec.name)
    except SpecError:
        return None, []
    if _same_model(packaged, spec):
        return packaged, []
    return packaged, design.render_diff(design.diff(packaged, spec)).splitlines()[1:]


def _same_model(a: Any, b: Any) -> bool:
    """Whether two specs build the same model (their weights declarations and words aside)."""
    skip = {"weights", "description"}
    return a.model_dump(mode="json", exclude=skip) == b.model_dump(mode="json", exclude=skip)


def save_pretrained(model: Any, directory: str | os.PathLike, spec: Any = None, provenance: str | None = None) -> Path:
    """Write ``model`` (and its spec) as a shared folder: config.json, model.safetensors, README.md.

    The files are written into a temp folder beside ``directory`` and moved into place only when all
    are complete; an existing folder is replaced only if it is empty or one archkit wrote."""
    from safetensors.torch import save_file

    from .weights import sha256_of

    spec = spec if spec is not None else model.spec
    target = Path(directory).resolve() if Path(directory).name in ("", ".", "..") else Path(directory)
    _remove_leftovers(target.resolve().parent, target.name)
    check_folder_target(target)
    parent = target.resolve().parent
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(work / WEIGHTS), metadata={"format": "pt"})
        digest = sha256_of(work / WEIGHTS)
        cfg = config(model, spec, digest)
        (work / CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        plan = getattr(model, "transfer_plan", None)
        how = provenance or (f"Loaded from {plan.source} ({plan.provenance}); "
                             f"{plan.params_transferred:,} of {plan.params_total:,} parameters transferred."
                             if plan is not None else "Initialized by archkit (no pretrained weights loaded).")
        how += f" `model.safetensors` has SHA-256 {digest}, recorded in config.json and checked on load."
        (work / CARD).write_text(card(spec, cfg, how), encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 is for the work in progress, not the folder
        for path in work.iterdir():
            os.chmod(path, 0o666 & ~umask)
        _replace_folder(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def check_folder_target(target: Path) -> None:
    """Refuse, before any work, a target that is not a folder, a folder archkit did not write, or an unwritable place."""
    from .errors import BadDestination

    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise BadDestination(f"{target}: not a folder; give a folder to write (or a new name)")
    if any(part.startswith("models--") for part in target.resolve().parts) and "snapshots" in target.resolve().parts:
        raise BadDestination(f"{target}: inside a Hugging Face cache; write the folder elsewhere")
    if target.is_dir() and any(target.iterdir()) and not _ours(target):
        raise BadDestination(f"{target}: holds files archkit did not write (only config.json, model.safetensors and "
                             "README.md are replaced); give an empty or new folder")
    parent = target.resolve().parent
    if not parent.is_dir():
        raise BadDestination(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadDestination(f"{target}: cannot write in {parent} (permission denied)")


def _ours(target: Path) -> bool:
    """A folder archkit wrote and nothing else: only its three files, none a symlink (a Hugging Face cache
    snapshot links its files into the cache's blobs: never written over)."""
    try:
        entries = list(target.iterdir())
    except OSError:
        return False
    if {p.name for p in entries} - {CONFIG, WEIGHTS, CARD} or any(p.is_symlink() for p in entries):
        return False
    return _is_archkit_config(target)


def _check_pushable(target: Path) -> None:
    """A folder archkit wrote, whole, holding its own files: nothing outside it is read or sent."""
    try:
        links = sorted(p.name for p in target.iterdir() if p.is_symlink())
    except OSError:
        links = []  # not a folder: said below
    if links:
        raise SpecError(f"{target / links[0]}: a symlink; a folder to push holds its own files (nothing outside "
                        "it is read or sent)")
    shared = sorted(name for name in (CONFIG, WEIGHTS, CARD) if (target / name).is_file()
                    and os.stat(target / name).st_nlink > 1)
    if shared:
        raise SpecError(f"{target / shared[0]}: a hard link (the same file is also elsewhere); a folder to push "
                        "holds its own files: export the folder again")
    if not (target / CONFIG).is_file() or not _is_archkit_config(target):
        raise SpecError(f"{target}: not a folder archkit wrote (no config.json with an archkit section); "
                        "write one with 'archkit export SPEC --format hf --output DIR'")
    missing = [name for name in (CONFIG, WEIGHTS, CARD) if not (target / name).is_file()]
    if missing:
        raise SpecError(f"{target}: has no {missing[0]}; export the folder again (a shared folder is config.json, "
                        f"{WEIGHTS} and {CARD})")


def _is_archkit_config(target: Path) -> bool:
    """Whether ``target/config.json`` is one archkit wrote (it has an ``archkit`` section)."""
    try:
        cfg = json.loads((target / CONFIG).read_text(encoding="utf-8")[: 1 << 20])
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(cfg, dict) and isinstance(cfg.get("archkit"), dict)


def _remove_leftovers(parent: Path, name: str) -> None:
    """The work and old folders of an earlier export of ``name`` killed mid-way (their process is gone): an old
    folder comes back if it was moved aside and nothing replaced it (nothing lost), then both are removed."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(?:old-(\d+)|(\d+)\.[^/]*\.tmp)$")
    for path in sorted(parent.glob(f".{glob.escape(name)}.*")):
        found = pattern.match(path.name)
        if not found or not path.is_dir() or path.is_symlink() or _alive(int(found.group(1) or found.group(2))):
            continue
        try:
            archkits = {p.name for p in path.iterdir()} <= {CONFIG, WEIGHTS, CARD}
        except OSError:
            continue
        if found.group(1) and not (parent / name).exists() and not (parent / name).is_symlink():
            os.replace(path, parent / name)  # the previous folder, moved aside just before the kill
        elif archkits:  # only what archkit writes is removed: anything else is somebody's
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def _replace_folder(work: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(work, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def push(directory: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
         message: str | None = None) -> str:
    """Upload a folder archkit wrote to the Hugging Face hub (``huggingface_hub.upload_folder``); the URL."""
    target = Path(directory)
    _check_pushable(target)
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise SpecError(f"--repo {repo_id!r}: {problem} (the hub's rules for a repository id)")
    try:
        from huggingface_hub import create_repo, upload_folder
    except ImportError:
        raise SpecError("archkit push needs huggingface_hub: pip install huggingface_hub (or 'archkit[hub]')") \
            from None
    from .errors import OutputError

    from .hub import spec_tree
    from .weights import sha256_of
    from .zoo import find, resolve

    spec_tree(f"local-dir:{target}", find, resolve)  # the config reads back as a spec, its two copies agree
    recorded = json.loads((target / CONFIG).read_text(encoding="utf-8"))["archkit"].get("weights_sha256")
    if not isinstance(recorded, str):
        raise SpecError(f"{target / CONFIG}: records no weights_sha256, so {WEIGHTS} cannot be checked as this "
                        "model's; export the folder again")
    if sha256_of(target / WEIGHTS) != recorded:
        raise SpecError(f"{target / WEIGHTS}: does not match the SHA-256 config.json records; export the folder again")
    try:
        create_repo(repo_id, private=private, exist_ok=True)
        info = upload_folder(repo_id=repo_id, folder_path=str(target), revision=revision,
                             allow_patterns=[CONFIG, WEIGHTS, CARD],
                             commit_message=message or f"archkit: {target.name}")
    except Exception as exc:  # noqa: BLE001 - no network, no login, no permission: one line
        raise OutputError(f"push to {repo_id}: {type(exc).__name__}: {_first(exc)}") from exc
    return str(getattr(info, "commit_url", info))
