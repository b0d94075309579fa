"""timm's ``convnext.py`` (ConvNeXt V1 atto..xxlarge with its _ols/_rms/_hnf/_mlp variants, V2, the test models:
31) as packaged specs with the ``convnext`` block and stage: state_dict keys and shapes in order (the block's own
``gamma`` included), parameter counts and MACs equal timm 1.0.31's; timm's weights load strictly and eval
outputs are equal; features equal timm's; timm's weights declared. A few models by default (one of each form:
1x1-conv MLP, channels-last Linear MLP, V2's GRN, overlapping stem, RMS / Simple norms), every one under
``-m slow``."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg

import archkit
from archkit.cli import main
from timm_reference import assert_structure_and_macs_equal_timm, trained

NAMES = timm.list_models(module="convnext")
DEFAULT = {"convnext_atto", "test_convnext", "convnextv2_atto"}  # 1x1 MLP; Linear MLP; GRN (the rest: -m slow)
HUGE = {"convnext_xxlarge", "convnextv2_huge"}  # 846 M and 660 M parameters: compared on the meta device only


def _marked(names, default=DEFAULT):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_timms_convnexts_are_packaged_specs() -> None:
    assert len(NAMES) == 31  # timm 1.0.31
    assert not sorted(set(NAMES) - set(archkit.list_models()))


@pytest.mark.parametrize("name", _marked(NAMES))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


@pytest.mark.parametrize("name", _marked([n for n in NAMES if n not in HUGE]))
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    theirs = trained(name)
    with torch.no_grad():  # layer scales and GRN start at 1e-6 and 0: move every parameter off its start
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("name", _marked(["convnext_atto", "convnext_tiny_hnf", "convnextv2_tiny", "convnext_tiny"],
                                         {"convnext_atto"}))
def test_features_at_output_stride_32_16_and_8_equal_timms(name: str) -> None:
    """timm's ConvNeXt taps the stages only (its out_indices 0..3 are archkit's 1..4: archkit's 0 is the stem);
    a dilated stage downsamples at stride 1, its conv padded 'same' (static where it can be, as timm's)."""
    for output_stride in (32, 16, 8):
        torch.manual_seed(0)
        full = timm.create_model(name, output_stride=output_stride).eval()
        torch.manual_seed(0)
        theirs = timm.create_model(name, features_only=True, output_stride=output_stride, out_indices=(0, 1, 2, 3))
        ours = archkit.create_model(name, features_only=True, output_stride=output_stride, out_indices=[1, 2, 3, 4])
        ours.load_state_dict({k: v for k, v in full.state_dict().items()
                              if not k.startswith(("head.", "norm_pre."))}, strict=True)
        assert ours.feature_info.module_name() == theirs.feature_info.module_name()
        assert ours.feature_info.reduction() == theirs.feature_info.reduction()
        x = torch.randn(1, 3, 48, 48)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(ours.eval()(x), theirs.eval()(x), strict=True)), output_stride
    assert archkit.create_model(name, device="meta").num_features == full.num_features


def test_layer_decay_groups_parameters_as_timms_convnext() -> None:
    from timm.optim._param_groups import param_groups_layer_decay

    def scales(groups, key):
        return sorted(round(g[key], 9) for g in groups)

    ours = archkit.param_groups(archkit.create_model("convnext_atto", device="meta"), lr=1.0, layer_decay=0.75)
    theirs = param_groups_layer_decay(timm.create_model("convnext_atto", device="meta"), layer_decay=0.75)
    assert scales(ours, "lr") == scales(theirs, "lr_scale")


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    untrained = []
    for name in NAMES:
        cfg = get_pretrained_cfg(name).to_dict()
        spec = archkit.load_spec(name)
        if cfg["tag"] == "untrained":
            untrained.append(name)
            assert not spec.weights
            continue
        (tag, entry), = spec.weights.items()
        assert tag == cfg["tag"] and entry.meta.num_classes == cfg["num_classes"], name
        release = re.search(r"-([0-9a-f]{8})\.pth$", cfg.get("url") or "")
        if release and "github.com" in cfg["url"]:
            assert (entry.url, entry.sha256) == (cfg["url"], release[1]), name
        else:
            assert entry.url == f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors", name
            assert entry.sha256 is None
        assert (entry.meta.crop_pct, entry.meta.interpolation, entry.meta.license) == \
            (cfg["crop_pct"], cfg["interpolation"], cfg["license"]), name
        assert entry.meta.input_size == list(cfg["input_size"][1:]) == spec.input.size, name
        assert (tuple(entry.meta.mean), tuple(entry.meta.std)) == (cfg["mean"], cfg["std"]), name
    assert untrained == ["convnext_atto_rms", "convnextv2_small"]


def test_bad_convnext_settings_are_one_located_line(capsys) -> None:
    cases = [(["--set", "block.kernel_size=4"], "kernel_size must be odd"),
             (["--set", "block.mlp_ratio=0"], "block.mlp_ratio"),
             (["--set", "norm={type: rmsnorm2d}"], "the spec's norm must be layernorm2d"),
             (["--set", "stages.1.downsample_kernel_size=0"], "downsample_kernel_size"),
             (["--set", "block.attn=[{type: se}]"], "attention")]
    for extra, fragment in cases:
        assert main(["validate", "convnext_tiny", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)


def test_a_variant_of_our_own_loads_its_parents_weights(tmp_path) -> None:
    """examples/convnext_tiny_grn.yaml: V1 with V2's GRN; every tensor of convnext_tiny copies, the 36 GRN tensors
    start at zero, where GRN is the identity, so the variant computes its parent's outputs."""
    theirs = trained("convnext_tiny")
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    ours = archkit.create_model("examples/convnext_tiny_grn.yaml", weights=str(tmp_path / "w.pth")).eval()
    plan = ours.transfer_plan
    assert len(plan.of("copied")) == len(theirs.state_dict()) and not plan.of("unused") and not plan.of("mismatch")
    assert {i.key.rsplit(".", 2)[1:] == ["grn", i.key.rsplit(".", 1)[1]] for i in plan.of("reinit")} == {True}
    assert len(plan.of("reinit")) == 2 * 18  # weight and bias of each block's GRN
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
