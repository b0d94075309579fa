"""archkit-simam, found through its installed entry point in the archkit.attention group."""

from __future__ import annotations

import torch

import archkit
from archkit.catalog import ATTENTION

SPEC = "simam_resnet50"  # shipped by the plugin through the archkit.specs entry point


def test_discovered_through_the_entry_point() -> None:
    entry = ATTENTION.get("simam")
    assert entry.origin == "archkit-simam 0.2.0" and entry.qualified == "archkit_simam:simam"


def test_simam_matches_the_papers_formula() -> None:
    # Yang et al. 2021, Eq. 5 and the authors' code: t = x - mean; e = t^2 / (4 (sum t^2 / n + lambda)) + 0.5
    x = torch.randn(2, 4, 5, 6)
    module = ATTENTION.get("simam").obj(e_lambda=1e-4).build(4)
    t = x - x.mean(dim=(2, 3), keepdim=True)
    e = t.pow(2) / (4 * (t.pow(2).sum(dim=(2, 3), keepdim=True) / (5 * 6 - 1) + 1e-4)) + 0.5
    torch.testing.assert_close(module(x), x * torch.sigmoid(e))


def test_spec_adds_no_parameters_and_places_the_module() -> None:
    model = archkit.build_model(SPEC, device="meta")
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision resnet50's count
    assert type(model.layer3[5].se).__name__ == "SimAMModule"


def test_blocks_carry_it_at_every_position() -> None:
    model = archkit.build_model(SPEC).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    attn = [{"type": "simam", "position": p} for p in ("mid", "pre_add", "post_add")]
    model = archkit.create_model("resnet50", **{"block.attn": attn, "input.size": [64, 64]}).eval()
    block = model.layer2[0]
    assert [type(getattr(block, slot)).__name__ for slot in ("attn", "se", "attn_out")] == ["SimAMModule"] * 3
    with torch.inference_mode():
        assert torch.isfinite(model(torch.randn(1, 3, 64, 64))).all()


def test_its_declared_cost_is_what_a_meta_forward_counts() -> None:
    from archkit import summary
    from archkit.oracle import measure_meta

    spec = archkit.load_spec(SPEC, ["input.size=[64, 64]"])
    ours, oracle = summary.measure(spec, depth=2), measure_meta(spec, depth=2)
    assert [(r.name, r.params, r.macs) for r in ours.rows] == [(r.name, r.params, r.macs) for r in oracle.rows]
