"""Nothing lost, nothing run, nothing hung: outputs, checkpoints, plugins and odd input, tried as an
attacker and as a careless user would, mostly through the real CLI."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

import archkit
from archkit import plugins
from archkit.cli import main
from archkit.errors import CheckpointError
from conftest import SPECS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archkit", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


# --- outputs ---------------------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_stays_a_device(tmp_path, capsys) -> None:
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    code, _, err = run(capsys, "schema", "--output", str(node))
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_a_link_to_stdout_is_written_through(tmp_path) -> None:
    link = tmp_path / "out.json"
    link.symlink_to("/proc/self/fd/1")
    proc = cli("schema", "--output", str(link))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["title"] == "archkit spec" and link.is_symlink()


def test_a_symlinked_target_keeps_the_link_and_mode(tmp_path, capsys) -> None:
    real = tmp_path / "real.pt"
    real.write_text("old")
    os.chmod(real, 0o600)
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    code, _, err = run(capsys, "build", "resnet18", "--output", str(link))
    assert code == 0, err
    assert link.is_symlink() and stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert archkit.load_checkpoint(link) is not None


def test_full_disk_is_one_line(capsys) -> None:
    for argv in (("schema", "--output", "/dev/full"), ("build", "resnet18", "--output", "/dev/full")):
        code, _, err = run(capsys, *argv)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "no space left on device" in err, err


def test_output_may_not_overwrite_an_input(tmp_path, capsys) -> None:
    spec = tmp_path / "r18.yaml"
    spec.write_text((SPECS / "resnet18.yaml").read_text().replace("base: resnet50.yaml", "base: resnet50"))
    before = spec.read_bytes()
    code, _, err = run(capsys, "build", str(spec), "--output", str(spec))
    assert code == 2 and "is also an input of this command" in err
    assert spec.read_bytes() == before


def test_concurrent_saves_to_one_path_never_corrupt_it(tmp_path) -> None:
    path = tmp_path / "m.pt"
    specs = [archkit.load_spec("resnet18", [f"seed={i}", "input.size=[32, 32]"]) for i in range(4)]
    models = [archkit.build_model(s) for s in specs]
    threads = [threading.Thread(target=archkit.save_checkpoint, args=(m, s, path)) for m, s in zip(models, specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = archkit.load_checkpoint(path).state_dict()["conv1.weight"]
    assert any(torch.equal(loaded, m.conv1.weight) for m in models)  # one whole save, not a mix
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left


@pytest.mark.slow  # processes saving a 127 M-parameter model
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_save_killed_by_a_signal_leaves_nothing(tmp_path, sig, code) -> None:
    out = tmp_path / "big.pt"
    proc = cli("build", "wide_resnet101_2", "--output", str(out), cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".big.pt.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the save finished before the signal arrived")
    assert proc.returncode == code, err
    assert list(tmp_path.iterdir()) == [], "neither the target nor a temp file may remain"
    assert "Traceback" not in err


# --- checkpoints -----------------------------------------------------------------------------------

def _archkit_payload(spec: dict, state: dict | None = None) -> dict:
    return {"format": "archkit-checkpoint", "format_version": 1, "spec": spec,
            "state_dict": state or {"conv1.weight": torch.zeros(1)}}


def test_a_tiny_checkpoint_cannot_ask_for_billions_of_parameters(tmp_path) -> None:
    spec = archkit.load_spec("resnet50", ["stages.3.planes=200000"]).model_dump(mode="json")
    path = tmp_path / "huge.pt"
    torch.save(_archkit_payload(spec), path)
    assert path.stat().st_size < 10_000
    with pytest.raises(CheckpointError, match="parameters, above the limit"):
        archkit.load_checkpoint(path)


def test_shared_lists_in_a_stored_spec_are_bounded(tmp_path) -> None:
    layer = {"type": "identity"}
    row = [layer] * 1000
    spec = {"name": "bomb", "stem": row, "head": row, "stages": [{"planes": 8, "depth": 1}] * 200}
    path = tmp_path / "shared.pt"
    torch.save(_archkit_payload({**spec, "x": [row] * 200}), path)
    with pytest.raises(CheckpointError, match="larger or deeper than any spec may be"):
        archkit.load_checkpoint(path)


def test_a_compressed_archive_is_refused(tmp_path) -> None:
    path = tmp_path / "zip.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * 10_000_000)
    with pytest.raises(CheckpointError, match="compressed archive"):
        archkit.load_checkpoint(path)


def test_keys_are_checked_before_anything_is_allocated(tmp_path, monkeypatch) -> None:
    from archkit import checkpoint

    devices = []  # every model the loader builds, by device: only meta skeletons before the check
    build = checkpoint.builder.build
    monkeypatch.setattr(checkpoint.builder, "build", lambda spec, device=None: devices.append(str(device)) or
                        build(spec, device=device))
    spec = archkit.load_spec("wide_resnet101_2").model_dump(mode="json")  # 127 M parameters
    path = tmp_path / "wrong.pt"
    torch.save(_archkit_payload(spec, {"conv1.weight": torch.zeros(1)}), path)
    with pytest.raises(CheckpointError, match="weights do not fit the spec; missing: .*shape mismatch: conv1.weight"):
        archkit.load_checkpoint(path)
    assert devices == ["meta"]


def test_weights_trained_for_another_function_are_refused(tmp_path, capsys) -> None:
    saved = tmp_path / "leaky.pt"
    assert main(["build", "resnet18", "--set", "activation={type: leaky_relu}", "--set", "stages.1.stride=1",
                 "--output", str(saved)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "export", "resnet18", "--format", "torchscript", "--output",
                       str(tmp_path / "m.ts"), "--weights", str(saved))
    assert code == 2 and "differs from this one in activation, stage strides" in err
    assert not (tmp_path / "m.ts").exists()


def test_pickled_code_is_refused_without_torchs_advice(tmp_path, capsys) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump(_archkit_payload({"name": "x"}, {"conv1.weight": Evil()}), fh)
    code, out, err = run(capsys, "build", "resnet18", "--weights", str(path))
    assert code == 2 and "would run code (it imports posix.system" in err and "weights_only" not in err
    with pytest.raises(CheckpointError, match="would run code"):
        archkit.load_checkpoint(path)


@pytest.mark.parametrize("where", ["base", "weights"])
def test_a_fifo_never_blocks(tmp_path, capsys, where: str) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    if where == "base":
        spec = tmp_path / "s.yaml"
        spec.write_text(f"base: {fifo}\nname: x\n")
        argv = ["build", str(spec)]
    else:
        argv = ["build", "resnet18", "--weights", str(fifo)]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "not a regular file" in err


def test_a_checkpoint_given_as_a_spec_points_to_weights(tmp_path, capsys) -> None:
    path = tmp_path / "m.pt"
    assert main(["build", "resnet18", "--output", str(path)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "build", str(path))
    assert code == 2 and "not a spec: pass it with --weights FILE" in err


# --- plugins ---------------------------------------------------------------------------------------

class _Dist:
    def __init__(self, name: str):
        self.name, self.version, self.metadata = name, "1.0", {"Name": name}


@pytest.fixture(autouse=True)
def _restore_plugins():
    yield
    plugins.set_enabled(None)


def _install_ep(monkeypatch, name: str, value: str) -> None:
    ep = EntryPoint(name=name, value=value, group=plugins.BLOCK_GROUP)
    ep = ep._for(_Dist("hostile-dist")) if hasattr(ep, "_for") else ep
    monkeypatch.setattr(plugins, "_entry_points", lambda group: [ep] if group == plugins.BLOCK_GROUP else [])
    plugins.set_enabled(True)


def test_a_plugin_calling_sys_exit_cannot_end_the_run(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(EntryPoint, "load", lambda self: sys.exit(0))
    _install_ep(monkeypatch, "exiting", "hostile_plugin:Block")
    out = tmp_path / "m.pt"
    code, _, err = run(capsys, "build", "resnet18", "--output", str(out))
    assert code == 0 and out.exists()
    assert archkit.catalog.BLOCKS.broken[0].error.startswith("SystemExit")


def test_a_printing_plugin_keeps_json_clean(monkeypatch, capsys) -> None:
    from archkit.modules import BasicBlock

    class Chatty(BasicBlock):
        """Prints when imported."""

    monkeypatch.setattr(EntryPoint, "load", lambda self: (print("hello from a plugin"), Chatty)[1])
    _install_ep(monkeypatch, "chatty", "hostile_plugin:Chatty")
    code, out, err = run(capsys, "build", "resnet18", "--set", "block.type=chatty", "--json")  # loaded when used
    assert code == 0 and json.loads(out)["total_params"] == 11_689_512
    assert "hello from a plugin" in err


def test_a_plugin_that_hangs_at_import_is_cut_off(monkeypatch, capsys) -> None:
    def forever(self):  # noqa: ANN001
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(EntryPoint, "load", forever)
    monkeypatch.setenv(plugins.TIMEOUT_ENV, "0.5")
    _install_ep(monkeypatch, "hang", "hostile_plugin:Block")
    code, _, _ = run(capsys, "validate", "resnet18")
    assert code == 0
    assert "took longer than 0.5 s" in archkit.catalog.BLOCKS.broken[0].error


def test_traceback_shows_the_plugins_own_frame(capsys) -> None:
    from archkit.modules import BasicBlock

    class Fragile(BasicBlock):
        """Fails when built."""

        def __init__(self, *args, **kwargs):
            raise ValueError("fragile_plugin_frame_marker")

    archkit.register_block("fragile_test", Fragile)
    try:
        code, _, err = run(capsys, "build", "resnet18", "--set", "block.type=fragile_test", "--output", "/dev/null",
                           "--traceback")
        assert code == 2 and "fragile_plugin_frame_marker" in err and "in __init__" in err
    finally:
        archkit.catalog.BLOCKS.unregister("fragile_test")


# --- odd input -------------------------------------------------------------------------------------

def test_validate_reports_every_file(tmp_path, capsys) -> None:
    bad = tmp_path / "nul.yaml"
    bad.write_bytes(b"name: x\x00\n")
    code, out, err = run(capsys, "validate", str(bad), "resnet18", str(tmp_path / "missing.yaml"))
    assert code == 2 and "OK resnet18" in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "control character U+0000" in lines[0] and "no such file" in lines[1]


def test_odd_set_paths_are_one_line(capsys) -> None:
    for path, fragment in (("stages.\u00b9.depth=3", "use an index 0..3"),
                           (".".join(["a"] * 3000) + "=1", "specs nest at most 64 deep")):
        code, _, err = run(capsys, "build", "resnet18", "--set", path)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err and len(err) < 400, err


def test_limits_hold_for_the_whole_base_chain(tmp_path, monkeypatch) -> None:
    """Every file under the limit, the chain over it (the limit lowered 100x to keep the test quick)."""
    from archkit import loader

    monkeypatch.setattr(loader, "MAX_NODES", loader.MAX_NODES // 100)
    previous = None
    for i in range(20):
        path = tmp_path / f"s{i}.yaml"
        keys = "\n".join(f"k{i}_{j}: {j}" for j in range(60))
        path.write_text((f"base: {previous}\n" if previous else "") + f"name: s{i}\n{keys}\n")
        previous = path
    with pytest.raises(archkit.SpecError, match="more than 1,000 values"):
        archkit.load_spec(previous)


def test_yaml_merge_keys_may_be_overridden(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("base: resnet50\nname: m\nstages:\n  - &s {planes: 64, depth: 2}\n"
                    "  - {<<: *s, planes: 128, stride: 2}\n")
    spec = archkit.load_spec(path)
    assert [(s.planes, s.depth, s.stride) for s in spec.stages] == [(64, 2, 1), (128, 2, 2)]


def test_mistyped_flags_get_a_suggestion(capsys) -> None:
    code, _, err = run(capsys, "build", "resnet18", "--sumary")
    assert code == 2 and "did you mean --summary?" in err


def test_macs_use_the_right_prefix(capsys) -> None:
    _, out, _ = run(capsys, "build", "cifar_resnet56", "--summary")
    assert "MACs (multiply-adds): 125.486 M (125,485,696)" in out
    _, out, _ = run(capsys, "build", "resnet152_x13", "--summary")
    assert "1.916 T" in out
