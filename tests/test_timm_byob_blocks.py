"""timm's ``byobnet.py`` beyond RepVGG and MobileOne (37 of its 53 models): GENet, ResNet-Q, the *ts
ResNe(X)ts with SE / ECA / global context / BAT attention, RegNetZ (with EvoNorm-S0a), CLIP's ResNets
(attention pooling, the ``_gap`` heads, the MLP head) and ``test_byobnet``, as packaged specs: state_dict
keys and shapes in order, parameter counts and MACs (FlopCounterMode) equal timm's; timm's weights load
strictly and eval outputs are equal. The new layers (attention pooling, BAT, EvoNorm-S0a) are also checked
against timm's modules directly, at sizes their models do not use. A representative few run by default
(the suite's time budget), every model under ``-m slow``."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg

import archkit
from archkit import summary
from archkit.cli import main
from archkit.oracle import measure_meta
from timm_reference import assert_structure_and_macs_equal_timm, trained

ALL = timm.list_models(module="byobnet")
NAMES = [n for n in ALL if not n.startswith(("repvgg", "mobileone"))]
STRUCTURE_BY_DEFAULT = {"test_byobnet", "regnetz_b16", "resnet50_clip", "resnet61q", "gernet_s"}
FORWARD_BY_DEFAULT = {"test_byobnet", "gernet_s", "regnetz_b16_evos"}
SIZE = {"bat_resnext26ts": 256}  # BAT needs maps in multiples of its block size 8 (timm's too)


def _marked(names, default):
    return [pytest.param(n, marks=[] if n in default else [pytest.mark.slow]) for n in names]


def test_every_model_of_timms_byobnet_is_a_packaged_spec() -> None:
    assert len(ALL) == 53 and len(NAMES) == 37  # timm 1.0.31
    assert sorted(set(ALL) - set(archkit.list_models())) == []


@pytest.mark.parametrize("name", _marked(NAMES, STRUCTURE_BY_DEFAULT))
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


def _trained(name: str, **kwargs) -> torch.nn.Module:
    return trained(name, scales=True, **kwargs)


@pytest.mark.parametrize("name", _marked(NAMES, FORWARD_BY_DEFAULT))
def test_weights_load_and_outputs_equal_timms(name: str) -> None:
    theirs = _trained(name)
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, SIZE.get(name, 64), SIZE.get(name, 64))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_timm_weights_are_declared_as_timm_has_them() -> None:
    """51 of 53 byobnet models have default weights in timm; the two untrained ones declare none."""
    untrained = []
    for name in NAMES:
        cfg = get_pretrained_cfg(name).to_dict()
        declared = archkit.load_spec(name).weights
        if cfg["tag"] == "untrained":
            untrained.append(name)
            assert not declared
            continue
        (tag, entry), = declared.items()
        assert tag == cfg["tag"] and entry.meta.num_classes == cfg["num_classes"]
        if cfg.get("url"):  # a GitHub release file whose name carries its hash's first 8 hex digits
            assert entry.url == cfg["url"] and cfg["url"].endswith(f"-{entry.sha256}.pth")
        else:
            assert entry.url == f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/model.safetensors"
            assert entry.sha256 is None
        assert (entry.meta.crop_pct, entry.meta.interpolation, entry.meta.license) == \
            (cfg["crop_pct"], cfg["interpolation"], cfg["license"])
        assert entry.meta.input_size == list(cfg["input_size"][1:]) == archkit.load_spec(name).input.size
        assert tuple(entry.meta.mean) == cfg["mean"]
    assert untrained == ["regnetz_b16_evos", "resnet50_mlp"]


@pytest.mark.parametrize("name", _marked(["resnet50_clip", "regnetz_b16_evos", "bat_resnext26ts"],
                                         {"resnet50_clip", "regnetz_b16_evos"}))
def test_the_summary_equals_the_meta_forward(name: str) -> None:
    """Rows, parameters, MACs and the activation estimate of the new layer types (attention pooling,
    EvoNorm-S0a, BAT) equal the meta-device reference."""
    spec = archkit.load_spec(name)
    ours, oracle = summary.measure(spec), measure_meta(spec)
    assert [(r.name, r.output_shape, r.params, r.macs) for r in ours.rows] == \
        [(r.name, r.output_shape, r.params, r.macs) for r in oracle.rows]
    assert ours.activation_bytes == oracle.activation_bytes


# --- the new layers against timm's modules, at sizes no packaged model uses ----------------------------


def test_attention_pooling_equals_timms_at_its_size_and_others() -> None:
    from timm.layers import AttentionPool2d as Theirs

    from archkit.heads import AttentionPool

    torch.manual_seed(0)
    theirs = Theirs(96, feat_size=(4, 5), out_features=10, head_dim=32, qkv_separate=True).eval()
    layer = AttentionPool(type="attention_pool", features=10, head_dim=32)
    ours = layer.build((96, 4, 5), None).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert layer.cost((96, 4, 5), None).params == sum(p.numel() for p in theirs.parameters())
    with torch.no_grad():
        for h, w in ((4, 5), (3, 7), (6, 6)):  # the native size, then resampled position embeddings
            x = torch.randn(2, 96, h, w)
            assert torch.equal(ours(x), theirs(x))
            assert torch.equal(ours(x, pre_logits=True), theirs(x, pre_logits=True))


def test_bat_equals_timms_at_other_sizes() -> None:
    from timm.layers.non_local_attn import BatNonLocalAttn

    from archkit.attention.bat import BilinearAttention

    torch.manual_seed(0)
    theirs = BatNonLocalAttn(48, block_size=4, groups=2).eval()
    params = BilinearAttention(type="bat", block_size=4)
    ours = params.build(48).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert params.cost(48, (8, 12)).params == sum(p.numel() for p in theirs.parameters())
    with torch.no_grad():
        for h, w in ((4, 4), (8, 12), (12, 8)):
            x = torch.randn(2, 48, h, w)
            assert torch.equal(ours(x), theirs(x))
    with pytest.raises(ValueError, match="multiples of block_size 4, gets 6x8"):
        params.cost(48, (6, 8))


@pytest.mark.parametrize("apply_act", [True, False])
def test_evonorm_equals_timms(apply_act: bool) -> None:
    from timm.layers import EvoNorm2dS0a as Theirs

    from archkit.nn.layers import EvoNorm2dS0a

    torch.manual_seed(0)
    theirs = Theirs(48, group_size=8, apply_act=apply_act)
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    ours = EvoNorm2dS0a(48, 6, apply_act=apply_act)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 48, 5, 3)
    assert torch.equal(ours(x), theirs(x))


# --- what the new parts give users -------------------------------------------------------------------


def test_clip_heads_classifier_api_matches_timms() -> None:
    """num_classes, get_classifier, pre_logits and reset_classifier reach the attention pool's projection."""
    theirs = _trained("resnet50_clip")
    ours = archkit.create_model("resnet50_clip").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.num_classes == theirs.num_classes == 1024
    assert ours.get_classifier() is ours.head.proj
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = ours.forward_features(x)
        assert torch.equal(features, theirs.forward_features(x))
        assert torch.equal(ours.forward_head(features, pre_logits=True),
                           theirs.forward_head(features, pre_logits=True))
    ours.reset_classifier(10)
    assert ours(x).shape == (1, 10)
    assert archkit.create_model("resnet50_clip", num_classes=0, device="meta")(torch.empty(1, 3, 64, 64,
                                                                                           device="meta")).shape == (1, 2048)


@pytest.mark.parametrize("name, stride", [("regnetz_b16", 16), pytest.param("resnet33ts", 8, marks=pytest.mark.slow)])
def test_features_end_in_timms_final_conv(name: str, stride: int) -> None:
    """The last feature map is the final_conv's output, as timm's feature_info says; dilated stages too."""
    theirs = _trained(name, features_only=True, output_stride=stride)
    ours = archkit.create_model(name, features_only=True, output_stride=stride, out_indices=[0, 1, 2, 3, 4]).eval()
    # timm's FeatureListNet flattens its containers: stages_0, stem_conv1 (a tiered stem)
    ours.load_state_dict({k.replace("stages_", "stages.").replace("stem_", "stem."): v
                          for k, v in theirs.state_dict().items()}, strict=True)
    assert ours.feature_info.module_name()[-1] == theirs.feature_info.module_name()[-1] == "final_conv"
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    keys = ["num_chs", "reduction", "module"]
    assert ours.feature_info.get_dicts(keys=keys)[-1] == theirs.feature_info.get_dicts(keys=keys)[-1]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True))


def test_layer_decay_puts_final_conv_last_as_timm() -> None:
    from timm.optim._param_groups import param_groups_layer_decay

    def scales(groups, model, key):
        names = {id(p): n for n, p in model.named_parameters()}
        return {names[id(p)]: g[key] for g in groups for p in g["params"]}

    ours_model, theirs_model = archkit.create_model("gernet_s"), timm.create_model("gernet_s")
    ours = scales(archkit.param_groups(ours_model, lr=1.0, layer_decay=0.75), ours_model, "lr")
    theirs = scales(param_groups_layer_decay(theirs_model, layer_decay=0.75), theirs_model, "lr_scale")
    assert ours == theirs
    # and timm's own tooling reads archkit's group_matcher the same way (final_conv joins the last block)
    assert scales(param_groups_layer_decay(ours_model, layer_decay=0.75), ours_model, "lr_scale") == theirs


def test_identity_shortcut_kind_drops_the_projections() -> None:
    """``shortcut: identity`` (timm's downsample=''): blocks that change shape add no shortcut, so a
    ResNet-18 loses exactly torchvision's downsample parameters."""
    import torchvision

    reference = torchvision.models.resnet18()
    downsample = sum(p.numel() for n, p in reference.named_parameters() if ".downsample." in n)
    spec = archkit.as_spec("resnet18", values={"block.shortcut": "identity"})
    assert summary.measure(spec).total_params == sum(p.numel() for p in reference.parameters()) - downsample
    assert archkit.build_model(spec, device="meta").layer2[0].downsample is None
    # zero_init_residual zeroes residual branches only: a block without a shortcut keeps its last norm
    model = archkit.create_model(spec, **{"init.zero_init_residual": True}).eval()
    assert not model.layer2[0].bn2.weight.eq(0).any() and model.layer2[1].bn2.weight.eq(0).all()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 32)).abs().max() > 0


def test_byob_blocks_refuse_what_they_cannot_build(capsys) -> None:
    cases = [(["--set", "block.group_size=7"], "group_size 7 does not divide the inner width"),
             (["--set", "block.shortcut=zero_pad"], "accept shortcut kinds projection, avg_down, identity"),
             (["--set", "norm={type: evonorm_s0a, group_size: 7}"], "group_size 7 does not divide 24 channels"),
             (["--set", "head=[{type: attention_pool, features: 10, head_dim: 100}]"],
              "needs an embedding width divisible by head_dim 100")]
    for extra, fragment in cases:
        assert main(["validate", "resnet33ts", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (extra, err)


def test_a_variant_no_library_ships_is_a_few_lines_and_equals_timms_byobnet_of_its_config() -> None:
    """RepVGG-A0 with SE and CLIP's attention-pool head (examples/repvgg_a0_se_attnpool.yaml): timm has no
    such model, but its ByobNet builds the same network from a hand-written config; weights load, outputs
    are equal, and the variant deploys like any RepVGG."""
    import dataclasses
    from pathlib import Path

    from timm.models.byobnet import ByobNet, model_cfgs

    path = Path(__file__).parent.parent / "examples" / "repvgg_a0_se_attnpool.yaml"
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) <= 8
    cfg = dataclasses.replace(model_cfgs["repvgg_a0"], attn_layer="se", head_type="attn_abs",
                              attn_kwargs=dict(rd_ratio=1 / 16, rd_divisor=1))
    torch.manual_seed(0)
    theirs = ByobNet(cfg, img_size=224).eval()
    ours = archkit.create_model(str(path)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        reference = theirs(x)
        assert torch.equal(ours(x), reference)
        fused = archkit.reparameterize(ours)
        assert (fused(x) - reference).abs().max() <= 1e-5 * reference.abs().max()
    deploy = archkit.create_model(str(path), deploy=True).eval()
    deploy.load_state_dict(fused.state_dict(), strict=True)
    assert summary.measure(archkit.load_spec(str(path))).total_params == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("name", _marked(["gernet_s", "resnet50_clip", "resnet50_clip_gap"], {"gernet_s"}))
def test_shared_folders_load_in_timm(tmp_path, name: str) -> None:
    """A saved folder names timm's architecture (final_conv, CLIP's fixed-size attention pooling and the
    classifier-less _gap head included) and timm loads it with equal outputs."""
    import json

    ours = archkit.create_model(name).eval()
    archkit.save_pretrained(ours, tmp_path / name)
    config = json.loads((tmp_path / name / "config.json").read_text())
    assert config["architecture"] == name and config["num_classes"] == get_pretrained_cfg(name).num_classes
    theirs = timm.create_model(f"local-dir:{tmp_path / name}", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    # config.json names the classifier (CLIP's head.proj), so timm can fine-tune the folder for 10 classes
    assert config["pretrained_cfg"]["classifier"] == get_pretrained_cfg(name).classifier or not config["num_classes"]
    resized = timm.create_model(f"local-dir:{tmp_path / name}", pretrained=True, num_classes=10).eval()
    assert resized(x).shape == (1, 10)


def test_num_classes_gives_a_classifier_free_head_one_as_timm() -> None:
    ours = archkit.create_model("resnet50_clip_gap", num_classes=10, device="meta")
    theirs = timm.create_model("resnet50_clip_gap", num_classes=10, device="meta")
    assert [(k, v.shape) for k, v in ours.state_dict().items()][-2:] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()][-2:]
    assert archkit.create_model("resnet50_clip_gap", num_classes=0, device="meta").num_classes == 0


def test_new_layers_fuse_and_keep_their_outputs() -> None:
    """archkit.fuse traces through attention pooling and BAT (their size checks stay inside one call)."""
    spec = {"name": "t", "layout": "timm", "input": {"channels": 3, "size": [32, 32]}, "stage": {"type": "byob"},
            "block": {"type": "bottle", "bottle_ratio": 0.5, "attn": [{"type": "bat", "block_size": 2, "position": "mid"}]},
            "stem": [{"name": "stem", "type": "conv_norm_act", "channels": 16, "stride": 2}],
            "stages": [{"planes": 32, "depth": 2, "stride": 2}, {"planes": 64, "depth": 1, "stride": 2}],
            "final": [{"name": "final_conv", "type": "conv_norm_act", "channels": 64, "kernel_size": 1}],
            "head": [{"type": "attention_pool", "features": 5, "head_dim": 16}]}
    model = archkit.create_model(spec, seed=0).eval()
    assert list(dict(model.named_children())) == ["stem", "stages", "final_conv", "head"]
    assert "stem.conv.weight" in model.state_dict() and "head.pos_embed" in model.state_dict()
    fused = archkit.fuse(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (fused(x) - model(x)).abs().max() <= 1e-5 * model(x).abs().max()


def test_whole_parts_are_explicit_and_old_keys_stay() -> None:
    """A timm-layout stem of one unnamed conv_norm_act keeps its keys (stem.conv_norm_act.*: a spec's keys
    are its contract); named after its part (name: stem), the layer is the part (stem.conv.*, timm's)."""
    base = {"name": "t", "layout": "timm", "input": {"channels": 3, "size": [32, 32]}, "block": {"type": "basic"},
            "stages": [{"planes": 8, "depth": 1}]}
    unnamed = archkit.build_model({**base, "stem": [{"type": "conv_norm_act", "channels": 8, "stride": 2}]},
                                  device="meta")
    named = archkit.build_model({**base, "stem": [{"name": "stem", "type": "conv_norm_act", "channels": 8,
                                                   "stride": 2}]}, device="meta")
    assert next(iter(unnamed.state_dict())) == "stem.conv_norm_act.conv.weight"
    assert next(iter(named.state_dict())) == "stem.conv.weight"


def test_models_pickled_before_final_layers_still_run() -> None:
    model = archkit.create_model("resnet18", device="meta").eval()
    del model.final_names  # as a model pickled by archkit before final: existed
    assert model.forward_features(torch.empty(1, 3, 32, 32, device="meta")).shape == (1, 512, 1, 1)
    assert "final" not in str(model.group_matcher())


def test_anti_aliased_conv_pads_for_stride_one_as_timm() -> None:
    """timm's ConvNormAct with an aa_layer runs the conv at stride 1 and pads for that stride."""
    from timm.layers import ConvNormAct

    from archkit.graph import Scope
    from archkit.layers import BatchNorm, ReLU, conv_norm_act

    for k in (3, 4, 5):
        theirs = ConvNormAct(8, 8, k, stride=2, aa_layer="avg")
        s = Scope("_", norm_layer=BatchNorm(type="batchnorm"), act_layer=ReLU(type="relu"))
        out = conv_norm_act(s, "unit", s.input((8, 32, 32)), 8, k, stride=2, aa="avg")
        assert s._children["unit"].children["conv"].padding == theirs.conv.padding[0]
        assert out.shape == tuple(theirs(torch.randn(1, 8, 32, 32)).shape[1:])



def test_a_stage_pattern_repeats_and_follows_the_depth_multiplier(capsys) -> None:
    """MobileOne's alternating depthwise / pointwise blocks as one pattern (timm's interleave): scaled by
    depth_multiplier the pattern still alternates; a stage cannot list blocks and repeat a pattern."""
    spec = archkit.as_spec("mobileone_s0", values={"depth_multiplier": 0.5})
    assert [s.depth for s in spec.stages] == [4, 16, 20, 2] and spec.stage["pattern"]
    model = archkit.build_model(spec, device="meta")
    kernels = [block.conv_kxk[0].conv.kernel_size[0] for block in model.stages[1]]
    assert kernels == [3, 1] * 4  # 16 blocks halved, still depthwise 3x3 then pointwise 1x1
    assert main(["validate", "mobileone_s0", "--set", "stages.0.blocks=[{}, {}, {}, {}]",
                 "--set", "stages.0.pattern=[{}]"]) == 2
    assert "blocks (blocks:) or repeats a pattern (pattern:), not both" in capsys.readouterr().err
    assert main(["explain", "mobileone_s0", "stages.1.pattern.1.kernel_size"]) == 0
    assert "mobileone_s0.yaml:10" in capsys.readouterr().out


def test_reset_classifier_is_what_gets_saved_and_can_come_back(tmp_path) -> None:
    """reset_classifier updates the model's spec (config.json, checkpoints), and after reset_classifier(0)
    a classifier can come back, as timm's; CLIP's projection included."""
    for name in ("test_byobnet", "resnet50_clip"):
        model = archkit.create_model(name).eval()
        model.reset_classifier(5)
        archkit.save_pretrained(model, tmp_path / name)
        theirs = timm.create_model(f"local-dir:{tmp_path / name}", pretrained=True).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(theirs(x), model(x)) and model(x).shape == (1, 5)
        model.reset_classifier(0)
        assert model.num_classes == 0 and model(x).ndim == 2
        model.reset_classifier(9)
        assert model(x).shape == (1, 9) and model.num_classes == 9


def test_a_stage_listing_its_blocks_overrides_a_default_pattern() -> None:
    spec = archkit.as_spec("mobileone_s0", values={"stages.3.blocks": [{"depthwise": True}, {"kernel_size": 1}]})
    assert spec.stages[3].pattern is None and len(spec.stages[3].blocks) == 2
