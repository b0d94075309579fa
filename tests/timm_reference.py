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
