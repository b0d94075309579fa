"""Errors a user can cause, and the exit codes the CLI maps them to."""

from __future__ import annotations

import dataclasses

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclasses.dataclass(frozen=True)
class Mark:
    """Where a value came from: a file position, or a command-line override."""

    source: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column}"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where, which field, what."""

    message: str
    mark: Mark | None = None
    field: str = ""

    def __str__(self) -> str:
        parts = [str(self.mark)] if self.mark else []
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        # one line, whatever the user's keys and values hold: control characters and line separators escaped
        return _one_line_text(": ".join(parts))


def _one_line_text(text: str) -> str:
    import unicodedata

    out = []
    for ch in text:
        if ch == "\t" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp"):
            out.append(ch)
        else:
            out.append({"\n": "\\n", "\r": "\\r"}.get(ch, f"\\u{ord(ch):04x}"))
    return "".join(out)


class SpecError(ValueError):
    """A spec (file, dict or override) is invalid; ``problems`` lists each error in file order."""

    def __init__(self, problems: list[Problem] | str, mark: Mark | None = None, field: str = ""):
        if isinstance(problems, str):
            problems = [Problem(problems, mark, field)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or does not fit its stored spec."""


class WeightsError(ValueError):
    """Weights that cannot be used: not declared, not a checkpoint, would run code, do not fit (exit 2)."""


class OutputError(RuntimeError):
    """A file could not be written (full disk, permissions); exit code 1."""


class BadDestination(OutputError):
    """An output path that cannot be used (missing directory, a directory, an input); exit code 2."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


class NothingToFuse(ValueError):
    """``fuse`` found no convolution followed by a BatchNorm (GroupNorm models, say)."""


class SummaryError(RuntimeError):
    """A module's forward fails on the meta device (it reads tensor values, say)."""


class ExportError(RuntimeError):
    """A model (or one of its blocks) cannot be exported to the asked format."""


def format_path(path: tuple) -> str:
    """Render a field path like ``stages[2].block.groups``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += ("." if out else "") + part
        else:
            out += f"[{part!r}]"
    return out


def reason(exc: BaseException) -> str:
    """An error as a tally key: its first problem with the field it names, numbers as N (one rule, one line)."""
    import re

    if isinstance(exc, SpecError):
        problem = exc.problems[0]
        text = f"{problem.field}: {problem.message}" if problem.field else problem.message
    else:
        text = str(exc) or type(exc).__name__
    return re.sub(r"\d[\d,._]*", "N", text)[:160]
