"""archkit-hgnet, found through its installed entry points: the ten PP-HGNet(V2) models of timm 1.0.31's
``hgnet.py`` rebuilt exactly (keys in order, shapes, parameters, MACs, strict loads, equal outputs), and
the family used as any archkit family is (list, torch-free summary, weights, features, layer decay)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg
from torch.utils.flop_counter import FlopCounterMode

import archkit
from archkit import summary, weights
from archkit.catalog import BLOCKS, LAYERS, STAGES
from archkit.cli import main

NAMES = sorted(timm.list_models(module="hgnet"))
SAMPLED = ["hgnet_tiny", "hgnetv2_b0", "hgnetv2_b4"]  # V1 (ESE), V2 with and without learnable affines


def test_every_hgnet_model_of_timm_is_a_spec_of_the_plugin() -> None:
    assert len(NAMES) == 10
    assert all(name in archkit.list_models("hg*") for name in NAMES)
    for entry in (BLOCKS.get("hg_block"), STAGES.get("hg"), LAYERS.get("hg_stem"), LAYERS.get("lab")):
        assert entry.origin == "archkit-hgnet 0.1.0"


def test_archkit_itself_holds_no_line_about_hgnet() -> None:
    package = Path(archkit.__file__).parent
    assert not [p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".txt")
                and "hgnet" in p.read_text(errors="ignore").lower()]


def _macs(model: torch.nn.Module, size: list[int]) -> int:
    with FlopCounterMode(display=False) as flops:
        model.eval()(torch.empty(1, 3, *size, device="meta"))
    return flops.get_total_flops() // 2


@pytest.mark.parametrize("name", NAMES)
def test_structure_and_macs_equal_timm(name: str) -> None:
    spec = archkit.load_spec(name)
    ours = archkit.build_model(spec, device="meta")
    theirs = timm.create_model(name, device="meta")
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    counted = summary.measure(spec)
    assert counted.total_params == sum(p.numel() for p in theirs.parameters())
    assert counted.macs == _macs(theirs, spec.input.size)


def _trained(name: str) -> torch.nn.Module:
    """timm's model, seeded, with norm statistics and affines away from a fresh model's."""
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
            if type(module).__name__ == "LearnableAffineBlock":
                module.scale.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in SAMPLED else [pytest.mark.slow]) for n in NAMES])
def test_timms_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    theirs = _trained(name)
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.forward_features(x), theirs.forward_features(x), rtol=1e-5, atol=1e-5)


def test_timms_default_weights_are_declared() -> None:
    for name in NAMES:
        cfg = get_pretrained_cfg(name).to_dict()
        spec = archkit.load_spec(name)
        (tag, entry), = spec.weights.items()
        assert tag == cfg["tag"] and entry.url == f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors"
        assert (entry.meta.crop_pct, entry.meta.interpolation, entry.meta.license) == \
            (cfg["crop_pct"], cfg["interpolation"], cfg["license"])
        assert entry.meta.mean == pytest.approx(list(cfg["mean"]), abs=1e-3)
        source = weights.resolve(tag, spec)  # what create_model(name, pretrained=True) fetches
        assert source.url == entry.url


def test_features_equal_timms() -> None:
    theirs = _trained("hgnetv2_b0")
    ours = archkit.create_model("hgnetv2_b0", features_only=True, out_indices=[1, 2, 3, 4]).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if not k.startswith("head.")}, strict=True)
    info = timm.create_model("hgnetv2_b0", features_only=True).feature_info
    assert [d["num_chs"] for d in ours.feature_info] == info.channels()
    assert [d["reduction"] for d in ours.feature_info] == info.reduction()
    assert [d["module"] for d in ours.feature_info] == [f"stages.{i}" for i in range(4)]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs.forward_intermediates(x, intermediates_only=True)):
            torch.testing.assert_close(a, b)


def test_layer_decay_groups_equal_timms() -> None:
    from timm.optim._param_groups import param_groups_layer_decay

    ours = archkit.create_model("hgnetv2_b0")
    theirs = timm.create_model("hgnetv2_b0")

    def groups(model: torch.nn.Module) -> list:
        names = {id(p): n for n, p in model.named_parameters()}
        found = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75)
        return sorted((round(g["lr_scale"], 6), sorted(names[id(p)] for p in g["params"])) for g in found)

    assert groups(ours) == groups(theirs)


def test_the_summary_needs_no_torch(tmp_path) -> None:
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch blocked')\n")
    result = subprocess.run([sys.executable, "-m", "archkit", "build", "hgnetv2_b0", "--summary"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Total params:         5,996,550" in result.stdout  # timm's hgnetv2_b0


def test_a_variant_in_yaml_loads_its_parents_weights(tmp_path, capsys) -> None:
    """hgnetv2_b0 with a fifth stage block and no learnable affines: a transfer plan from b0's weights."""
    path = tmp_path / "mine.yaml"
    path.write_text("base: hgnetv2_b0\nname: mine\nblock: {lab: false}\nhead:\n"
                    "  - {name: global_pool, type: adaptive_avgpool}\n"
                    "  - {name: last_conv, type: sequential, layers: [{type: conv, channels: 2048, kernel_size: 1}, "
                    "{type: act}]}\n  - {name: flatten, type: flatten}\n  - {name: fc, type: linear, features: 10}\n")
    parent = tmp_path / "b0.safetensors"
    import safetensors.torch

    safetensors.torch.save_file(_trained("hgnetv2_b0").state_dict(), str(parent))
    code = main(["build", str(path), "--weights", str(parent)])  # affines unused, the classifier resized
    out = capsys.readouterr().out
    assert code == 0 and "fc.weight" in out and "classifier: 1000 -> 10 classes" in out, out
