"""The training and deployment API against its references: timm's resnet50 (model API, optimizer
groups, registry), mmdetection's freezing semantics, torch.utils.checkpoint, unfused outputs, torch.hub."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2

import archkit
from archkit.oracle import measure_meta
from archkit.cli import main
from archkit.errors import NothingToFuse
from conftest import ROOT

SMALL = ["input.size=[64, 64]"]


@pytest.fixture(scope="module")
def pair():
    """archkit's and timm's resnet50 with the same (timm's random) weights, in eval mode."""
    torch.manual_seed(0)
    reference = timm.create_model("resnet50").eval()
    model = archkit.build_model("resnet50").eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return model, reference


def test_timm_model_api(pair) -> None:
    model, reference = pair
    x = torch.randn(2, 3, 64, 64)
    assert (model.num_classes, model.num_features) == (reference.num_classes, reference.num_features) == (1000, 2048)
    # the stem's activation before the max pool, then the stages, as timm lists them
    assert model.feature_info.channels() == [f["num_chs"] for f in reference.feature_info]
    assert model.feature_info.reduction() == [f["reduction"] for f in reference.feature_info]
    assert model.spec.name == "resnet50" and isinstance(model, torch.nn.Sequential)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(features, reference.forward_features(x))
        assert torch.equal(model.forward_head(features, pre_logits=True),
                           reference.forward_head(features, pre_logits=True))
        assert torch.equal(model.forward_head(features), model(x))
    assert model.get_classifier() is model.fc


def test_reset_classifier_as_timm() -> None:
    model = archkit.build_model("resnet18")
    model.reset_classifier(10)
    assert model.num_classes == 10 and model.fc.in_features == 512 and "fc.weight" in model.state_dict()
    model.reset_classifier(0)
    assert model.num_classes == 0 and model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 512)
    backbone = archkit.build_model("resnet18", features_only=True)
    with pytest.raises(ValueError, match="features_only backbone has no classifier"):
        backbone.reset_classifier(10)


def _bn_stats(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)
            for t in (m.running_mean, m.running_var)]


def test_frozen_stages_as_mmdetection() -> None:
    model = archkit.build_model(archkit.load_spec("resnet18", [*SMALL, "frozen_stages=2"]))
    model.train()  # mmdetection: frozen stages stay frozen through train()
    frozen = [model.conv1, model.bn1, model.layer1, model.layer2]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert all(not m.training for m in frozen) and model.layer3.training
    before_frozen, before_free = _bn_stats(model.layer2), _bn_stats(model.layer3)
    model(torch.randn(4, 3, 64, 64)).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before_frozen, _bn_stats(model.layer2)))  # bit-identical
    assert not all(torch.equal(a, b) for a, b in zip(before_free, _bn_stats(model.layer3)))
    assert all(p.grad is None for p in model.layer1.parameters())
    from archkit import summary

    table = summary.measure(model.spec)  # the analytic summary counts what the model really trains
    assert table.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert table.trainable_params == measure_meta(model.spec).trainable_params


def test_norm_eval_keeps_every_running_stat() -> None:
    model = archkit.build_model(archkit.load_spec("resnet18", [*SMALL, "norm_eval=true"])).train()
    before = _bn_stats(model)
    model(torch.randn(4, 3, 64, 64)).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model)))
    assert all(p.grad is not None for p in model.parameters())  # still trained, just not the statistics


def test_frozen_stages_beyond_the_stages_is_one_line(capsys) -> None:
    assert main(["build", "resnet18", "--set", "frozen_stages=9"]) == 2
    assert "frozen_stages: 9 is beyond the 4 stages" in capsys.readouterr().err
    with pytest.raises(ValueError, match="frozen_stages must be -1..4"):
        archkit.build_model("resnet18").freeze(7)


@pytest.mark.parametrize("features_only", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(features_only: bool) -> None:
    spec = archkit.load_spec("resnet18", [*SMALL, "seed=1"])
    plain = archkit.build_model(spec, features_only=features_only).train()
    ckpt = archkit.build_model(spec, features_only=features_only).train()
    ckpt.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 64, 64)

    def loss(model):
        out = model(x)
        return sum(o.square().mean() for o in out) if features_only else out.square().mean()

    loss(plain).backward()
    loss(ckpt).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_layer_decay_groups_equal_timms(pair) -> None:
    model, reference = pair

    def signature(net, groups):
        names = {id(p): n for n, p in net.named_parameters()}
        return sorted((names[id(p)], round(g["lr_scale"], 10), g["weight_decay"]) for g in groups for p in g["params"])

    ours = create_optimizer_v2(model, "sgd", lr=0.1, layer_decay=0.75, weight_decay=1e-4)
    theirs = create_optimizer_v2(reference, "sgd", lr=0.1, layer_decay=0.75, weight_decay=1e-4)
    assert len(ours.param_groups) == len(theirs.param_groups) == 36
    assert signature(model, ours.param_groups) == signature(reference, theirs.param_groups)
    assert min(g["lr_scale"] for g in ours.param_groups) == pytest.approx(0.75 ** 17)
    plain = archkit.param_groups(model, lr=0.1, layer_decay=0.75, weight_decay=1e-4)  # without timm
    assert signature(model, plain) == signature(reference, theirs.param_groups)
    assert all(g["lr"] == pytest.approx(0.1 * g["lr_scale"]) for g in plain)


@pytest.mark.parametrize("name", ["resnet50", "resnet50d", *[pytest.param(n, marks=pytest.mark.slow)  # (the suite's
                                                           for n in ("seresnet50", "darknet53")]])  # time budget)
def test_fusion_folds_every_batchnorm_after_a_conv(name: str) -> None:
    model = archkit.build_model(archkit.load_spec(name, [*SMALL, "seed=0"])).eval()
    with torch.no_grad():
        for m in model.modules():  # statistics as after training, so folding changes the weights
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    fused = archkit.fuse(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not fused.training and model.training is False
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, out = model(x), fused(x)
    assert ((out - expected).abs().max() / expected.abs().max()).item() <= 1e-5


def test_fusion_refuses_a_groupnorm_model_and_export_fuses(tmp_path, capsys) -> None:
    gn = archkit.build_model(archkit.load_spec("resnet18", ["norm={type: groupnorm}"]))
    with pytest.raises(NothingToFuse, match="it uses GroupNorm"):
        archkit.fuse(gn)
    out = tmp_path / "m.ts"
    assert main(["export", "resnet18", "--format", "torchscript", "--fuse", "--input-size", "64",
                 "--output", str(out)]) == 0
    assert "BatchNorm" not in str(torch.jit.load(str(out)).graph)
    assert main(["export", "resnet18", "--set", "norm={type: groupnorm}", "--format", "torchscript", "--fuse",
                 "--output", str(tmp_path / "g.ts")]) == 2
    assert "nothing to fuse" in capsys.readouterr().err


def test_timm_create_model_builds_archkit_models() -> None:
    import archkit.timm  # noqa: F401 - registers archkit_<name>

    assert "archkit_resnet50" in timm.list_models("archkit_*")
    model = timm.create_model("archkit_resnet50", num_classes=10, in_chans=1, drop_path_rate=0.1).eval()
    assert isinstance(model, archkit.model.ArchkitNet)
    theirs = timm.create_model("resnet50", num_classes=10, in_chans=1, drop_path_rate=0.1).eval()  # timm's own
    model.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), theirs(x))
    assert model.fc.out_features == 10
    assert [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"] == \
        [m.drop_prob for m in theirs.modules() if type(m).__name__ == "DropPath"]


def test_torch_hub_loads_from_a_clone() -> None:
    model = torch.hub.load(str(ROOT), "resnet50", source="local", num_classes=10, trust_repo=True)
    assert isinstance(model, archkit.model.ArchkitNet) and model.num_classes == 10
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert all(callable(getattr(hubconf, name)) for name in archkit.list_models())
