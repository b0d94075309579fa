"""timm's ``byobnet.py`` re-parameterizable models (RepVGG, MobileOne: 16 of its 53) as packaged specs,
generated from timm's registry: the same state_dict keys and shapes in order, parameter counts and MACs;
timm's weights load strictly and eval outputs are equal; ``archkit.reparameterize`` equals timm's
``reparameterize_model`` (parameter count, outputs), and ``deploy: true`` specs load timm's
re-parameterized weights strictly and give its outputs. A few models of each form run by default (the
suite's time budget), every model under ``-m slow``."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg
from timm.utils.model import reparameterize_model

import archkit
from archkit import summary
from archkit.cli import main
from timm_reference import assert_structure_and_macs_equal_timm, flops_macs, trained

NAMES = [n for n in timm.list_models(module="byobnet") if n.startswith(("repvgg", "mobileone"))]  # the others:
# tests/test_timm_byob_blocks.py
LARGE = {"repvgg_b1", "repvgg_b1g4", "repvgg_b2", "repvgg_b2g4", "repvgg_b3", "repvgg_b3g4",
         "repvgg_d2se"}  # over 30 M parameters: forwards under -m slow (checked below)
# the figures: timm's parameter counts before and after reparameterize_model
DEPLOY = {"repvgg_a0": (9_108_968, 8_309_384), "mobileone_s0": (5_293_272, 2_078_504),
          "repvgg_b1g4": (39_966_056, 36_125_416)}


FORWARD_BY_DEFAULT = {"repvgg_a0", "mobileone_s1"}  # one per form; the rest under -m slow


def _slow(names, default=None):
    fast = (lambda n: n not in LARGE) if default is None else (lambda n: n in default)
    return [pytest.param(n, marks=[] if fast(n) else [pytest.mark.slow]) for n in names]


def test_every_rep_model_of_timm_is_a_packaged_spec() -> None:
    assert len(NAMES) == 16  # timm 1.0.31: 11 RepVGG, 5 MobileOne
    assert not sorted(set(NAMES) - set(archkit.list_models()))
    assert {n for n in NAMES if summary.measure(archkit.load_spec(n)).total_params > 30_000_000} == LARGE


@pytest.mark.parametrize("name", _slow(NAMES, {"repvgg_a0", "mobileone_s1"}))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


def _trained(name: str, **kwargs) -> torch.nn.Module:
    return trained(name, **kwargs)


@pytest.mark.parametrize("name", _slow(NAMES, FORWARD_BY_DEFAULT))
def test_weights_load_outputs_equal_and_reparameterize_equals_timms(name: str) -> None:
    theirs = _trained(name)
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = theirs(x)
        assert torch.equal(ours(x), reference)
        fused_theirs = reparameterize_model(theirs)
        fused_ours = archkit.reparameterize(ours)
        out = fused_ours(x)
        assert torch.equal(out, fused_theirs(x))  # same arithmetic, same order
        assert (out - reference).abs().max() <= 1e-5 * reference.abs().max()  # the deploy form computes the same
    assert sum(p.numel() for p in fused_ours.parameters()) == sum(p.numel() for p in fused_theirs.parameters())
    assert fused_ours.spec.deploy and not ours.spec.deploy  # a new model; the trained one is unchanged
    if name in DEPLOY:
        assert (sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in fused_ours.parameters())) == DEPLOY[name]
    deploy = archkit.create_model(name, deploy=True).eval()  # the deploy spec loads timm's fused weights
    deploy.load_state_dict(fused_theirs.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(deploy(x), fused_theirs(x))


@pytest.mark.parametrize("name", _slow(["repvgg_a0", "mobileone_s0", "repvgg_d2se"], {"repvgg_a0"}))
def test_the_deploy_summary_is_the_deployed_models_cost(name: str) -> None:
    spec = archkit.as_spec(name, values={"deploy": True})
    fused = reparameterize_model(timm.create_model(name).eval()).to("meta")  # timm fuses on a real device
    counted = summary.measure(spec)
    assert counted.total_params == sum(p.numel() for p in fused.parameters())
    assert counted.macs == flops_macs(fused, spec.input.size)


def test_features_only_and_its_deploy_form() -> None:
    """Every feature map of timm's features_only, then the same backbone re-parameterized."""
    taps = [0, 1, 2, 3, 4]
    theirs = _trained("mobileone_s0", features_only=True, out_indices=tuple(taps))
    ours = archkit.create_model("mobileone_s0", features_only=True, out_indices=taps).eval()
    # timm's FeatureListNet names the stages stages_N; the modules are the classifier's
    ours.load_state_dict({k.replace("stages_", "stages."): v for k, v in theirs.state_dict().items()}, strict=True)
    assert ours.feature_info.module_name()[:4] == theirs.feature_info.module_name()[:4]  # then timm's final_conv
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        assert all(torch.equal(a, b) for a, b in zip(ours(x), expected, strict=True))
        fused = archkit.reparameterize(ours)
        assert fused.feature_info.module_name() == ours.feature_info.module_name()
        for a, b in zip(fused(x), expected, strict=True):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_export_reparameterizes_and_refuses_what_has_nothing_to_fuse(tmp_path, capsys) -> None:
    assert main(["export", "mobileone_s1", "--reparameterize", "--format", "torchscript",
                 "--output", str(tmp_path / "m.pt")]) == 0
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    assert not any("conv_kxk" in k for k in scripted.state_dict()) and any("reparam_conv" in k for k in scripted.state_dict())
    assert main(["export", "resnet18", "--reparameterize", "--format", "onnx", "--output", str(tmp_path / "r.onnx")]) == 2
    assert "no re-parameterizable blocks" in capsys.readouterr().err
    assert not (tmp_path / "r.onnx").exists()


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    for name in NAMES:
        cfg = get_pretrained_cfg(name).to_dict()
        (tag, entry), = archkit.load_spec(name).weights.items()
        assert tag == cfg["tag"] and entry.url == f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors"
        assert entry.sha256 is None  # hub-only files: trusted on first download, as the ResNet zoo's
        assert (entry.meta.crop_pct, entry.meta.interpolation, entry.meta.license) == \
            (cfg["crop_pct"], cfg["interpolation"], cfg["license"])
        assert entry.meta.input_size == list(cfg["input_size"][1:])


def test_rep_blocks_and_stems_refuse_what_they_cannot_build(capsys) -> None:
    cases = [(["--set", "stages.0.block.kernel_size=4"], "kernel_size: must be odd (got 4)"),
             (["--set", "stages.1.type=resnet", "--set", "stages.1.pattern=[{depthwise: true}, {kernel_size: 1}]"],
              "a depthwise block keeps its 48 channels"),
             (["--set", "stages.0.block.shortcut=projection"], "accept shortcut kinds none"),
             (["--set", "norm={type: groupnorm, groups: 8}"], "the groupnorm norm cannot be folded (use batchnorm)"),
             (["--set", "stages.0.block.attn=[{type: se, position: mid}]"], "offer attention positions post_add")]
    for extra, fragment in cases:
        base = "mobileone_s0" if "type=resnet" in " ".join(extra) else "repvgg_a0"
        assert main(["validate", base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)


@pytest.mark.parametrize("name, stride", [("repvgg_a0", 8), pytest.param("repvgg_b1g4", 16, marks=pytest.mark.slow)])
def test_output_stride_features_equal_timms(name: str, stride: int) -> None:
    """Dilated RepVGG stages as timm's (dilated kxk, undilated 1x1, no identity where the dilation changes)."""
    theirs = _trained(name, features_only=True, output_stride=stride)
    ours = archkit.create_model(name, features_only=True, output_stride=stride, out_indices=[0, 1, 2, 3, 4]).eval()
    ours.load_state_dict({k.replace("stages_", "stages."): v for k, v in theirs.state_dict().items()}, strict=True)
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True))


def test_mobileone_refuses_dilation_timm_would_drop(capsys) -> None:
    assert main(["validate", "mobileone_s0", "--set", "output_stride=16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("stages[3]: one blocks cannot dilate (stage 4 needs dilation 2)"), err


def test_weights_meet_the_form_they_were_trained_in(tmp_path, capsys) -> None:
    """in_chans adapts both convs reading the input (timm's first_conv tuple); train-form weights are refused
    by a deploy-form spec instead of leaving its fused convs random."""
    theirs = _trained("repvgg_a0")
    torch.save(theirs.state_dict(), tmp_path / "a0.pth")
    gray = archkit.create_model("repvgg_a0", in_chans=1, weights=str(tmp_path / "a0.pth"))
    adapted = {i.key for i in gray.transfer_plan.of("adapted")}
    assert adapted == {"stem.conv_kxk.conv.weight", "stem.conv_1x1.conv.weight"}
    assert main(["build", "repvgg_a0", "--set", "deploy=true", "--weights", str(tmp_path / "a0.pth")]) == 2
    err = capsys.readouterr().err
    assert "train-form weights (conv_kxk branches) for a deploy-form spec (22 fused convs" in err


def test_fine_tuned_models_deploy_in_their_own_dtype_and_head() -> None:
    model = archkit.create_model("mobileone_s0").double().eval()
    model.reset_classifier(7)
    deployed = archkit.reparameterize(model)
    assert deployed.num_classes == 7 and deployed.head.fc.weight.dtype == torch.float64
    assert torch.equal(deployed.head.fc.weight, model.head.fc.weight)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert (deployed(x) - model(x)).abs().max() <= 1e-12 * model(x).abs().max()


def test_layer_decay_groups_blocks_as_timms_byobnet() -> None:
    from timm.optim._param_groups import param_groups_layer_decay

    ours = {g["lr"] for g in archkit.param_groups(archkit.create_model("repvgg_a0"), lr=1.0, layer_decay=0.75)}
    theirs = {g["lr_scale"] for g in param_groups_layer_decay(timm.create_model("repvgg_a0"), layer_decay=0.75)}
    assert len(ours) == len(theirs) == 23
