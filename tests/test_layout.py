"""Module names as data: a spec's ``layout:`` scheme and its stages' ``name:`` give the state_dict keys, and
everything that reads module paths (features, freezing, classifier, layer decay, summary) follows the plan.
The reference is torchvision's ResNet-18 under a key mapping written here, independently of archkit."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

import archkit
from archkit.cli import main

REGNET_KEYS = {"layout": {"like": "timm", "stages": "", "stage": "s{n}", "blocks": "", "block": "b{n}"}}  # timm's


def _regnet_style(key: str) -> str:
    """torchvision's ResNet key as timm's RegNet names its parts: stem.*, s1.b1.*, head.fc.*."""
    if key.startswith(("conv1.", "bn1.")):
        return f"stem.{key}"
    if key.startswith("fc."):
        return f"head.{key}"
    return re.sub(r"^layer(\d+)\.(\d+)\.", lambda m: f"s{m[1]}.b{int(m[2]) + 1}.", key)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    return archkit.create_model("resnet18", **REGNET_KEYS).eval(), torchvision.models.resnet18().eval()


def test_a_layout_of_its_own_gives_its_keys_and_loads_torchvision_weights_by_them(pair) -> None:
    ours, reference = pair
    mapped = {_regnet_style(k): v for k, v in reference.state_dict().items()}
    assert list(ours.state_dict()) == list(mapped)  # same keys, same order
    ours.load_state_dict(mapped)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_everything_reading_module_paths_follows_the_layout(pair) -> None:
    ours, _ = pair
    assert ours.get_classifier() is ours.head.fc
    assert [d["module"] for d in ours.feature_info] == ["stem.relu", "s1", "s2", "s3", "s4"]
    backbone = archkit.create_model("resnet18", **REGNET_KEYS, features_only=True, out_indices=(2, 4))
    assert [f.shape[1] for f in backbone(torch.randn(1, 3, 64, 64))] == [128, 512]
    frozen = archkit.create_model("resnet18", **REGNET_KEYS, frozen_stages=1)
    trainable = {n.split(".")[0] for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable == {"s2", "s3", "s4", "head"}
    resized = archkit.create_model("resnet18", **REGNET_KEYS, num_classes=7)
    assert resized.head.fc.out_features == 7
    # layer-wise decay groups the same parameters as torchvision's names do (the default layout)
    default = archkit.create_model("resnet18")
    from archkit.optim import layer_ids as ids

    assert {_regnet_style(k): v for k, v in ids(default).items()} == ids(ours)


def test_stages_take_their_own_names(tmp_path, capsys) -> None:
    spec = tmp_path / "named.yaml"
    spec.write_text("base: resnet18\nname: named\nlayout: timm\nstages:\n"
                    "  - {name: early, planes: 64, depth: 2}\n  - {planes: 128, depth: 2, stride: 2}\n"
                    "  - {name: late, planes: 256, depth: 2, stride: 2}\n  - {planes: 512, depth: 2, stride: 2}\n")
    model = archkit.create_model(str(spec), device="meta")
    assert model.stage_names == ["stages.early", "stages.1", "stages.late", "stages.3"]
    assert "stages.early.blocks.1.conv2.weight" in model.state_dict()
    assert main(["build", str(spec), "--summary"]) == 0
    assert "\nstages.late " in capsys.readouterr().out


@pytest.mark.parametrize("override, where, message", [
    ("layout={stage: 'stage'}", "layout.stage", "names every stage the same"),
    ("stages.2.name=layer1", "stages[2].name", "stage 3 is named 'layer1', also stage 1's name"),
    ("stages.0.name=conv1", "stem[0].name", "'conv1' is the name of stage 1"),
    ("layout={stage: 's{x}'}", "layout.stage", "must match"),
    ("layout={head: 'state_dict'}", "layout", "'state_dict' is an attribute of torch.nn.Module"),
    ("layout={like: timmm}", "layout.like", None),
    ("stages.0.name=forward", "stages[0].name", "an attribute of torch.nn.Module"),
    ("layout={block: b}", "layout.block", "names every block of a stage the same"),
    ("layout={stem: features, stages: features}", "layout.stages", "one container each"),
    ("layout={stages: x, head: x}", "layout.head", "one container each"),
    ("layout={like: timm, blocks: forward}", "layout.blocks", "an attribute of torch.nn.Module"),
    ("layout={stem: _modules}", "layout.stem", "starts with '_'"),
    ("block.names={conv1: forward}", "block.names", "an attribute of torch.nn.Module"),
    ("stages.0.name=layer2", "stages[0].name", "stage 2 is named 'layer2', also stage 1's name"),
])
def test_bad_names_are_one_located_line(override: str, where: str, message: str | None, tmp_path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("base: resnet18\nname: bad\n")
    assert main(["validate", str(spec), "--set", override]) == 2  # before any module is built
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and where in err, err
    assert message is None or message.lower() in err.lower(), err


# --- a block's children under names of its own (names:) ------------------------------------------------

BLOCK_NAMES = {"block.names": {"conv1": "conv_pw", "bn1": "bn_pw", "downsample": "shortcut"}}


def _block_names(key: str) -> str:
    """torchvision's ResNet-18 key with its blocks' first conv, norm and downsample renamed."""
    key = re.sub(r"^(layer\d+\.\d+)\.conv1\.", r"\1.conv_pw.", key)
    key = re.sub(r"^(layer\d+\.\d+)\.bn1\.", r"\1.bn_pw.", key)
    return re.sub(r"^(layer\d+\.\d+)\.downsample\.", r"\1.shortcut.", key)


def test_a_blocks_children_take_the_names_the_spec_gives() -> None:
    reference = torchvision.models.resnet18().eval()
    ours = archkit.create_model("resnet18", **BLOCK_NAMES).eval()
    mapped = {_block_names(k): v for k, v in reference.state_dict().items()}
    assert list(ours.state_dict()) == list(mapped) and "conv1.weight" in mapped  # the stem's conv1 is no block's
    ours.load_state_dict(mapped)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_nested_children_and_zero_init_follow_the_names() -> None:
    import timm

    reference = timm.create_model("seresnet50").eval()
    names = {"se": "squeeze", "se.fc1": "conv_reduce", "se.fc2": "conv_expand"}
    ours = archkit.create_model("seresnet50", **{"block.names": names}).eval()
    rename = {".se.fc1.": ".squeeze.conv_reduce.", ".se.fc2.": ".squeeze.conv_expand."}
    mapped = {re.sub(r"\.se\.fc[12]\.", lambda m: rename[m[0]], k): v for k, v in reference.state_dict().items()}
    ours.load_state_dict(mapped)  # strict: every key renamed, none left
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
    # zero_init_residual zeroes the renamed norm (timm's byob bottle marks conv3_1x1.bn)
    zeroed = archkit.create_model("eca_resnet33ts", **{"block.names": {"conv3_1x1": "c3", "conv3_1x1.bn": "norm"},
                                                       "init.zero_init_residual": True}, device="cpu")
    weights = [p for n, p in zeroed.named_parameters() if n.endswith("c3.norm.weight")]
    assert weights and all(bool((w == 0).all()) for w in weights)


@pytest.mark.parametrize("names, where, message", [
    ("{conv9: x}", "stages[0].block.names.conv9", "no bottleneck block of this network has a child 'conv9'"),
    ("{conv1: conv2}", "stages[0].block.names", "'conv1' and 'conv2' would both be named 'conv2'"),
    ("{conv1: 2x}", "block.names.conv1", "identifier"),
])
def test_bad_block_names_are_one_located_line(names: str, where: str, message: str, capsys) -> None:
    assert main(["validate", "resnet50", "--set", f"block.names={names}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and where in err and message in err, err


def test_renaming_downsample_is_fine_where_only_some_blocks_have_one(capsys) -> None:
    """ResNet-18's first stage has no shortcut module: the name applies where there is one."""
    model = archkit.create_model("resnet18", **{"block.names": {"downsample": "shortcut"}}, device="meta")
    assert "layer2.0.shortcut.0.weight" in model.state_dict() and "layer1.0.shortcut.0.weight" not in model.state_dict()


def test_inside_a_container_torchs_names_are_refused_too(capsys) -> None:
    """A stage named forward inside stages: (or a block pattern forward) would replace nn.Module.forward."""
    assert main(["validate", "resnet18", "--set", "layout=timm", "--set", "stages.0.name=forward"]) == 2
    assert "stages[0].name: 'forward' is an attribute of torch.nn.Module" in capsys.readouterr().err


def test_a_scheme_over_a_preset_starts_from_it(tmp_path) -> None:
    """repvgg_a0 says layout: timm; a derived spec's {block: 'b{n}'} (or --set layout.block=...) keeps timm's
    containers instead of falling back to torchvision's."""
    derived = tmp_path / "d.yaml"
    derived.write_text("base: repvgg_a0\nname: d\nlayout: {block: 'b{n}'}\n")
    for model in (archkit.create_model(str(derived), device="meta"),
                  archkit.create_model("repvgg_a0", **{"layout.block": "b{n}"}, device="meta")):
        assert model.stage_names[0] == "stages.0" and "stages.0.b1.conv_kxk.conv.weight" in model.state_dict()


def test_renames_reach_zero_init_and_are_checked_per_stage(capsys) -> None:
    model = archkit.create_model("resnet18", **{"block.names": {"bn2": "bn_last"}, "init.zero_init_residual": True})
    assert all(bool((m.bn_last.weight == 0).all()) for m in model.layer1)
    # a stage's own rename must fit that stage's blocks (stage 2 has no SE here)
    assert main(["validate", "seresnet50", "--set", "stages.0.block.names={se.fc1: r}", "--set",
                 "stages.1.block.attn=[]", "--set", "stages.1.block.names={se.fc1: q}"]) == 2
    assert "stages[1].block.names['se.fc1']: no bottleneck block of stage 2" in capsys.readouterr().err
    # re-parameterizable blocks keep their branches' names (reparameterize folds them by name)
    assert main(["validate", "repvgg_a0", "--set", "block.names={conv_1x1: pw}"]) == 2
    assert "rep blocks keep their children's names" in capsys.readouterr().err


def test_diff_names_a_renamed_stage(tmp_path, capsys) -> None:
    renamed = tmp_path / "sn.yaml"
    renamed.write_text("base: resnet18\nname: sn\nstages:\n  - {name: foo, planes: 64, depth: 2}\n"
                       "  - {planes: 128, depth: 2, stride: 2}\n  - {planes: 256, depth: 2, stride: 2}\n"
                       "  - {planes: 512, depth: 2, stride: 2}\n")
    assert main(["diff", "resnet18", str(renamed)]) == 1
    assert "module: layer1 -> foo" in capsys.readouterr().out
