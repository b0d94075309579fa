"""Pretrained weights: find them (declared name, ``spec:name``, file or URL), download into torch.hub's
cache with the hash verified, and read any of the formats people publish, never running code.

A partial, oversized, slow or mismatched download never stays in the cache: bytes go to a temp file
beside the final one (removed on every exit path, signals included), are counted against a size cap
and a deadline and hashed as they arrive, and are renamed into place only when complete, verified and
shaped like a weights file. A file already in the cache is verified again before each use, so a
cached file works offline.

A cache entry belongs to its URL: a file name carrying torch.hub's hash (``resnet18-f37072fd.pth``)
is shared with torchvision's and timm's cache only when the spec declares the hash; any other URL
gets an entry named after the URL itself. The hash in a file name is checked whenever the file is
used. A URL declared without any hash is trusted on first use: its digest is recorded beside the
file (``NAME.sha256``) and checked on every later use and every later download.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from .deadline import Deadline
from .errors import WeightsError, first_line

CHUNK = 1 << 20
STALL_TIMEOUT_S = 60  # no byte for this long: the download fails
MAX_DOWNLOAD_ENV = "ARCHKIT_MAX_DOWNLOAD_BYTES"
DEFAULT_MAX_DOWNLOAD = 4 << 30  # the largest declared file (resnext101_32x32d) is 1.9 GB
DOWNLOAD_TIMEOUT_ENV = "ARCHKIT_DOWNLOAD_TIMEOUT"
DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0  # the whole download
_SAFETENSORS_MAX_HEADER = 100 << 20  # what still looks like a safetensors file (and is refused by the bounds below)
MAX_HEADER_BYTES = 8 << 20  # resnet152's header is 60 kB; 8 MiB describes some 100,000 tensors
MAX_TENSORS = 100_000  # resnet1001 has about 5,000


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
    from . import hub, zoo
    from .zoo import load as load_spec
    from .registry import suggest

    text = os.fspath(ref)
    if re.match(r"^file://", text, re.IGNORECASE):
        return Source(text, file=file_url_path(text))
    if re.match(r"^https?://", text, re.IGNORECASE):
        return Source(text, url=text)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        scheme = text.split(":", 1)[0]
        raise WeightsError(f"{_shown(text)}: {scheme}:// is not supported; give an http(s):// or file:// URL or a path")
    declared = getattr(spec, "weights", {}) or {}
    if text in declared:
        return _declared(text, declared[text], spec)
    if hub.is_ref(text):
        return _folder_weights(text)
    other, sep, name = text.partition(":")
    if sep and other and name and not Path(text).exists() and not zoo.is_path(other) and zoo.find(other) is None:
        raise WeightsError(f"{_shown(text)}: no spec named {other!r} (SPEC:NAME takes a spec's declared weights)"
                           + suggest(other, zoo.names()))
    if sep and not Path(text).exists():
        if zoo.find(other) is not None or (zoo.is_path(other) and Path(other).is_file()):
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


def _folder_weights(text: str) -> Source:
    """A shared folder's weights as a reference: ``local-dir:PATH`` / ``hf-hub:ORG/NAME`` (its one declared set,
    ``folder``), or the same with ``:folder`` after it, as ``SPEC:NAME`` is written."""
    from . import hub
    from .registry import suggest
    from .zoo import load as load_spec

    ref, sep, name = text.rpartition(":")
    if not (sep and hub.is_ref(ref) and ref not in (hub.LOCAL, hub.HUB) and re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
        ref, name = text, hub.WEIGHTS_NAME
    folder_spec = load_spec(ref)
    if name not in folder_spec.weights:
        raise WeightsError(f"{ref}: the folder declares no weights {name!r}" + (
            suggest(name, list(folder_spec.weights)) if folder_spec.weights else " (it holds no weights file)"))
    return _declared(text, folder_spec.weights[name], folder_spec)


def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (host empty or localhost)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise WeightsError(f"{_shown(url)}: a file:// URL names a file on this machine (host empty or localhost)")
    return Path(urllib.request.url2pathname(parsed.path))


def _shown(text: str, limit: int = 200) -> str:
    """A URL for a message: without the ``user:password@`` it may carry, cut to ``limit`` characters."""
    parts = urllib.parse.urlsplit(text)
    if "@" in parts.netloc:
        text = urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _declared(label: str, entry: Any, spec: Any) -> Source:
    file, url = None, entry.url
    if url is not None and url.lower().startswith("file://"):
        file, url = file_url_path(url), None
    elif entry.file is not None:
        # relative to the file that wrote it; a value given on the command line (--set), to the working directory
        name = next((n for n, e in spec.weights.items() if e is entry), None)
        mark = spec.mark_of(("weights", name, "file")) or spec.mark_of(("weights",))
        source = mark.source if mark is not None else ""
        base = Path(source).parent if source and not source.startswith(("--set", "<")) and Path(source).exists() \
            else Path()
        file = base / entry.file
    return Source(label, url=url, file=file, sha256=entry.sha256, format=entry.format,
                  meta=entry.meta.model_dump(exclude_none=True))


def default_name(spec: Any) -> str:
    """The spec's default weights: the first declared (``pretrained=True``)."""
    if not spec.weights:
        raise WeightsError(f"{spec.name} declares no weights")
    return next(iter(spec.weights))


def fetch(source: Source) -> Path:
    """The local file for ``source``: the file itself, or the verified download in the cache."""
    if source.file is not None:
        if not source.file.exists():
            from .hub import fetch_missing

            fetch_missing(source.file)  # a shared folder's weights on the Hugging Face hub: fetched now
        if not source.file.is_file():
            what = "not a regular file" if source.file.exists() else "no such weights file"
            raise WeightsError(f"{source.file}: {what}")
        if source.sha256:
            _verify(source.file, [source.sha256], source.label)
        return source.file
    if source.url is None:
        raise WeightsError(f"{source.label}: declares neither a url nor a file")
    target = cache_dir() / _cache_name(source.url, source.sha256)
    expected = [(h, what) for h, what in ((source.sha256, "declared"), (_name_hash(source.url), "file name's"))
                if h]
    recorded = _recorded(target) if not expected else None
    if target.is_file():
        if expected or recorded:
            _verify(target, [h for h, _ in expected] or [recorded], source.label, cached=True, recorded=not expected)
            return target
        # no hash and no record (deleted, or never written): the file cannot be checked, so it is fetched
        # again and trusted on that first use, as deleting the record is documented to do
        target.unlink()
    _download(source.url, target, expected, recorded, source.label)
    return target


def forget(source: Source, path: Path) -> None:
    """Take a downloaded file that turned out not to be usable weights out of the cache, with its record."""
    if source.url is None or path.parent != cache_dir():
        return  # the user's own file: never deleted
    for stale in (path, _record_of(path)):
        with contextlib.suppress(OSError):
            stale.unlink()


def provenance(source: Source, path: Path) -> str:
    """How the file at ``path`` was checked, for the transfer plan."""
    if source.sha256:
        return f"SHA-256 {source.sha256.lower()}... verified"
    if source.url is not None and _name_hash(source.url):
        return f"SHA-256 {_name_hash(source.url)}... (from the file name) verified"
    recorded = _recorded(path) if source.url is not None else None
    if recorded:
        return (f"no hash declared: trusted on first download, SHA-256 {recorded[:16]}... recorded in "
                f"{path.name}.sha256 and checked on every later use")
    return "no hash declared: not verified"


_HUB_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")


def _name_hash(url: str) -> str | None:
    """The SHA-256 prefix torch.hub's naming puts in a file name (``resnet18-f37072fd.pth``), if any."""
    found = _HUB_NAME.search(Path(urllib.parse.urlparse(url).path).name)
    return found.group(1) if found else None


def _cache_name(url: str, sha256: str | None = None) -> str:
    """The cache entry of ``url``: torch.hub's own name (shared with torchvision and timm) for a declared
    hash, else a name carrying a digest of the whole URL, so two hosts never share an entry."""
    name = Path(urllib.parse.urlparse(url).path).name or "weights"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-120:].lstrip(".") or "weights"
    if sha256 and _HUB_NAME.search(name):
        return name
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def _record_of(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded(path: Path) -> str | None:
    """The digest recorded on first download of a file declared without a hash (trust on first use)."""
    try:
        return _record_of(path).read_text().strip() or None
    except OSError:
        return None


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: list[str], label: str, cached: bool = False, recorded: bool = False) -> None:
    actual = sha256_of(path)
    for want in expected:
        if not actual.startswith(want.lower()):
            if recorded:
                raise DownloadError(f"{label}: cached file {path} has SHA-256 {actual[:16]}..., not the {want} "
                                    f"recorded on first download; delete it and {_record_of(path).name} to "
                                    "download and trust it again")
            where = "cached file" if cached else "file"
            raise DownloadError(f"{label}: {where} {path} has SHA-256 {actual[:16]}..., expected {want}...; "
                                + ("delete it to download again" if cached else "refusing to use it"))


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:  # NaN included; inf is no limit
        raise WeightsError(f"${name} must be a positive number (inf: no limit), got {raw!r}")
    return value


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: a spec may not name ftp:// or file://, nor may a server."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        if urllib.parse.urlparse(newurl).scheme.lower() not in ("http", "https"):
            raise DownloadError(f"{_shown(req.full_url)}: redirected to {_shown(newurl)}; only http(s) redirects "
                                "are followed; nothing cached")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _looks_like_weights(path: Path) -> bool:
    """A torch archive (zip), a legacy torch pickle (protocol 2+) or a safetensors file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80" or is_safetensors(path)


def _remove_stale_parts(target: Path, older_than: float) -> None:
    """Temp files of earlier downloads of ``target`` killed without cleanup (SIGKILL, power loss)."""
    now = time.time()
    for part in target.parent.glob(f".{target.name}.*.part"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > older_than:
                part.unlink()


def _download(url: str, target: Path, expected: list[tuple[str, str]], recorded: str | None, label: str) -> None:
    from .files import removed_on_signal

    timeout = _env_number(DOWNLOAD_TIMEOUT_ENV, DEFAULT_DOWNLOAD_TIMEOUT_S)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the cache directory {target.parent}: {exc.strerror or exc}") from None
    _remove_stale_parts(target, older_than=timeout)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    shown = _shown(url)
    where = shown if label == url else f"{label}: {shown}"  # a URL given as is is named once
    try:
        with removed_on_signal(tmp), Deadline(timeout) as deadline:
            actual = _transfer(url, fd, where, target, deadline, timeout)
            _check_download(actual, tmp, expected, recorded, where, target)
            os.replace(tmp, target)
            if not expected and not recorded:  # trust on first use: later uses must match what was fetched now
                _record_of(target).write_text(actual + "\n")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _transfer(url: str, fd: int, where: str, target: Path, deadline: Deadline, timeout: float) -> str:
    """The response's bytes into ``fd``, within the size limit and the deadline; their SHA-256."""
    limit = _env_number(MAX_DOWNLOAD_ENV, DEFAULT_MAX_DOWNLOAD)
    limit = int(limit) if math.isfinite(limit) else limit  # inf: no limit
    late = DownloadError(f"{where}: not complete after {timeout:g} s (${DOWNLOAD_TIMEOUT_ENV}); nothing cached")
    digest, received = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, contextlib.closing(
                deadline.opener(_HttpOnlyRedirects).open(url, timeout=min(STALL_TIMEOUT_S, timeout))) as response:
            encoding = (response.headers.get("Content-Encoding") or "identity").lower()
            if encoding != "identity":
                raise DownloadError(f"{where}: the server sent {encoding}-encoded bytes, not the file; nothing cached")
            size = response.headers.get("Content-Length")
            size = int(size) if size is not None and size.isdigit() else None
            if size is not None and size > limit:
                raise DownloadError(f"{where}: {size:,} bytes, above the download limit of {limit:,} "
                                    f"(${MAX_DOWNLOAD_ENV}); nothing cached")
            while chunk := (response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)):
                received += len(chunk)
                if received > limit:
                    raise DownloadError(f"{where}: more than {limit:,} bytes, the download limit "
                                        f"(${MAX_DOWNLOAD_ENV}); nothing cached")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{where}: HTTP {exc.code} {exc.reason}; nothing cached at {target}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        if deadline.expired:  # the deadline cut the connection: whatever the read made of it
            raise late from None
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"{where}: cannot download ({first_line(reason, 200)}); no cached copy at {target}") \
            from None
    if deadline.expired:
        raise late
    if size is not None and received != size:
        raise DownloadError(f"{where}: connection closed after {received:,} of {size:,} bytes; nothing cached")
    return digest.hexdigest()


def _check_download(actual: str, tmp: Path, expected: list[tuple[str, str]], recorded: str | None, where: str,
                    target: Path) -> None:
    """A complete download is the file it should be: the hashes it must match, the shape of a weights file."""
    for want, what in expected:
        if not actual.startswith(want.lower()):
            raise DownloadError(f"{where}: SHA-256 {actual[:16]}... does not match the {what} {want}; nothing cached")
    if recorded and not actual.startswith(recorded):
        raise DownloadError(f"{where}: SHA-256 {actual[:16]}... differs from the {recorded[:16]}... recorded on the "
                            f"first download; nothing cached (delete {_record_of(target)} to trust the new file)")
    if not _looks_like_weights(tmp):
        raise DownloadError(f"{where}: the response is not a weights file (a torch archive, pickle or safetensors); "
                            "nothing cached")


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
    label = label or str(path)
    if not path.is_file():
        raise WeightsError(f"{label}: no such file" if not path.exists() else f"{label}: not a regular file")
    return _read_safetensors(path, label) if is_safetensors(path) else _read_torch(path, label)


def _read_safetensors(path: Path, label: str) -> tuple[dict, dict | None]:
    from safetensors import SafetensorError, safe_open

    with open(path, "rb") as fh:
        header = int.from_bytes(fh.read(8), "little")
    if header > MAX_HEADER_BYTES:  # parsing it alone would take seconds and gigabytes
        raise WeightsError(f"{label}: a safetensors header of {header:,} bytes, above {MAX_HEADER_BYTES:,} (more "
                           f"tensors than any model has); refused before reading it")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            keys = list(fh.keys())
            if len(keys) > MAX_TENSORS:
                raise WeightsError(f"{label}: {len(keys):,} tensors, above {MAX_TENSORS:,} (more than any model has); "
                                   "refused before reading them")
            state = {k: fh.get_tensor(k) for k in keys}
    except WeightsError:
        raise
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{label}: not a readable safetensors file: {first_line(exc, 200)}") from None
    if meta.get("format") != "archkit-checkpoint" or not meta.get("spec"):
        return state, None
    try:
        return state, json.loads(meta["spec"])
    except ValueError:
        raise WeightsError(f"{label}: its stored archkit spec is not valid JSON") from None
    except RecursionError:
        raise WeightsError(f"{label}: its stored archkit spec nests too deep to be a spec") from None


def _read_torch(path: Path, label: str) -> tuple[dict, dict | None]:
    import pickle

    import torch

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
    except Exception as exc:  # noqa: BLE001 - whatever torch's unpickler makes of junk (KeyError, IndexError...)
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
