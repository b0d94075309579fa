"""The one way archkit writes a file: checkpoints, exports, drawings, schemas, specs.

- A regular target (or a symlink to one) is replaced atomically: the bytes go to a temp file created
  exclusively (``O_EXCL``, an unpredictable name, never following a planted symlink) beside the
  real target, are fsynced, take the old file's mode, and are renamed onto it only when complete.
  An interrupted write (an exception, Ctrl-C, SIGTERM, SIGHUP) removes the temp file; the old file
  survives. (SIGKILL cannot be caught: a ``.NAME.*.tmp`` file may then remain beside the target.)
- A target that is not a regular file (``/dev/null``, a FIFO, a terminal, ``/proc/self/fd/1``) is
  written in place, never replaced by a regular file.
- ``check_destination`` refuses, before any work, a missing directory, a directory as target, an
  unwritable place, and a target that is one of the command's inputs.
- A full disk is reported as "no space left on device", one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from .errors import BadDestination, OutputError

_CAUGHT = (signal.SIGTERM, signal.SIGHUP) if hasattr(signal, "SIGHUP") else (signal.SIGTERM,)


def _real(path: Path) -> Path:
    """The file a path finally names (through symlinks), even if it does not exist yet."""
    return Path(os.path.realpath(path))


def is_special(path: Path) -> bool:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_destination(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                      outputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, before any work, a destination that cannot be written, that is an input of the command
    (compared through symlinks, and by path when the input does not exist yet) or another of its outputs."""
    target = Path(path)
    if is_special(target):  # /dev/null, a FIFO, /proc/self/fd/1: written in place
        if not os.access(target, os.W_OK):
            raise BadDestination(f"{target}: permission denied")
        return target
    real = _real(target)
    if real.is_dir():
        raise BadDestination(f"{target}: is a directory; give a file name")
    for role, items in (("an input", inputs), ("another output", outputs)):
        for item in items:
            if item is None or os.fspath(item) == "":
                continue
            same = _real(Path(item)) == real
            if not same and real.exists():
                with contextlib.suppress(OSError):
                    same = os.path.samefile(real, item)
            if same:
                raise BadDestination(f"{target}: is also {role} of this command ({item}); refusing to overwrite it")
    parent = real.parent
    if not parent.is_dir():
        raise BadDestination(f"{target}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadDestination(f"{target}: cannot write in {parent} (permission denied)")
    if real.exists() and not os.access(real, os.W_OK):
        raise BadDestination(f"{target}: permission denied")
    return target


def _describe(exc: OSError, target: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{target}: no space left on device")
    if exc.errno == errno.EDQUOT:
        return OutputError(f"{target}: disk quota exceeded")
    return OutputError(f"{target}: cannot write: {exc.strerror or exc}")


@contextlib.contextmanager
def removed_on_signal(tmp: Path) -> Iterator[None]:
    """While a temp file exists, SIGTERM/SIGHUP become an exception, so it is cleaned up like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {}
    for sig in _CAUGHT:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a path to write to; it becomes ``path`` only if the block succeeds (see the module doc).

    For a non-regular target the yielded path is the target itself (written in place).
    """
    target = Path(path)
    if is_special(target):
        try:
            yield target
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _describe(exc, target) from exc
        return
    real = _real(target)  # through symlinks: the link stays, the file it names is replaced
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        raise _describe(exc, target) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        with removed_on_signal(tmp):
            yield tmp
            os.chmod(tmp, mode)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, real)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(real.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise _describe(exc, target) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text through ``atomic_path``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
