"""Pretrained weights: find them (declared name, ``spec:name``, file or URL), download into torch.hub's
cache with the hash verified, and read any of the formats people publish, never running code.

A partial or mismatched download never stays in the cache: bytes go to a temp file beside the final
one, are hashed as they arrive, and are renamed into place only when complete and verified. A file
already in the cache is verified again before each use, so a cached file works offline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from .errors import WeightsError, first_line

CHUNK = 1 << 20
TIMEOUT_S = 60
_SAFETENSORS_MAX_HEADER = 100 << 20


class DownloadError(WeightsError):
    """The weights could not be fetched or failed verification (exit code 1: retrying may help)."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a set of weights comes from, and what is known about it."""

    label: str  # what the user asked for, for messages ("IMAGENET1K_V2", "resnet50:IMAGENET1K_V1", a path)
    url: str | None = None
    file: Path | None = None
    sha256: str | None = None
    format: str | None = None
    meta: dict | None = None


def cache_dir() -> Path:
    """torch.hub's checkpoint directory (``$TORCH_HOME/hub/checkpoints``), shared with torchvision and timm."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve(ref: str | os.PathLike, spec: Any) -> Source:
    """A weights reference: a name ``spec`` declares, ``SPEC:NAME`` (another spec's), a URL, or a file."""
    from . import zoo
    from .specs import load as load_spec
    from .registry import suggest

    text = os.fspath(ref)
    if re.match(r"^(https?|file)://", text):
        return Source(text, url=text)
    declared = getattr(spec, "weights", {}) or {}
    if text in declared:
        return _declared(text, declared[text], spec)
    other, sep, name = text.partition(":")
    if sep and not Path(text).exists():
        if zoo.find(other) is not None:
            other_spec = load_spec(other)
            if name not in other_spec.weights:
                raise WeightsError(f"spec {other!r} declares no weights {name!r}"
                                   + suggest(name, list(other_spec.weights)))
            return _declared(text, other_spec.weights[name], other_spec)
    path = Path(text)
    if path.exists() or zoo.is_path(text):
        return Source(text, file=path)
    choices = list(declared)
    hint = suggest(text, choices) if choices else f"; {getattr(spec, 'name', 'this spec')} declares no weights"
    raise WeightsError(f"no weights named {text!r} (a declared name, SPEC:NAME, a file or a URL){hint}")


def _declared(label: str, entry: Any, spec: Any) -> Source:
    file = None
    if entry.file is not None:
        base = Path(spec.mark_of(("weights",)).source).parent if spec.mark_of(("weights",)) else Path()
        file = base / entry.file
    return Source(label, url=entry.url, file=file, sha256=entry.sha256, format=entry.format,
                  meta=entry.meta.model_dump(exclude_none=True))


def default_name(spec: Any) -> str:
    """The spec's default weights: the first declared (``pretrained=True``)."""
    if not spec.weights:
        raise WeightsError(f"{spec.name} declares no weights")
    return next(iter(spec.weights))


def fetch(source: Source) -> Path:
    """The local file for ``source``: the file itself, or the verified download in the cache."""
    if source.file is not None:
        if not source.file.is_file():
            what = "not a regular file" if source.file.exists() else "no such weights file"
            raise WeightsError(f"{source.file}: {what}")
        if source.sha256:
            _verify(source.file, source.sha256, source.label)
        return source.file
    assert source.url is not None
    target = cache_dir() / _cache_name(source.url)
    if target.is_file():
        expected = source.sha256 or _recorded(target)
        if expected:
            _verify(target, expected, source.label, cached=True)
        return target
    _download(source.url, target, source.sha256, source.label)
    return target


def provenance(source: Source, path: Path) -> str:
    """How the file at ``path`` was checked, for the transfer plan."""
    if source.sha256:
        return f"SHA-256 {source.sha256.lower()}... verified"
    recorded = _recorded(path) if source.url is not None else None
    if recorded:
        return (f"no hash declared: trusted on first download, SHA-256 {recorded[:16]}... recorded in "
                f"{path.name}.sha256 and checked on every later use")
    return "no hash declared: not verified"


def _cache_name(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name or "weights"
    if re.search(r"-[0-9a-f]{8,64}\.[A-Za-z]+$", name):
        return name  # torch.hub's own name: torchvision's and timm's caches are shared
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def _recorded(path: Path) -> str | None:
    """The digest recorded on first download of a file declared without a hash (trust on first use)."""
    side = path.with_name(path.name + ".sha256")
    try:
        return side.read_text().strip() or None
    except OSError:
        return None


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str, label: str, cached: bool = False) -> None:
    actual = sha256_of(path)
    if not actual.startswith(expected.lower()):
        where = "cached file" if cached else "file"
        raise DownloadError(f"{label}: {where} {path} has SHA-256 {actual[:16]}..., expected {expected}...; "
                            + ("delete it to download again" if cached else "refusing to use it"))


def _download(url: str, target: Path, sha256: str | None, label: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the cache directory {target.parent}: {exc.strerror or exc}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        try:
            with contextlib.closing(urllib.request.urlopen(url, timeout=TIMEOUT_S)) as response, \
                    os.fdopen(fd, "wb") as out:
                expected_size = response.headers.get("Content-Length")
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{label}: {url}: HTTP {exc.code} {exc.reason}; nothing cached at {target}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"{label}: cannot download {url} ({reason}); no cached copy at {target}") from None
        if expected_size is not None and expected_size.isdigit() and received != int(expected_size):
            raise DownloadError(f"{label}: {url}: connection closed after {received:,} of {int(expected_size):,} "
                                "bytes; nothing cached")
        actual = digest.hexdigest()
        if sha256 and not actual.startswith(sha256.lower()):
            raise DownloadError(f"{label}: {url}: SHA-256 {actual[:16]}... does not match the declared {sha256}; "
                                "nothing cached")
        os.replace(tmp, target)
        if not sha256:  # trust on first use: later uses must match what was fetched now
            target.with_name(target.name + ".sha256").write_text(actual + "\n")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def is_safetensors(path: Path) -> bool:
    """Whether the file starts like a safetensors file (little-endian header size, then a JSON object)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size <= _SAFETENSORS_MAX_HEADER and head[8:9] == b"{"


# what torch's own tensor files import when unpickled; anything else is an object that runs code
_SAFE_IMPORTS = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset")


def _pickle_imports(path: Path) -> list[str]:
    """Globals a pickle (plain, or a torch zip's data.pkl) imports beyond torch's tensor rebuilding."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(names[0]) if names else b""
        else:
            data = path.read_bytes()[: 64 << 20]
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings = (strings + [arg])[-2:]
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                found.append(".".join(strings))
    except Exception:  # noqa: BLE001 - not a pickle at all, or cut short: report what was seen
        pass
    return [g for g in found if not g.startswith(_SAFE_IMPORTS) and g not in _SAFE_IMPORTS]


MAX_CHECKPOINT_BYTES = 64 << 30  # what a torch archive may unpack to: 16 G float32 parameters


def _check_archive(path: Path, label: str) -> None:
    """Refuse a torch zip archive that would inflate: torch.save stores its entries uncompressed."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{label}: not a readable checkpoint archive: {first_line(exc, 160)}") from None
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries):
        raise WeightsError(f"{label}: refused: a compressed archive (torch.save never compresses; it could "
                           "inflate without bound)")
    total = sum(e.file_size for e in entries)
    if total > MAX_CHECKPOINT_BYTES:
        raise WeightsError(f"{label}: refused: the archive unpacks to {total:,} bytes")


def read_state(path: Path, label: str | None = None) -> tuple[dict, dict | None]:
    """The tensors of a weights file (any published format) and its stored archkit spec, if any.

    torch files load with ``weights_only=True``: a file that would run code is refused.
    """
    import pickle
    import zipfile

    import torch

    label = label or str(path)
    if not path.is_file():
        raise WeightsError(f"{label}: no such file" if not path.exists() else f"{label}: not a regular file")
    if is_safetensors(path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                state = {k: fh.get_tensor(k) for k in fh.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{label}: not a readable safetensors file: {first_line(exc, 200)}") from None
        spec = None
        if meta.get("format") == "archkit-checkpoint" and meta.get("spec"):
            try:
                spec = json.loads(meta["spec"])
            except ValueError:
                raise WeightsError(f"{label}: its stored archkit spec is not valid JSON") from None
        return state, spec
    _check_archive(path, label)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        imports = _pickle_imports(path)
        if imports:
            raise WeightsError(f"{label}: refused: loading it would run code (it imports {imports[0]}, not just "
                               "tensors); archkit never unpickles objects") from None
        raise WeightsError(f"{label}: not a readable checkpoint (not a tensor file, or corrupted)") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, zipfile.BadZipFile, RecursionError,
            MemoryError) as exc:
        raise WeightsError(f"{label}: not a readable checkpoint (truncated or corrupted?): "
                           f"{first_line(exc, 160)}") from None
    spec = None
    if isinstance(payload, dict) and payload.get("format") == "archkit-checkpoint":
        spec = payload.get("spec") if isinstance(payload.get("spec"), dict) else None
        payload = payload.get("state_dict")
    elif isinstance(payload, dict):
        for key in ("state_dict", "model", "model_state_dict"):  # timm train scripts, lightning, others
            if isinstance(payload.get(key), dict) and not isinstance(payload.get(key), torch.Tensor):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not payload or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        raise WeightsError(f"{label}: not a checkpoint: no mapping of names to tensors found")
    if all(k.startswith("module.") for k in payload):  # saved from DistributedDataParallel
        payload = {k[len("module."):]: v for k, v in payload.items()}
    return payload, spec
