"""The corpus in tests/bad_specs/ through the real CLI: exit 2, one line on stderr, the expected words."""

from __future__ import annotations

from pathlib import Path

import pytest

from archkit.cli import main

CORPUS = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))
BINARY = {"binary_junk.yaml": "not UTF-8", "latin1.yaml": "not UTF-8 text (bad byte at offset 9)"}


def _expected(path: Path) -> str:
    if path.name in BINARY:
        return BINARY[path.name]
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message fragment>'"
    return first[len("# expect: "):]


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_bad_spec_fails_cleanly(path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(path.parent)
    code = main(["build", path.name, "--summary"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert _expected(path) in lines[0]
    assert "Traceback" not in err
    assert lines[0].startswith((path.name, "cycle_", "chain_", "../"))  # a base file's error names the base


def test_corpus_is_not_empty() -> None:
    assert len(CORPUS) >= 40
