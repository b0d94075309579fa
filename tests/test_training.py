"""examples/train.py end to end: one process, and DDP over 2 processes with torchrun and gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, SPECS

SCRIPT = ROOT / "examples" / "train.py"


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow  # a training process; the training API runs in-process in test_model_api.py
def test_single_process_training_saves_and_reloads(tmp_path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(SPECS / "resnet18.yaml"), "--epochs", "2",
                           "--samples", "128", "--output", str(tmp_path / "ck"), "--report", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "outputs identical = True" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["epoch1.pt", "epoch2.pt"]
    losses = json.loads((tmp_path / "r" / "rank0.json").read_text())["losses"]
    assert losses[-1] < losses[0]


@pytest.mark.slow  # two processes, gloo
def test_ddp_on_two_processes_keeps_ranks_identical_and_learns(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(SCRIPT),
                           str(SPECS / "resnet18.yaml"), "--epochs", "2", "--samples", "128",
                           "--output", str(tmp_path / "ck"), "--report", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = [json.loads((tmp_path / "r" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["checksum"] == reports[1]["checksum"]  # DDP kept the replicas in sync
    for report in reports:
        assert report["losses"][-1] < report["losses"][0]


@pytest.mark.slow  # a training process with every flag, then the backbone example
def test_training_flags_and_the_backbone_example(tmp_path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(SPECS / "resnet18.yaml"), "--epochs", "2", "--samples",
                           "128", "--output", str(tmp_path / "ck"), "--report", str(tmp_path / "r"),
                           "--frozen-stages", "1", "--drop-path", "0.1", "--layer-decay", "0.75",
                           "--grad-checkpointing"], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = json.loads((tmp_path / "r" / "rank0.json").read_text())["losses"]
    assert losses[-1] < losses[0]
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "finetune_backbone.py"), "resnet18", "--steps", "15",
                           "--width", "0.25"], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    frozen = int(proc.stdout.split(" backbone parameters frozen")[0].replace(",", ""))
    assert frozen > 0
    steps = [float(line.split("loss ")[1]) for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert steps[-1] < steps[0]


@pytest.mark.slow  # a process loading a full resnet18
def test_the_backbone_example_starts_from_a_real_checkpoint(tmp_path) -> None:
    """--weights with a torchvision resnet18 state_dict: the example's network is the spec's own."""
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "finetune_backbone.py"), "resnet18", "--steps", "2",
                           "--size", "32", "--weights", str(tmp_path / "r18.pt")], capture_output=True, text=True,
                          timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split(" backbone parameters frozen")[0].replace(",", "")) == 9_408 + 128 + 147_968 + 525_568
