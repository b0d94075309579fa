"""Issue 32, "a family is data": what used to be one family's habit in code is now read from the plan or
declared by the type, and holds for every family (timm's as the reference)."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.optim._param_groups import param_groups_layer_decay

import archkit

FAMILIES = ["resnet50d", "cspresnet50", "cspdarknet53", "cs3darknet_s", "darknet53", "repvgg_a0",
            "gcresnet50t"]


def _scales(model: torch.nn.Module, groups: list[dict]) -> dict[str, float]:
    """Each parameter's learning-rate scale."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: round(g["lr_scale"], 6) for g in groups for p in g["params"]}


@pytest.mark.parametrize("name", FAMILIES)
def test_layer_decay_groups_equal_timms_in_every_family(name: str) -> None:
    """group_matcher comes from the plan's module paths: a stage's own modules join its first block (before
    the blocks) or its last (after: CSP's transitions), as timm's stages do; the same numbers without timm."""
    ours, theirs = archkit.create_model(name, device="meta"), timm.create_model(name, device="meta")
    expected = _scales(theirs, param_groups_layer_decay(theirs, weight_decay=0.0, layer_decay=0.75))
    assert _scales(ours, param_groups_layer_decay(ours, weight_decay=0.0, layer_decay=0.75)) == expected
    assert _scales(ours, archkit.param_groups(ours, lr=1.0, layer_decay=0.75)) == expected  # without timm
