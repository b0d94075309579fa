"""Every model of timm's ``cspnet.py`` (CSPNet, DarkNet, CS3) as a packaged spec, generated from timm's
registry: stage types (dark, csp, cs3), timm's module layout and ConvNormAct units. The same
state_dict keys and shapes in order, parameter counts and MACs; timm's weights load strictly and the
eval outputs are equal (models over 30 M parameters, and the output-stride features of all but one model
per stage type, under ``-m slow``)."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg

import archkit
from archkit import summary
from archkit.cli import main
from timm_reference import assert_structure_and_macs_equal_timm

NAMES = timm.list_models(module="cspnet")
LARGE = {"cs3darknet_focus_x", "cs3darknet_x", "cs3edgenet_x", "cs3se_edgenet_x", "cs3sedarknet_x", "darknet53",
         "darknetaa53"}  # over 30 M parameters: forwards under -m slow (checked below)


def test_every_timm_cspnet_model_is_a_packaged_spec() -> None:
    assert len(NAMES) == 23  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))
    assert {n for n in NAMES if summary.measure(archkit.load_spec(n)).total_params > 30_000_000} == LARGE


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in LARGE else []) for n in NAMES])
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in LARGE else []) for n in NAMES])
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    torch.manual_seed(0)
    theirs = timm.create_model(name).eval()
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("name", ["cspdarknet53", "cspresnet50", "cs3darknet_m"])
def test_features_only_equals_timms(name: str) -> None:
    """Every feature map of timm's features_only (the stem tap, then each stage), weights from the same seed."""
    torch.manual_seed(0)
    full = timm.create_model(name).eval()
    taps = list(range(len(full.feature_info)))
    torch.manual_seed(0)
    theirs = timm.create_model(name, features_only=True, out_indices=tuple(taps)).eval()
    ours = archkit.create_model(name, features_only=True, out_indices=taps).eval()
    ours.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("head.")}, strict=True)
    assert ours.feature_info.module_name() == theirs.feature_info.module_name()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True))


def test_timm_weights_are_declared_where_timm_has_them() -> None:
    declared = 0
    for name in NAMES:
        cfg = get_pretrained_cfg(name).to_dict()
        spec = archkit.load_spec(name)
        if cfg.get("tag") == "untrained":
            assert not spec.weights, name
            continue
        (tag, entry), = spec.weights.items()
        assert tag == cfg["tag"] and entry.format == "timm"
        assert entry.meta.input_size == list(cfg["input_size"][1:]) and entry.meta.crop_pct == cfg["crop_pct"]
        assert entry.meta.interpolation == cfg["interpolation"]
        if cfg.get("url"):
            assert entry.url == cfg["url"] and entry.sha256 == re.search(r"-([0-9a-f]{8})\.pth$", cfg["url"])[1]
        else:  # a hub-only file: no published hash, trusted on first download
            assert entry.url == f"https://huggingface.co/timm/{name}.{tag}/resolve/main/model.safetensors"
            assert entry.sha256 is None
        declared += 1
    assert declared == 15


def test_stage_types_show_in_diff_and_draw(tmp_path, capsys) -> None:
    assert main(["diff", "darknet53", "cspdarknet53"]) == 1
    out = capsys.readouterr().out
    assert "stage: dark -> csp(expand_ratio=2.0, down_growth=True)" in out
    assert main(["draw", "cspresnet50", "--output", str(tmp_path / "c.svg")]) == 0
    svg = (tmp_path / "c.svg").read_text()
    assert "csp: conv_down \u2192 conv_exp \u2192 split \u2192 [csp_bottle \u00d73] \u2192 conv_transition_b" in svg


def test_a_csp_variant_no_library_ships_is_a_few_lines(write) -> None:
    """CSPResNeXt-50 with SE in its bottlenecks and cs3 stages: timm has no such model; it builds, trains and
    its analytic summary equals a meta-device forward."""
    from archkit.oracle import measure_meta

    path = write("base: cspresnext50\nname: cs3seresnext50\nstage: {type: cs3}\n"
                 "block: {attn: [{type: se, position: mid, act: spec, rd_ratio: 0.25}]}\ninput: {size: [64, 64]}\n")
    spec = archkit.load_spec(path)
    assert [r.params for r in summary.measure(spec, depth=3).rows] == [r.params for r in measure_meta(spec, depth=3).rows]
    model = archkit.build_model(spec)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert type(model.stages[1]).__name__ == "CrossStage3" and type(model.stages[1].blocks[0].attn2).__name__ == "SEModule"


OUTPUT_STRIDE_DEFAULT = {"cspresnet50d", "darknet17", "cs3darknet_focus_s"}  # csp, dark, cs3


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in OUTPUT_STRIDE_DEFAULT else [pytest.mark.slow])
                                  for n in NAMES])
def test_features_at_output_stride_8_and_16_equal_timms(name: str) -> None:
    for output_stride in (16, 8):
        torch.manual_seed(0)
        full = timm.create_model(name, output_stride=output_stride).eval()
        taps = list(range(len(full.feature_info)))
        torch.manual_seed(0)
        theirs = timm.create_model(name, features_only=True, output_stride=output_stride, out_indices=tuple(taps))
        ours = archkit.create_model(name, features_only=True, output_stride=output_stride, out_indices=taps).eval()
        ours.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("head.")}, strict=True)
        assert ours.feature_info.reduction() == theirs.feature_info.reduction()
        x = torch.randn(1, 3, 48, 48)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs.eval()(x), strict=True)), output_stride
