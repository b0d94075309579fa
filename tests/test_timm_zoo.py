"""Every model of timm's ``resnet.py`` as a packaged spec, generated from timm's registry: the same
state_dict keys and shapes in order, the same parameter count and MACs (meta device), and, with
timm's randomly initialized weights loaded strictly, the same eval outputs. Models over 30 M
parameters, most of the ResNet-50 class (20-30 M), and the output-stride features of all but a
representative few, run only under ``-m slow`` (``.ci/run`` runs them)."""

from __future__ import annotations

import pytest
import timm
import torch

import archkit
from archkit.plan import plan
from archkit import loader, summary, zoo
from timm_reference import assert_structure_and_macs_equal_timm

NAMES = timm.list_models(module="resnet")
FORWARD_LIMIT = 30_000_000  # parameters; larger models' forwards are marked slow


# the models over FORWARD_LIMIT parameters, written out so collection computes nothing (checked below)
LARGE = {"ecaresnet101d", "ecaresnet200d", "ecaresnet269d", "ecaresnetlight", "resnet101", "resnet101c", "resnet101d",
         "resnet101s", "resnet152", "resnet152c", "resnet152d", "resnet152s", "resnet200", "resnet200d", "resnetaa101d",
         "resnetblur101d", "resnetrs101", "resnetrs152", "resnetrs200", "resnetrs270", "resnetrs350", "resnetrs420",
         "resnetrs50", "resnext101_32x16d", "resnext101_32x32d", "resnext101_32x4d", "resnext101_32x8d",
         "resnext101_64x4d", "senet154", "seresnet101", "seresnet152", "seresnet152d", "seresnet200d", "seresnet269d",
         "seresnext101_32x4d", "seresnext101_32x8d", "seresnext101_64x4d", "seresnext101d_32x8d",
         "seresnextaa101d_32x8d", "seresnextaa201d_32x8d", "wide_resnet101_2", "wide_resnet50_2"}


# models of 20-30 M parameters (the ResNet-50 class) whose structure and forward run under -m slow too, to
# keep the default run in its time budget; resnet50d and seresnext50_32x4d stand for them by default
MID = {"ecaresnet101d_pruned", "ecaresnet50d", "ecaresnet50t", "ecaresnext50t_32x4d", "resnet34", "resnet34d",
       "resnet50", "resnet50_gn", "resnet50c", "resnet50s", "resnet50t", "resnetaa34d", "resnetaa50",
       "resnetaa50d", "resnetblur50", "resnetblur50d", "resnext50_32x4d", "resnext50d_32x4d", "seresnet34",
       "seresnet50", "seresnet50t", "seresnetaa50d"}
MID_LIMIT = 20_000_000


def _params(name: str) -> int:
    return summary.measure(archkit.load_spec(name)).total_params


def test_every_timm_resnet_is_a_packaged_spec() -> None:
    assert len(NAMES) == 81  # timm 1.0.31; a newer timm adds models, which this list then names
    missing = sorted(set(NAMES) - set(archkit.list_models()))
    assert not missing, f"no archkit spec for {missing}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in LARGE | MID else [])
                                  for n in NAMES])
def test_structure_and_macs_equal_timm(name: str) -> None:
    assert_structure_and_macs_equal_timm(name)


def test_the_slow_list_is_the_models_over_the_limit() -> None:
    assert {name for name in NAMES if _params(name) > FORWARD_LIMIT} == LARGE
    mid = {name for name in NAMES if MID_LIMIT < _params(name) <= FORWARD_LIMIT}
    assert MID | {"resnet50d", "seresnext50_32x4d"} == mid


def _forward_cases() -> list:
    return [pytest.param(name, marks=[pytest.mark.slow] if name in LARGE | MID else []) for name in NAMES]


@pytest.mark.parametrize("name", _forward_cases())
def test_timm_weights_load_strictly_and_outputs_are_equal(name: str) -> None:
    torch.manual_seed(0)
    theirs = timm.create_model(name).eval()
    ours = archkit.create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("name", ["resnet50d", "resnetrs50", "resnetblur50", "resnetaa50d", "test_resnet"])
def test_features_only_equals_timms(name: str) -> None:
    """timm's features_only (stem activation before its pool at index 0, then each stage)."""
    torch.manual_seed(0)
    theirs = timm.create_model(name, features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    ours = archkit.create_model(name, features_only=True, out_indices=[0, 1, 2, 3, 4]).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert [(f["num_chs"], f["reduction"]) for f in ours.feature_info] == \
        list(zip(theirs.feature_info.channels(), theirs.feature_info.reduction()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True))


@pytest.mark.parametrize("variant,base,keys", [
    ("resnetblur50", "resnet50", {"block.aa", "stem.3"}),
    ("resnetaa50", "resnet50", {"block.aa", "stem.3"}),
    ("resnetblur50d", "resnet50d", {"block.aa", "stem.3"}),
    ("resnetaa50d", "resnet50d", {"block.aa", "stem.3"}),
    ("resnet50d", "resnet50", {"block.shortcut", "stem.0"}),
    ("seresnet50", "resnet50", {"block.attn"}),
    ("ecaresnet50d", "resnet50d", {"block.attn"}),
    ("resnext50_32x4d", "resnet50", {"block.type", "block.cardinality", "block.base_width"}),
])
def test_variants_differ_only_in_their_axis(variant: str, base: str, keys: set) -> None:
    """Same architecture but one design axis: the merged specs differ only in that axis's keys."""
    def leaves(node, prefix=""):
        if isinstance(node, dict):
            return {k: v for key, val in node.items() for k, v in leaves(val, f"{prefix}{key}.").items()}
        if isinstance(node, list) and prefix.startswith("stem."):
            return {f"{prefix}{i}": item for i, item in enumerate(node)}
        return {prefix.rstrip("."): node}

    ignore = ("name", "description", "weights", "input", "family")
    a, b = (loader.flatten(loader.load(n, resolve=zoo.resolve))[0] for n in (variant, base))
    a, b = ({k: v for k, v in t.items() if k not in ignore} for t in (a, b))
    la, lb = leaves(a), leaves(b)
    changed = {k for k in la.keys() | lb.keys() if la.get(k) != lb.get(k)}
    assert {k.split(".")[0] + "." + k.split(".")[1] if "." in k else k for k in changed} <= keys, changed
    assert changed


@pytest.mark.slow  # trains two ResNet-50-class models a step (the suite's time budget)
def test_drop_block_matches_timm_in_training() -> None:
    """drop_block_rate: the same DropBlock modules in stages 3-4, the same masks from the same seed."""
    theirs = timm.create_model("resnet26", drop_block_rate=0.2).train()
    with torch.no_grad():  # timm zero-initializes each block's last norm: the dropped branch would not show
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    ours = archkit.create_model("resnet26", drop_block_rate=0.2).train()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert [n for n, m in ours.named_modules() if type(m).__name__ == "DropBlock2d"] == \
        [n for n, m in theirs.named_modules() if type(m).__name__ == "DropBlock2d"]
    x = torch.randn(4, 3, 128, 128)
    torch.manual_seed(3)
    a = theirs(x)
    torch.manual_seed(3)
    b = ours(x)
    assert torch.equal(a, b)
    torch.manual_seed(4)
    c = theirs(x)
    torch.manual_seed(4)
    assert torch.equal(ours(x), c) and not torch.equal(c, b)  # another seed, other masks (models in lockstep)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), theirs.eval()(x))  # identity in eval mode


def test_every_block_with_the_slots_runs_anti_aliasing_and_drop_block() -> None:
    """Each block type that takes aa / drop_block_rate (plugins included) builds and trains with them;
    a block without a DropBlock slot is refused, not silently left without one."""
    from archkit.catalog import BLOCKS

    takers = sorted({e.name.split(":")[-1] for e in BLOCKS if e.obj.drop_block})
    assert {"basic", "bottleneck", "resnext", "wide_bottleneck", "se_bottleneck"} <= set(takers)
    for name in takers:
        kind = BLOCKS.get(name).obj
        for aa in ("blur", "avg") if "aa" in kind.params.model_fields else (None,):
            spec = archkit.as_spec({
                "name": "t", "input": {"size": [64, 64]}, "drop_block_rate": 0.3, "stage": {"type": kind.stage},
                "stem": [{"type": "conv", "channels": 8, "stride": 2}, {"type": "norm"}, {"type": "act"}],
                "block": {"type": name, **({"aa": aa} if aa else {})},
                "stages": [{"planes": 16, "depth": 1}, {"planes": 16, "depth": 1, "stride": 2},
                           {"planes": 16, "depth": 2, "stride": 2}, {"planes": 16, "depth": 1, "stride": 2}],
                "head": [{"type": "adaptive_avgpool"}, {"type": "flatten"}]})
            model = archkit.build_model(spec).train()
            blocks = [bp.name for sp in plan(spec).stages for bp in sp.blocks]  # module paths from the plan
            drops = {n.rpartition(".drop")[0] for n, m in model.named_modules() if type(m).__name__ == "DropBlock2d"}
            holding = {b for b in blocks if any(d == b or d.startswith(b + ".") for d in drops)}
            assert holding == {b for b in blocks if b.startswith(("layer3.", "layer4."))}, (name, drops)
            if aa:
                assert any(n.startswith("layer2.0.") and n.endswith("aa") for n, _ in model.named_modules()), name
            out = model(torch.randn(2, 3, 64, 64))
            assert out.shape == (2, summary.measure(spec).output_shape[-1]), name
    with pytest.raises(archkit.SpecError, match="regnet blocks have no DropBlock slot"):
        archkit.load_spec("regnet_x_400mf", ["drop_block_rate=0.1"])


def test_pruned_blocks_list_bad_counts_in_one_line(tmp_path, capsys) -> None:
    from archkit.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("base: ecaresnet50d_pruned\nname: bad\nstages:\n  - planes: 64\n    depth: 2\n"
                    "    block: {out_channels: 19}\n    blocks:\n      - {widths: [47, 18]}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml:7:" in err and "lists 1 blocks for a stage of depth 2" in err


def test_timm_weights_are_declared_with_their_location() -> None:
    """Declared weights are timm's default pretrained config: the URL (hash prefix from its file name),
    or the Hugging Face hub file, trusted on first download, where no hash is published."""
    from timm.models import get_pretrained_cfg

    checked = 0
    for name in NAMES:
        cfg = get_pretrained_cfg(name)
        spec = archkit.load_spec(name)
        if cfg.tag == "untrained":
            continue
        entry = spec.weights.get(cfg.tag)
        if name in ("resnext101_32x8d", "wide_resnet101_2"):  # timm's default is torchvision's file
            assert any(e.url == cfg.url for e in spec.weights.values())
            continue
        assert entry is not None, name
        if cfg.url:
            assert entry.url == cfg.url and cfg.url.rsplit("-", 1)[1].startswith(entry.sha256), name
        else:
            assert entry.url == f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors"
            assert entry.sha256 is None
        assert entry.meta.input_size == list(cfg.input_size[1:]) and entry.meta.mean == list(cfg.mean)
        checked += 1
    assert checked >= 60


def test_explicit_widths_refuse_scaling_in_one_line(capsys) -> None:
    """A pruned network's explicit widths cannot follow the multipliers: refused, never ignored."""
    from archkit.cli import main

    for override, fragment in (("width_multiplier=0.5", "width_multiplier cannot scale"),
                               ("depth_multiplier=2", "depth_multiplier cannot scale")):
        assert main(["validate", "ecaresnet50d_pruned", "--set", override]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, err
    assert main(["fit", "ecaresnet50d_pruned", "--macs", "1G"]) == 2
    assert "fit has nothing to vary" in capsys.readouterr().err


# one model per code path output_stride takes: BasicBlock dilation, deep stems and tiered stems,
# average-pool shortcuts, anti-aliasing and blur pools in dilated stages, SE and grouped blocks
OUTPUT_STRIDE_DEFAULT = {"resnet18", "resnet26d", "resnetblur18", "seresnext26t_32x4d"}  # (resnetaa34d and
# ecaresnet50d_pruned under -m slow: the suite's time budget)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in OUTPUT_STRIDE_DEFAULT else [pytest.mark.slow])
                                  for n in NAMES])
def test_features_at_output_stride_8_and_16_equal_timms(name: str) -> None:
    """Dense-prediction backbones: timm's features_only at output_stride 16 and 8 (strides turned into
    dilation, dilated shortcuts and anti-aliasing as timm builds them), every feature map equal."""
    for output_stride in (16, 8):
        torch.manual_seed(0)
        theirs = timm.create_model(name, features_only=True, output_stride=output_stride).eval()
        ours = archkit.create_model(name, features_only=True, output_stride=output_stride,
                                    out_indices=list(range(len(theirs.feature_info)))).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        assert ours.feature_info.reduction() == theirs.feature_info.reduction()
        x = torch.randn(1, 3, 48, 48)
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True)), output_stride
