"""archkit's version, read from the installed package's metadata: one truth, pyproject.toml's."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("archkit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
