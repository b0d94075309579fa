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
    from archkit import zoo

    text = (stdout.getvalue() + stderr.getvalue()).replace(f"{zoo.HERE.parent}/", "<archkit>/")  # installed files
    text = text.replace(f"{ROOT}/", "")  # paths as a clone shows them
    real = {line.rstrip() for line in text.splitlines()}
    for line in shown:
        if line.strip() and "..." not in line and not line.startswith("#"):
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


def _yaml_specs() -> list:
    """Every ```yaml block of the pages that is a whole spec (a base: and a name:)."""
    import yaml

    out = []
    for page in PAGES:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S)):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and "base" in data and "name" in data:
                out.append(pytest.param(block, id=f"{page.name}: yaml {i}"))
    return out


@pytest.mark.parametrize("text", _yaml_specs())
def test_shown_specs_work_saved_anywhere(text: str, tmp_path, monkeypatch) -> None:
    """A spec shown in the docs, saved in a user's own folder (not the checkout), validates (issue 36.1)."""
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text(text)
    scales = yaml.safe_load(text).get("scales")  # a family of scales is built one scale at a time
    assert main(["validate", "mine.yaml", *(["--set", f"scale={next(iter(scales))}"] if scales else [])]) == 0


def test_counts_quoted_in_the_readme_are_the_real_counts() -> None:
    from conftest import SHIPPED

    text = (ROOT / "README.md").read_text()
    quoted = re.findall(r"(\d+) files in specs/", text)
    assert quoted and all(int(n) == len(SHIPPED) for n in quoted), (quoted, len(SHIPPED))


@pytest.mark.parametrize("svg", sorted((ROOT / "docs").glob("*.svg")), ids=lambda p: p.name)
def test_pictures_in_the_docs_are_what_draw_makes(svg: Path, tmp_path) -> None:
    assert main(["draw", svg.stem, "--output", str(tmp_path / "x.svg")]) == 0
    assert (tmp_path / "x.svg").read_text() == svg.read_text(), f"docs/{svg.name} is stale: archkit draw {svg.stem}"


def test_the_readme_keeps_a_cpu_only_torch() -> None:
    """Issue 36.13: the test extra needs torchvision; installed alone from PyPI it pulls PyPI's (CUDA) torch,
    so the README installs both from the CPU index first, and the package pins neither."""
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in text
    project = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r'"torch(vision)?==', project) and '"torch>=' in project
