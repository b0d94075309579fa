"""Property-based fuzzing of the shipped specs: every mutation either builds (on meta) or raises a
SpecError whose every problem has a position. Anything else (a traceback from inside pydantic or
torch, a hang) fails. CI runs a fixed sample (the "ci" hypothesis profile, tests/conftest.py); a soak
run draws fresh, many more:

    python -m pytest tests/test_fuzz.py --hypothesis-profile soak
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import archkit
from archkit import SpecError
from archkit.errors import Mark
from conftest import SPECS

BASES = ["resnet18", "resnext50_32x4d", "darknet53", "wrn28_10", "resnet50_dilated"]


def _resolved(name: str) -> dict:
    """The spec as one self-contained mapping (base: resolved), so mutations reach every field."""
    return archkit.load_spec(SPECS / f"{name}.yaml").model_dump(mode="json")


RESOLVED = {name: _resolved(name) for name in BASES}

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, -1, 7, 64, 2**31, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["basic", "bottleneck", "resnext", "darknet", "conv", "linear", "flatten", "ünïcødé", "",
                     "layer1", "a:b", "-1", "1e400", ".nan"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_specs(draw) -> dict:
    spec = copy.deepcopy(RESOLVED[draw(st.sampled_from(BASES))])
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(spec)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["set", "set", "delete", "rename", "nest"]))
        if action == "set":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(key)
        elif action == "nest":
            parent[key] = {"x": [parent[key]]}
    return spec


@settings(max_examples=2 * settings.default.max_examples)  # cheap: twice the profile's number
@given(spec=mutated_specs())
def test_mutated_specs_build_or_fail_with_a_position(spec: dict, tmp_path_factory) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        archkit.build_model(archkit.load_spec(path), device="meta")
    except SpecError as exc:
        for problem in exc.problems:
            assert isinstance(problem.mark, Mark) and problem.mark.source == str(path), problem
            assert problem.mark.line is not None, problem
            assert "\n" not in str(problem)


CONTROL = [chr(c) for c in range(32) if c not in (9, 10, 13)] + ["\x7f", "\x85", "\u2028", "\u2029", "\ufeff"]


@st.composite
def chained_texts(draw) -> list[str]:
    """A shipped spec split over a base: chain of 1-3 files, with control characters slipped into the text."""
    spec = RESOLVED[draw(st.sampled_from(BASES))]
    keys = list(spec)
    cuts = sorted(draw(st.lists(st.integers(0, len(keys)), min_size=0, max_size=2)))
    groups = [keys[a:b] for a, b in zip([0, *cuts], [*cuts, len(keys)])]
    texts = [yaml.safe_dump({k: spec[k] for k in group}, allow_unicode=True, sort_keys=False) for group in groups]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(texts) - 1))
        pos = draw(st.integers(0, len(texts[i])))
        texts[i] = texts[i][:pos] + draw(st.sampled_from(CONTROL)) + texts[i][pos:]
    return texts


@settings(max_examples=2 * settings.default.max_examples)  # cheap: twice the profile's number
@given(texts=chained_texts())
def test_control_characters_and_base_chains_fail_in_one_located_line(texts: list[str], tmp_path_factory) -> None:
    folder = Path(tmp_path_factory.mktemp("chain"))
    paths = [folder / f"part{i}.yaml" for i in range(len(texts))]
    for i, (path, text) in enumerate(zip(paths, texts)):
        base = f"base: {paths[i - 1].name}\n" if i else ""
        path.write_text(base + text, encoding="utf-8")
    try:
        archkit.build_model(archkit.load_spec(paths[-1]), device="meta")
    except SpecError as exc:
        for problem in exc.problems:
            text = str(problem)
            assert isinstance(problem.mark, Mark) and problem.mark.source in {str(p) for p in paths}, problem
            assert not any(ch in text for ch in CONTROL if ch != "\ufeff") and "\n" not in text, repr(text)


# --- weights declarations and fit's inputs (issue 21) ---------------------------------------------------

entry_values = st.one_of(
    values,
    st.sampled_from(["http://127.0.0.1:9/w-abcdef12.pth", "https://h/x.safetensors", "file:///dev/zero",
                     "file://otherhost/x.pt", "ftp://h/x.pt", "HTTP://h/x", "http://", "w.pt", "../w.pt", "/dev/null",
                     "abcdef12", "ABCDEF1234", "0" * 64, "0" * 65, "torchvision", "timm", "archkit", "safetensors"]))
entry_keys = st.sampled_from(["url", "file", "sha256", "format", "meta", "license", "x"])


@st.composite
def weights_declarations(draw) -> dict:
    names = draw(st.lists(st.one_of(st.sampled_from(["IMAGENET1K_V1", "a1_in1k", "x.y-z"]), st.text(max_size=6)),
                          min_size=1, max_size=3, unique=True))
    return {n: draw(st.dictionaries(entry_keys, entry_values, max_size=4)) for n in names}


@settings(max_examples=settings.default.max_examples)
@given(weights=weights_declarations(), ref=st.one_of(st.sampled_from(["IMAGENET1K_V1", "x.y-z", "resnet18:IMAGENET1K_V1",
                                                                      "nospec:x", "ftp://h/x", "file:///dev/null"]),
                                                     st.text(max_size=8)))
def test_weights_declarations_validate_or_fail_located(weights: dict, ref: str, tmp_path_factory) -> None:
    """Any weights: mapping validates or fails with positions; resolving and fetching a reference to
    one (without a network: files and refusals only) raises WeightsError, never anything else."""
    from archkit import weights as w

    path = Path(tmp_path_factory.mktemp("weights")) / "spec.yaml"
    path.write_text(yaml.safe_dump({"base": "resnet18", "name": "w", "weights": weights}, allow_unicode=True),
                    encoding="utf-8")
    try:
        spec = archkit.load_spec(path)
    except SpecError as exc:
        assert all(p.mark is not None and p.mark.line is not None for p in exc.problems), exc
        return
    try:
        source = w.resolve(ref, spec)
        if source.file is not None:
            w.fetch(source)
    except archkit.WeightsError as exc:
        assert "\n" not in str(exc)


budgets = st.one_of(st.sampled_from(["2G", "500M", "1.5G", "0", "-1", "1e400", "abc", "3T", "999", "0.5K", "nan"]),
                    st.text(max_size=5))
axes = st.lists(st.sampled_from(["width", "depth", "w_a", "w_0", "w_m", "group_width", "bottleneck_multiplier",
                                 "regnet.depth", "se_ratio", "", "width,", "x"]), max_size=3)


@settings(max_examples=settings.default.max_examples // 2)  # each fit searches: ~0.3 s
@given(base=st.sampled_from(["resnet18", "regnet_x_400mf", "cspresnet50"]), macs=budgets,
       params=st.one_of(st.none(), budgets), vary=axes,
       sets=st.lists(st.sampled_from(["width_multiplier=0.5", "depth_multiplier=2", "width_multiplier=-1",
                                      "regnet.w_0=65536", "regnet.w_a=0", "regnet.bottleneck_multiplier=0.01",
                                      "stages.0.depth=1", "input.size=[32, 32]", "block.attn=[{type: se}]"]),
                     max_size=2),
       size=st.one_of(st.none(), st.integers(-1, 4096)))
def test_fit_answers_or_fails_in_one_line(base, macs, params, vary, sets, size, tmp_path_factory, capsys) -> None:
    """fit with any budget, axes and overrides: a choice whose written file builds what it measured, or
    an error in one line per problem (exit 1 or 2); never a traceback or an unexpected exception."""
    from archkit.cli import main

    out = Path(tmp_path_factory.mktemp("fit")) / "fit.yaml"
    argv = ["fit", base, "--macs", macs, "--output", str(out)]
    argv += ["--params-max", params] if params is not None else []
    argv += ["--vary", ",".join(vary)] if vary else []
    argv += [a for s in sets for a in ("--set", s)]
    argv += ["--input-size", str(size)] if size is not None else []
    capsys.readouterr()
    code = main(argv)
    _, err = capsys.readouterr()
    assert "--traceback" not in err and "Traceback" not in err, err
    if code == 0:
        header = out.read_text().splitlines()[0]
        counted = archkit.summary.measure(archkit.load_spec(out))
        assert header.endswith(f"{counted.total_params:,} parameters, {counted.macs / 1e9:.3f} GMACs")
    else:
        lines = err.strip().splitlines()  # one line, or one per problem of an invalid spec (all at once)
        assert code in (1, 2) and lines and (len(lines) == 1 or code == 2), err
        assert not out.exists()
