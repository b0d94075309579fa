"""Design spaces (``archkit sample``): pycls' distributions by their definitions, constraints held by every
sampled model, figures equal to models built and measured (FlopCounterMode, hooks, torchvision's RegNet
builder), reproducibility across processes, tables, EDFs and specs written, bad space files located."""

from __future__ import annotations

import csv
import json
import math
import random
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

import archkit
from archkit import space
from archkit.cli import main
from archkit.oracle import measure_meta
from archkit.summary import estimate

N = 20_000  # draws per distribution check


def _draws(spec: dict) -> list:
    dist = space.Distribution.model_validate(spec)
    rng = random.Random(1)
    return [dist.draw(rng) for _ in range(N)]


def _ks(counts: Counter, cdf) -> float:
    """The largest gap between the empirical CDF over the support and ``cdf``."""
    total, seen, gap = sum(counts.values()), 0, 0.0
    for v in sorted(counts):
        seen += counts[v]
        gap = max(gap, abs(seen / total - cdf(v)))
    return gap


def test_uniform_is_flat_over_its_closed_lattice() -> None:
    counts = Counter(_draws({"uniform": [12, 28]}))  # pycls' RegNet depth range
    assert sorted(counts) == list(range(12, 29))  # both ends reachable, nothing outside
    assert _ks(counts, lambda v: (v - 11) / 17) < 0.015
    assert all(isinstance(v, int) for v in counts)


def test_log_uniform_is_log_linear_as_pycls_defines_it() -> None:
    # pycls: f = exp(U(log(low - q*), log(high))), q* = min(q, low / 2), then ceil(f / q) * q
    counts = Counter(_draws({"log_uniform": [8, 1024], "quantize": 8}))
    assert sorted(counts) == list(range(8, 1025, 8))
    lo = math.log(8 - 4)
    assert _ks(counts, lambda v: (math.log(v) - lo) / (math.log(1024) - lo)) < 0.015
    depths = Counter(_draws({"log_uniform": [1, 16]}))
    assert sorted(depths) == list(range(1, 17))
    assert _ks(depths, lambda v: (math.log(v) - math.log(0.5)) / (math.log(16) - math.log(0.5))) < 0.015
    floats = _draws({"log_uniform": [2.0, 3.0], "quantize": 0.001})  # w_m: three decimals, in range
    assert min(floats) >= 2.0 and max(floats) <= 3.0 and all(round(v, 3) == v for v in floats)


def test_powers_of_two_and_values_are_drawn_evenly() -> None:
    counts = Counter(_draws({"power2_uniform": [1, 32]}))
    assert sorted(counts) == [1, 2, 4, 8, 16, 32]
    assert max(counts.values()) / min(counts.values()) < 1.1
    mixed = Counter(_draws({"power2_or_log_uniform": [8, 128], "quantize": 8}))  # pycls' group width
    assert min(mixed) >= 8 and max(mixed) <= 128 and all(v % 8 == 0 for v in mixed)
    values = Counter(_draws({"values": [1.0, 0.5, 0.25]}))
    assert sorted(values) == [0.25, 0.5, 1.0] and max(values.values()) / min(values.values()) < 1.1


@pytest.fixture(scope="module")
def anynet() -> space.Result:
    return space.sample(space.load("anynetx_e"), 4, seed=0, jobs=1)


def test_constraints_hold_for_every_sampled_model() -> None:
    for name in ("anynetx_c", "anynetx_d"):
        result = space.sample(space.load(name), 3, seed=1, jobs=1)
        assert len(result.samples) == 3 and result.draws > 3
        assert sum(result.rejected.values()) == result.draws - 3  # every other draw is accounted for
        for s in result.samples:
            assert 360e6 <= s.macs <= 400e6
            b = [s.values[f"stages.{i}.block.bottleneck_multiplier"] for i in range(4)]
            g = [s.values[f"stages.{i}.block.group_width"] for i in range(4)]
            assert len(set(b)) == 1 and len(set(g)) == 1 and b[0] in (1.0, 0.5, 0.25) and g[0] in (1, 2, 4, 8, 16, 32)
            if name == "anynetx_d":
                widths = [s.values[f"stages.{i}.planes"] for i in range(4)]
                assert widths == sorted(widths)


def test_sampled_figures_equal_the_built_model(anynet) -> None:
    """params, MACs and activations of sampled AnyNetX_E models, against the model archkit builds measured
    on the meta device by FlopCounterMode, parameter count and hooks on every conv and linear layer."""
    assert len(anynet.samples) == 4
    for s in anynet.samples:
        depths = [s.values[f"stages.{i}.depth"] for i in range(4)]
        assert depths == sorted(depths)
        spec = archkit.as_spec(space._plain(space.spec_tree(anynet.space, s, anynet.seed)))
        oracle = measure_meta(spec)
        assert (oracle.total_params, oracle.macs, oracle.activations) == (s.params, s.macs, s.activations)


@pytest.mark.slow  # builds torchvision's RegNets (the suite's time budget)
def test_regnet_samples_equal_torchvisions_regnet() -> None:
    """A RegNetX space's models, built by torchvision's own RegNet from the sampled numbers."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.regnet import BlockParams, RegNet

    result = space.sample(space.load("regnetx"), 2, seed=2, jobs=1)
    for s in result.samples:
        numbers = {k.split(".")[1]: v for k, v in s.values.items()}
        reference = RegNet(BlockParams.from_init_params(**numbers)).eval()
        assert sum(p.numel() for p in reference.parameters()) == s.params
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            reference(torch.zeros(1, 3, 224, 224))
        assert counter.get_total_flops() // 2 == s.macs
        assert s.stages == 4 and 360e6 <= s.macs <= 400e6


def test_sampling_is_seeded_and_does_not_depend_on_processes() -> None:
    sp = space.load("anynetx_c")
    one = space.sample(sp, 3, seed=7, jobs=1)
    two = space.sample(sp, 3, seed=7, jobs=2)
    key = [(s.draw, s.values, s.params, s.macs, s.activations) for s in one.samples]
    assert key == [(s.draw, s.values, s.params, s.macs, s.activations) for s in two.samples]
    assert (one.draws, one.rejected) == (two.draws, two.rejected)
    other = space.sample(sp, 3, seed=8, jobs=1)
    assert [s.values for s in other.samples] != [s.values for s in one.samples]


def test_cli_writes_table_json_edfs_and_specs(tmp_path, capsys) -> None:
    out = tmp_path / "specs"
    paths = {k: tmp_path / f"s.{k}" for k in ("csv", "json", "svg")}
    assert main(["sample", "anynetx_c", "regnetx", "-n", "3", "--jobs", "1", "--output", str(out),
                 *[a for k, p in paths.items() for a in (f"--{k}", str(p))]]) == 0
    printed = capsys.readouterr().out
    assert "anynetx_c: 3 models from" in printed and "regnetx: 3 models from" in printed and "median" in printed
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["space"] for r in rows] == ["anynetx_c"] * 3 + ["regnetx"] * 3
    data = json.loads(paths["json"].read_text())
    assert [s["accepted"] for s in data["spaces"]] == [3, 3]
    root = ET.parse(paths["svg"]).getroot()
    panels = root.findall("{http://www.w3.org/2000/svg}g")
    assert [p.get("data-figure") for p in panels] == ["params", "macs", "activations"]
    assert all(len(p.findall("{http://www.w3.org/2000/svg}polyline")) == 2 for p in panels)
    written = sorted(out.glob("*.yaml"))
    assert len(written) == 6
    for path, row in zip(written, rows):  # each spec file is the model of its row: same figures, rebuilt
        spec = archkit.load_spec(path)
        cost = estimate(spec)
        assert (cost.params, cost.macs, cost.acts) == (int(row["params"]), int(row["macs"]), int(row["activations"]))
        assert not spec.weights  # the base's weights are not the sampled model's


def test_bad_space_files_are_one_located_line(tmp_path, capsys) -> None:
    good = (tmp_path / "ok.yaml")
    good.write_text("space: mine\nspec: resnet18\naxes:\n  stages.*.depth: {uniform: [1, 3]}\n")
    cases = {
        "axes:\n  stages.*.depth: {uniform: [1, 3], log_uniform: [1, 3]}\n": (4, "exactly one of"),
        "axes:\n  stages.*.depth: {log_uniform: [0, 3]}\n": (4, "positive low"),
        "axes:\n  stages.*.planes: {uniform: [8, 100], quantize: 8}\n": (4, "multiples of quantize"),
        "axes:\n  stages.*.plnes: {uniform: [8, 16]}\n": (4, "plnes"),
        "axes:\n  depth: {values: [1, 2], shared: true}\n": (4, "shared: applies"),
        "axes:\n  stages.*.depth: {uniform: [1, 3]}\nconstraints: {macs: [2G, 1G]}\n": (5, "above high"),
        "axes:\n  stages.*.depth: {uniform: [1, 3]}\nconstraints: {increasing: [depth]}\n": (5, "increasing"),
        "axes:\n  stages.*.depth: {uniform: [1, 3]}\nconstraints: {stages: [5, 4]}\n": (5, "fewest <= most"),
        "axes:\n  stages.*.depth: {uniform: [1, 3]}\nconstraints: {params: [-1, 4M]}\n": (5, "never negative"),
        "axes:\n  stages.*.depth: {uniform: [.nan, 3]}\n": (4, "finite number"),
        "axes:\n  stages.*.depth: {uniform: [true, 3]}\n": (4, "finite number"),
        "axes:\n  stages.*.depth: {power2_uniform: [1, 8], quantize: 16}\n": (4, "above high"),
        "axes:\n  stages.*.block: {values: [basic]}\n  stages.0.block.attn: {values: [se]}\n": (5, "lies inside"),
        "axes:\n  name: {values: [a, b]}\n": (4, "sample's to write"),
        "axes:\n  stages.*.block.type: {values: [basic, basik]}\n": (4, "basik"),
        "axes:\n  stages.*.planes: {values: [[64], 32]}\n": (4, "expected an integer"),
    }
    for body, (line, words) in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text("space: mine\nspec: resnet18\n" + body)
        assert main(["sample", str(bad), "-n", "2", "--jobs", "1"]) == 2, body
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{bad}:{line}:") and words in err[0], (body, err)
    for body, words in {"spec: missing.yaml\n": "missing.yaml: no such file", "spec: .\n": "is a directory",
                        "spec: {base: missing.yaml}\n": "missing.yaml: no such file"}.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text("space: mine\n" + body + "axes:\n  stages.*.depth: {uniform: [1, 3]}\n")
        assert main(["sample", str(bad), "-n", "2", "--jobs", "1"]) == 2, body
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{bad}:2:") and words in err[0], (body, err)
    for refs, words in {(str(tmp_path),): "is a directory", (str(tmp_path / "no.yaml"),): "no.yaml: no such file",
                        (str(good), str(good)): "'mine': is given twice"}.items():
        assert main(["sample", *refs, "-n", "2", "--jobs", "1"]) == 2
        assert words in capsys.readouterr().err
    assert main(["sample", "anynetx_z"]) == 2
    assert "did you mean 'anynetx_" in capsys.readouterr().err
    assert main(["sample", str(good), "-n", "5", "--max-draws", "3", "--jobs", "1"]) == 2
    assert "only 3 of 5 models met the constraints in 3 draws" in capsys.readouterr().err
    assert main(["sample", str(good), "-n", "2", "--max-draws", "1K", "--jobs", "1"]) == 0  # 1e3, 10K: counts
    assert "mine: 2 models from 2 draws" in capsys.readouterr().out
    assert main(["sample", str(good), "--max-draws", "2.5"]) == 2


def test_outputs_never_overwrite_inputs_or_each_other(tmp_path, capsys) -> None:
    inner = tmp_path / "inner.yaml"
    inner.write_text("base: resnet18\n")
    sp = tmp_path / "sp.yaml"
    sp.write_text("space: mine\nspec: {base: inner.yaml}\naxes:\n  stages.*.depth: {uniform: [1, 3]}\n")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "mine_00001.yaml").symlink_to(inner)
    copy = specs / "mine_00000.yaml"
    copy.write_text(sp.read_text().replace("inner.yaml", "../inner.yaml"))
    cases = [["--csv", str(sp)], ["--json", str(inner)], ["--svg", str(tmp_path / "a.svg"), "--csv",
             str(tmp_path / "a.svg")], ["--csv", str(tmp_path / "d"), "--output", str(tmp_path / "d")],
             ["--output", str(specs)]]
    before = {p: p.read_text() for p in (inner, sp, copy)}
    for extra in cases:
        assert main(["sample", str(sp), "-n", "2", "--jobs", "1", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("also" in err[0] or "would write" in err[0]), (extra, err)
    assert main(["sample", str(copy), "-n", "1", "--jobs", "1", "--output", str(specs)]) == 2
    assert "would write mine_00000.yaml over" in capsys.readouterr().err
    assert {p: p.read_text() for p in (inner, sp, copy)} == before
    assert not (tmp_path / "d").exists() and sorted(p.name for p in specs.iterdir()) == ["mine_00000.yaml",
                                                                                       "mine_00001.yaml"]


def test_degenerate_and_float_ranges() -> None:
    rng = random.Random(0)
    for kind in space.DISTRIBUTIONS:  # low == high: that value (log_normal's exp(log(3.0)) once never ended)
        ends = [4, 4] if kind.startswith("power2") else [4.0, 4.0]  # powers of two need quantize: 1 for ints
        assert space.Distribution.model_validate({kind: ends}).draw(rng) == 4.0
    wide = space.Distribution.model_validate({"uniform": [8.0, 256.0]})  # 25,600,000 steps of 0.00001
    assert all(8.0 <= wide.draw(rng) <= 256.0 for _ in range(100))


def test_huge_max_draws_costs_nothing_up_front() -> None:
    sp = space.load("anynetx_e")
    result = space.sample(sp, 1, seed=0, max_draws=10**15, jobs=1)
    assert len(result.samples) == 1 and result.draws < space.CHUNK


def test_refusals_name_their_field() -> None:
    result = space.sample(space.load("anynetx_a"), 1, seed=0, jobs=1)
    assert any(why.startswith("invalid: stages[N].block: ") for why in result.rejected), result.rejected


def test_edf_steps() -> None:
    from archkit.edf import edf

    assert edf([3, 1, 2, 2]) == [(1, 0.25), (2, 0.75), (3, 1.0)]
    many = edf(list(range(10_000)))
    assert len(many) <= 400 and many[-1] == (9_999, 1.0) and many[0] == (0, 1e-4)


@pytest.mark.slow
def test_twenty_sampled_models_equal_their_built_models() -> None:
    """The EDFs' figures, model by model, against the built models on the meta device (FlopCounterMode,
    parameter count, hooks on convolutions and linear layers)."""
    for name, n in (("anynetx_a", 10), ("regnety", 10)):
        result = space.sample(space.load(name), n, seed=11, jobs=2)
        for s in result.samples:
            spec = archkit.as_spec(space._plain(space.spec_tree(result.space, s, result.seed)))
            oracle = measure_meta(spec)
            assert (oracle.total_params, oracle.macs, oracle.activations) == (s.params, s.macs, s.activations)


@pytest.mark.slow
def test_the_docs_edf_picture_is_what_sample_makes(tmp_path) -> None:
    from pathlib import Path

    picture = Path(__file__).resolve().parents[1] / "docs" / "spaces" / "anynetx_a_e_regnetx.svg"
    assert main(["sample", "anynetx_a", "anynetx_e", "regnetx", "-n", "100", "--svg", str(tmp_path / "e.svg")]) == 0
    assert (tmp_path / "e.svg").read_text() == picture.read_text(), "docs/spaces/anynetx_a_e_regnetx.svg is stale"


def test_anynet_figures_equal_pycls_complexity(anynet) -> None:
    """pycls' own AnyNet complexity (the figures the papers report: flops, params, acts) for the sampled
    AnyNetX models: its flops are archkit's MACs plus the classifier's 1,000 bias additions."""
    from pycls.models.anynet import AnyNet

    checked = 0
    for result in (anynet, space.sample(space.load("anynetx_a"), 3, seed=4, jobs=1)):
        for s in result.samples:
            stage = [{k: s.values[f"stages.{i}.{k}"] for k in
                      ("depth", "planes", "block.bottleneck_multiplier", "block.group_width")} for i in range(4)]
            cx = AnyNet._complexity(
                {"h": 224, "w": 224, "flops": 0, "params": 0, "acts": 0}, stem_type="simple_stem_in", stem_w=32,
                block_type="res_bottleneck_block", ds=[st["depth"] for st in stage], ws=[st["planes"] for st in stage],
                ss=[2, 2, 2, 2], bms=[st["block.bottleneck_multiplier"] for st in stage],
                gws=[st["block.group_width"] for st in stage], se_r=None, nc=1000)
            assert (cx["flops"], cx["params"], cx["acts"]) == (s.macs + 1000, s.params, s.activations)
            checked += 1
    assert checked == 7
