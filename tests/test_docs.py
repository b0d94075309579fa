"""The README and docs/ say what archkit does: every shown command is run and the lines of its output
that carry figures are compared with the page; every CLI option is documented in docs/cli.md."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

import archkit
from archkit.cli import _parser, main
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS_NETWORK = ("--weights",)  # downloads: shown for the transfer plan's format, not run here


def _blocks(page: Path) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown) for each ```text block that starts with ``$ archkit``."""
    out = []
    for block in re.findall(r"```text\n(.*?)```", page.read_text(), flags=re.S):
        command, shown = None, []
        for line in [*block.splitlines(), "$ end"]:
            if line.startswith("$ "):
                if command and command.startswith("archkit ") and not any(a in command for a in NEEDS_NETWORK):
                    out.append((command, shown))
                command, shown = line[2:], []
            else:
                shown.append(line)
    return out


CASES = [pytest.param(page, command, shown, id=f"{page.name}: {command[:50]}")
         for page in PAGES for command, shown in _blocks(page)]


@pytest.mark.parametrize("page, command, shown", CASES)
def test_shown_output_is_the_real_output(page: Path, command: str, shown: list[str], monkeypatch) -> None:
    """Every line of the shown output that carries a figure appears in the command's real output."""
    monkeypatch.chdir(ROOT)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        main(shlex.split(command)[1:])
    text = (stdout.getvalue() + stderr.getvalue()).replace(f"{ROOT}/", "")  # paths as a clone shows them
    real = {line.rstrip() for line in text.splitlines()}
    for line in shown:
        if re.search(r"\d", line) and "..." not in line and not line.startswith("#"):
            assert line.rstrip() in real, f"{page.name}: `{command}` no longer prints {line.strip()!r}"


def test_readme_python_outputs() -> None:
    """The README's ``archkit.list_models(...)  # [...]`` line shows what it returns."""
    text = (ROOT / "README.md").read_text()
    calls = re.findall(r"^(archkit\.list_models\([^)]*\))\s+# (\[.*\])$", text, flags=re.M)
    assert calls
    for call, shown in calls:
        assert str(eval(call, {"archkit": archkit})) == shown  # noqa: S307 - the README's own line


def test_every_cli_option_is_documented() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for command, p in sub.choices.items():
        if f"archkit {command}" not in doc:
            missing.append(command)
        for action in p._actions:
            for option in action.option_strings:
                if option.startswith("--") and option not in ("--help", "--traceback", "--no-plugins") \
                        and option not in doc:
                    missing.append(f"{command} {option}")
    assert not missing, f"docs/cli.md does not mention: {missing}"
