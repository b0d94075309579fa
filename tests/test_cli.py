"""The real CLI, in-process through main(argv) and once as a subprocess of the installed script."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import jsonschema
import pytest
import torch
import yaml

import archkit
from archkit.cli import main
from archkit.catalog import ATTENTION, BLOCKS, LAYERS, STAGES
from conftest import SHIPPED, SPECS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_of_resnet50_states_torchvision_figures(capsys) -> None:
    code, out, err = run(capsys, "build", str(SPECS / "resnet50.yaml"), "--summary")
    assert code == 0, err
    assert "Total params:         25,557,032" in out
    assert "4.089 G" in out and "MACs" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    for name in ("conv1", "layer1", "layer4", "fc"):
        assert any(line.startswith(name) for line in out.splitlines())


def test_summary_depth_two_lists_blocks(capsys) -> None:
    code, out, _ = run(capsys, "build", str(SPECS / "resnet18.yaml"), "--summary", "--depth", "2")
    lines = out.splitlines()
    after = lines[next(i for i, line in enumerate(lines) if line.startswith("layer4 ")) + 1:]
    assert code == 0 and after[1].startswith("  1 ") and "BasicBlock" in after[1]  # layer4.1, under layer4
    assert all(len(line) <= 80 for line in out.splitlines())


def test_json_summary_parses_with_documented_keys(capsys) -> None:
    code, out, _ = run(capsys, "build", str(SPECS / "resnet50.yaml"), "--json", "--batch-size", "4",
                       "--input-size", "160")
    assert code == 0
    data = json.loads(out)
    assert {"schema_version", "name", "input_shape", "output_shape", "batch_size", "total_params",
            "trainable_params", "macs", "param_bytes", "activation_bytes", "dtype", "layers"} <= set(data)
    assert data["total_params"] == 25_557_032 and data["input_shape"] == [4, 3, 160, 160]
    assert data["output_shape"] == [4, 1000] and data["param_bytes"] == 4 * 25_557_032
    assert sum(row["macs"] for row in data["layers"]) == data["macs"]
    assert data["layers"][0] == {"name": "conv1", "type": "Conv2d", "depth": 1,
                                 "output_shape": [4, 64, 80, 80], "params": 9408, "macs": 4 * 64 * 80 * 80 * 147}


def test_validate_every_shipped_spec(capsys) -> None:
    code, out, err = run(capsys, "validate", *map(str, SHIPPED))
    assert code == 0, err
    assert out.count("OK ") == len(SHIPPED)


def test_validate_reports_each_bad_spec_and_fails(capsys, write) -> None:
    bad = write(f"base: {SPECS / 'resnet50.yaml'}\nname: bad\nstages:\n  - {{planes: 64, depth: 0}}\n")
    code, out, err = run(capsys, "validate", str(SPECS / "resnet18.yaml"), str(bad))
    assert code == 2
    assert "OK " in out and err.strip() == f"{bad}:4:18: stages[0].depth: must be >= 1 (got 0)"


def test_blocks_lists_every_type_and_describes_one(capsys) -> None:
    code, out, _ = run(capsys, "blocks")
    assert code == 0
    table = out.split("\n\n")[0]
    names = {line.split()[0] for line in table.splitlines()[1:]}
    assert {n for reg in (BLOCKS, LAYERS, ATTENTION, STAGES) for n, _ in reg.listing()} == names
    assert set(BLOCKS.names()) >= {"basic", "bottleneck", "resnext", "wide_bottleneck", "wide_basic", "darknet",
                                   "preact_bottleneck"}
    assert {"se", "eca", "cbam", "gc"} <= set(ATTENTION.names())
    assert "projection, avg_down, zero_pad, none, identity" in out
    code, out, _ = run(capsys, "blocks", "resnext")
    assert code == 0 and "cardinality: int = 32" in out and ">=1" in out and "expansion: 4" in out
    assert "shortcut kinds: projection, avg_down, zero_pad, none, identity (default projection)" in out
    code, out, _ = run(capsys, "blocks", "darknet")
    assert "shortcut kinds: stage_conv" in out and "attention positions: mid, pre_add, post_add" in out
    code, out, _ = run(capsys, "blocks", "eca")
    assert code == 0 and "gamma: float = 2.0" in out and "position: mid | pre_add | post_add = 'pre_add'" in out
    code, _, err = run(capsys, "blocks", "resnxt")
    assert code == 2 and "did you mean 'resnext'" in err


def test_schema_validates_every_shipped_spec_and_rejects_a_broken_one(capsys) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SHIPPED:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, errors[0].message)
    blocks = json.dumps(schema)
    assert all(f'"const": "{name}"' in blocks for name in BLOCKS.names())
    broken = yaml.safe_load((SPECS / "resnet50.yaml").read_text())
    broken["stages"][0]["depth"] = 0
    assert list(validator.iter_errors(broken))
    broken = yaml.safe_load((SPECS / "resnet50.yaml").read_text())
    broken["block"] = {"type": "bottleneck", "grups": 2}
    assert list(validator.iter_errors(broken))


def test_bad_spec_gives_one_line_and_exit_2(capsys, write) -> None:
    code, out, err = run(capsys, "build", str(SPECS / "resnet50.yaml"), "--set", "stages.1.deptth=2")
    assert code == 2 and out == ""
    assert err.strip() == ("--set stages.1.deptth=2: stages[1].deptth: unknown field 'deptth'; did you mean "
                           "'depth'? (choose from: block, blocks, depth, depth_multiplier, dilate, name, pattern, planes, stride, type)")
    code, _, err = run(capsys, "build", str(SPECS / "resnet50.yaml"), "--set", "nokey")
    assert code == 2 and "expects KEY=VALUE" in err and "Traceback" not in err
    code, _, err = run(capsys, "build", "does-not-exist.yaml")
    assert code == 2 and err.strip() == "does-not-exist.yaml: no such file"


def test_usage_errors_exit_2(capsys) -> None:
    assert run(capsys, "build")[0] == 2
    assert run(capsys, "build", str(SPECS / "resnet18.yaml"), "--depth", "0")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "--version")[0] == 0


def test_size_guard_refuses_before_materializing(capsys, tmp_path, monkeypatch) -> None:
    out = tmp_path / "m.pt"
    code, _, err = run(capsys, "build", str(SPECS / "resnet18.yaml"), "--output", str(out), "--max-params", "1000")
    assert code == 2 and "11,689,512 parameters, above the limit of 1,000" in err and not out.exists()
    monkeypatch.setenv("ARCHKIT_MAX_PARAMS", "1000")
    assert run(capsys, "build", str(SPECS / "resnet18.yaml"), "--output", str(out))[0] == 2


def test_checkpoint_round_trip_gives_identical_outputs(capsys, tmp_path) -> None:
    path = tmp_path / "r18.pt"
    code, out, err = run(capsys, "build", str(SPECS / "resnet18.yaml"), "--set", "head.2.features=7",
                         "--seed", "5", "--output", str(path))
    assert code == 0, err
    model = archkit.load_checkpoint(path).eval()
    again = archkit.build_model(archkit.load_spec(SPECS / "resnet18.yaml", ["head.2.features=7", "seed=5"])).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert model(x).shape == (2, 7)
        assert torch.equal(model(x), again(x))  # same seed, same weights, and the checkpoint kept them
    stored = torch.load(path, weights_only=True)
    assert stored["spec"]["head"][2]["features"] == 7 and stored["torch_version"] == torch.__version__


def test_truncated_or_foreign_checkpoint_gives_a_clear_error(tmp_path) -> None:
    path = tmp_path / "m.pt"
    model = archkit.build_model(SPECS / "resnet18.yaml")
    archkit.save_checkpoint(model, SPECS / "resnet18.yaml", path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(archkit.CheckpointError, match="truncated or corrupted"):
        archkit.load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(archkit.CheckpointError, match="not an archkit checkpoint"):
        archkit.load_checkpoint(path)


def test_checkpoint_whose_weights_do_not_fit_names_the_keys(tmp_path) -> None:
    path = tmp_path / "m.pt"
    archkit.save_checkpoint(archkit.build_model(SPECS / "resnet18.yaml"), SPECS / "resnet18.yaml", path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc.weight"] = torch.zeros(3, 3)
    del payload["state_dict"]["conv1.weight"]
    torch.save(payload, path)
    with pytest.raises(archkit.CheckpointError, match=r"missing: conv1.weight; shape mismatch: fc.weight \[3, 3\]"):
        archkit.load_checkpoint(path)


def test_installed_console_script_runs(tmp_path) -> None:
    exe = Path(sys.executable).parent / "archkit"  # pip puts console scripts beside the interpreter
    assert exe.is_file(), "the archkit console script is installed by pip install"
    proc = subprocess.run([exe, "build", str(SPECS / "resnet18.yaml"), "--summary"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "11,689,512" in proc.stdout and "1.814 G" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: 3\n")
    proc = subprocess.run([sys.executable, "-m", "archkit", "build", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"{bad}:2:1: stages: expected a list (got 3)"


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.pt"
    model = archkit.build_model(SPECS / "resnet18.yaml")
    archkit.save_checkpoint(model, SPECS / "resnet18.yaml", path)
    before = path.read_bytes()

    def dies_halfway(obj, fh, *args, **kwargs):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        archkit.save_checkpoint(model, SPECS / "resnet18.yaml", path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_summary_shapes_match_a_real_forward_and_flop_counter(capsys) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from archkit import summary

    spec = archkit.load_spec(SPECS / "resnet18.yaml", ["norm={type: groupnorm, groups: 32}", "input.size=[64, 48]"])
    measured = summary.measure(spec, batch_size=2, depth=2)
    model = archkit.build_model(spec).eval()
    shapes = {}
    for name, module in model.named_modules():
        if name and name.count(".") <= 1:
            module.register_forward_hook(lambda m, a, out, name=name: shapes.__setitem__(name, list(out.shape)))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(2, 3, 64, 48))
    assert {r.name: r.output_shape for r in measured.rows} == shapes
    assert 2 * measured.macs == counter.get_total_flops()


def test_ten_billion_parameter_summary_never_materializes(capsys) -> None:
    code, out, _ = run(capsys, "build", str(SPECS / "resnet152_x13.yaml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_params"] == 9_824_529_448  # 39 GB of float32 that nobody allocated


@pytest.mark.parametrize("name", ["resnet18", "resnet152", "darknet53", "wrn28_10"])
def test_draw_writes_an_svg_naming_every_stage(capsys, tmp_path, name: str) -> None:
    import xml.etree.ElementTree as ET

    path = tmp_path / "m.svg"
    assert run(capsys, "draw", str(SPECS / f"{name}.yaml"), "--output", str(path))[0] == 0
    root = ET.parse(path).getroot()
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    spec = archkit.load_spec(SPECS / f"{name}.yaml")
    for i, stage in enumerate(spec.stages):
        assert (f"layer{i + 1}" if spec.layout == "torchvision" else f"stages.{i}") in texts
        assert any(f"{stage.block.type} \u00d7{stage.depth}" in t for t in texts)
    assert any(f"{sum(p.numel() for p in archkit.build_model(spec, device='meta').parameters()):,} parameters" in t
               for t in texts)


def test_unwritable_outputs_give_one_line_before_any_work(capsys, tmp_path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    for argv in (["build", str(SPECS / "resnet18.yaml"), "--output", str(missing / "m.pt")],
                 ["schema", "--output", str(missing / "s.json")],
                 ["draw", str(SPECS / "resnet18.yaml"), "--output", str(missing / "m.svg")],
                 ["export", "resnet18", "--format", "onnx", "--output", str(missing / "m.onnx")]):
        code, _, err = run(capsys, *argv)
        # a destination that cannot work is bad input: exit 2, said before building anything
        assert code == 2 and len(err.strip().splitlines()) == 1 and f"directory {missing} does not exist" in err, err
    assert not list(tmp_path.rglob("*.tmp"))


def test_blocks_describes_every_registered_name(capsys) -> None:
    """`archkit blocks NAME` for every block, layer, attention and stage type (stage types crashed once)."""
    from archkit.catalog import REGISTRIES

    for registry in REGISTRIES:
        for name in registry.names():
            code, out, err = run(capsys, "blocks", name)
            assert code == 0 and out.startswith(f"{name} (") and not err, (name, err)
