"""RegNet generated from its design-space numbers, against torchvision's RegNets: parameters, MACs
(its published figures and FlopCounterMode on its own model), and members made by changing numbers only."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import archkit
from archkit.oracle import measure_meta
from archkit import summary
from archkit.cli import main

# torchvision's own definitions (models/regnet.py); the third and fourth are reached with --set only
MEMBERS = {
    "regnet_x_400mf": dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),
    "regnet_y_400mf": dict(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25),
    "regnet_x_800mf": dict(depth=16, w_0=56, w_a=35.73, w_m=2.28, group_width=16),
    "regnet_y_800mf": dict(depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16, se_ratio=0.25),
}


def _spec(name: str):
    if name in ("regnet_x_400mf", "regnet_y_400mf"):
        return archkit.load_spec(name)
    numbers = ", ".join(f"{k}: {v}" for k, v in MEMBERS[name].items())
    return archkit.load_spec("regnet_x_400mf", [f"regnet={{{numbers}}}", f"name={name}"])


@pytest.mark.parametrize("name", list(MEMBERS))
def test_regnet_matches_torchvision(name: str) -> None:
    reference = getattr(torchvision.models, name)().eval()
    spec = _spec(name)
    ours = summary.measure(spec)
    assert ours.total_params == sum(p.numel() for p in reference.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        reference(torch.randn(1, 3, 224, 224))
    assert 2 * ours.macs == counter.get_total_flops()
    assert measure_meta(spec).macs == ours.macs  # the analytic figures, checked on meta too
    weights = {"regnet_x_400mf": torchvision.models.RegNet_X_400MF_Weights,
               "regnet_y_400mf": torchvision.models.RegNet_Y_400MF_Weights}.get(name)
    if weights is not None:  # torchvision's published GMACs
        assert round(ours.macs / 1e9, 3) == weights.IMAGENET1K_V1.meta["_ops"]


def test_regnet_runs_and_trains() -> None:
    model = archkit.build_model(archkit.load_spec("regnet_y_400mf", ["input.size=[64, 64]", "head.2.features=7"]))
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_regnet_numbers_are_one_line(capsys) -> None:
    for override, fragment in (("regnet.w_m=1", "regnet.w_m: must be > 1"), ("regnet.dpth=3", "did you mean 'depth'")):
        assert main(["build", "regnet_x_400mf", "--set", override]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and fragment in err
