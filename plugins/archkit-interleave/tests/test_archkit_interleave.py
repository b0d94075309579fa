"""archkit-interleave, found through its installed entry point in the archkit.stages group."""

from __future__ import annotations

import torch

import archkit
from archkit import summary
from archkit.catalog import STAGES
from archkit.oracle import measure_meta

SPEC = "resnext_interleaved50"  # shipped by the plugin through the archkit.specs entry point


def test_discovered_through_the_entry_point() -> None:
    entry = STAGES.get("interleave")
    assert entry.origin == "archkit-interleave 0.1.0" and entry.qualified == "archkit_interleave:interleave"


def test_every_second_block_is_the_alternate() -> None:
    model = archkit.build_model(SPEC, device="meta")
    kinds = [type(b).__name__ for b in model.layer3]
    assert kinds == ["Bottleneck", "ResNeXtBottleneck"] * 3
    assert type(model.layer3[1].se).__name__ == "SEModule" and model.layer3[0].se is None
    assert model.layer3[1].conv2.groups == 32 and model.layer3[0].conv2.groups == 1


def test_costs_are_described_and_equal_a_meta_forward() -> None:
    spec = archkit.load_spec(SPEC, ["input.size=[64, 64]"])
    ours, oracle = summary.measure(spec, depth=2), measure_meta(spec, depth=2)
    assert [(r.name, r.type, r.params, r.macs) for r in ours.rows] == \
        [(r.name, r.type, r.params, r.macs) for r in oracle.rows]
    model = archkit.build_model(spec)
    model(torch.randn(2, 3, 64, 64)).sum().backward()


def test_a_bad_alternate_is_located(write=None) -> None:
    import pytest

    from archkit.errors import SpecError

    with pytest.raises(SpecError) as info:
        archkit.load_spec(SPEC, ["stage.alternate.cardinalty=8"])
    (problem,) = info.value.problems
    assert "stages[0].alternate.cardinalty" in str(problem) and "did you mean 'cardinality'?" in str(problem)
