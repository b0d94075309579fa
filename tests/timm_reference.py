"""The check every timm-derived zoo test shares: a packaged spec against timm's model of the same name."""

from __future__ import annotations

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import archkit
from archkit import summary


def flops_macs(model: torch.nn.Module, size: list[int]) -> int:
    """Multiply-accumulates of one forward at ``size`` (FlopCounterMode counts two FLOPs per MAC)."""
    model.eval()  # batch 1 through a norm on pooled features (resnet50_mlp's head) needs eval mode
    with FlopCounterMode(display=False) as flops:
        model(torch.empty(1, 3, *size, device=next(model.parameters()).device))
    return flops.get_total_flops() // 2


def assert_structure_and_macs_equal_timm(name: str) -> None:
    """state_dict keys and shapes in order, parameter count and MACs (FlopCounterMode), on the meta device."""
    spec = archkit.load_spec(name)
    ours = archkit.build_model(spec, device="meta")
    theirs = timm.create_model(name, device="meta")
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    counted = summary.measure(spec)
    assert counted.total_params == sum(p.numel() for p in theirs.parameters())
    assert counted.macs == flops_macs(theirs, spec.input.size)


def trained(name: str, *, scales: bool = False, **kwargs) -> torch.nn.Module:
    """timm's model (seeded) with norm statistics away from a fresh model's (a fresh model's would make
    every fusion and every norm trivial); ``scales``: the norms' own parameters too (EvoNorm's included).
    RepVGG keeps its scales: scales far from 1 make the 47 blocks of repvgg_d2se chaotic in float32 (its
    train form alone then differs from its float64 self by 100%)."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
            if scales and type(m).__name__.startswith(("BatchNorm", "EvoNorm")):
                for p in m.parameters():
                    p.uniform_(0.5, 1.5)
    return model


def assert_outputs_equal_after_strict_load(name: str, *, move_parameters: bool = False) -> None:
    """timm's model (``trained``; ``move_parameters``: every parameter moved off its start too, for scales that
    start at 1e-6 or 0) loads strictly into the packaged spec's model, and eval outputs are bit-equal."""
    theirs = trained(name)
    if move_parameters:
        with torch.no_grad():
            for p in theirs.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def assert_features_equal(name: str, output_strides=(32, 16, 8), *, theirs_taps: tuple | None = None,
                          ours_taps: list | None = None, skip: tuple = ("head.", "fc."),
                          compare_names: slice = slice(None)) -> None:
    """features_only at each output stride: the classifier's weights (``skip`` left out) load into archkit's
    backbone, timm's backbone is built from the same seed; module names (``compare_names`` of them), reductions
    and every map equal."""
    for output_stride in output_strides:
        torch.manual_seed(0)
        full = timm.create_model(name, output_stride=output_stride).eval()
        taps = ours_taps if ours_taps is not None else list(range(len(full.feature_info)))
        torch.manual_seed(0)
        theirs = timm.create_model(name, features_only=True, output_stride=output_stride,
                                   out_indices=theirs_taps if theirs_taps is not None else tuple(taps)).eval()
        ours = archkit.create_model(name, features_only=True, output_stride=output_stride, out_indices=taps).eval()
        ours.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith(skip)}, strict=True)
        assert ours.feature_info.module_name()[compare_names] == theirs.feature_info.module_name()[compare_names]
        assert ours.feature_info.reduction() == theirs.feature_info.reduction()
        x = torch.randn(1, 3, 48, 48)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True)), output_stride


def assert_weights_declared_as_timms(names: list[str]) -> list[str]:
    """Each spec declares timm's default pretrained weights (a GitHub release file by its hash, else timm's Hugging
    Face file, trusted on first download) with timm's preprocessing; the untrained ones (returned) declare none."""
    import re

    from timm.models import get_pretrained_cfg

    untrained = []
    for name in names:
        cfg = get_pretrained_cfg(name).to_dict()
        spec = archkit.load_spec(name)
        if cfg["tag"] == "untrained":
            untrained.append(name)
            assert not spec.weights, name
            continue
        (tag, entry), = spec.weights.items()
        assert tag == cfg["tag"] and entry.meta.num_classes == cfg["num_classes"], name
        release = re.search(r"-([0-9a-f]{8})\.pth$", cfg.get("url") or "")
        if release and "github.com" in cfg["url"]:
            assert (entry.url, entry.sha256) == (cfg["url"], release[1]), name
        else:  # pycls', torchvision's, SEER's and Meta's files are converted by timm: its Hugging Face copy
            assert entry.url == f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors", name
            assert entry.sha256 is None
        assert (entry.meta.crop_pct, entry.meta.interpolation, entry.meta.license) == \
            (cfg["crop_pct"], cfg["interpolation"], cfg["license"]), name
        assert entry.meta.input_size == list(cfg["input_size"][1:]) == spec.input.size, name
        assert (tuple(entry.meta.mean), tuple(entry.meta.std)) == (cfg["mean"], cfg["std"]), name
    return untrained


def assert_layer_decay_equal(name: str) -> None:
    """archkit's layer-wise decay groups give the same learning-rate scales as timm's own tooling."""
    from timm.optim._param_groups import param_groups_layer_decay

    ours = archkit.param_groups(archkit.create_model(name, device="meta"), lr=1.0, layer_decay=0.75)
    theirs = param_groups_layer_decay(timm.create_model(name, device="meta"), layer_decay=0.75)
    assert sorted(round(g["lr"], 9) for g in ours) == sorted(round(g["lr_scale"], 9) for g in theirs)
