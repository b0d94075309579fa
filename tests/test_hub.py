"""Shared folders (issue 24): save -> local-dir: / hf-hub: -> the same outputs and the same spec, in
archkit and in timm; the Hugging Face cache layout built here, offline; hostile folders in one line.
Nothing reaches the network: the hub cache is a folder the test writes, uploads are intercepted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import archkit
import archkit.timm  # noqa: F401 - timm's 'archkit' architecture and archkit_<name> models
from archkit.cli import main

X = torch.randn(2, 3, 64, 64)

# one spec of each family, and a variant with a plugin block (archkit-se, installed by the README)
FAMILIES = {"resnet26d": "resnet26d", "cs3darknet_s": "cs3darknet_s", "darknet17": "darknet17",
            "regnet_x_400mf": "archkit", "wrn28_10_small": "archkit", "se_variant": "archkit",
            "regnety_002": "regnety_002", "regnetz_005": "regnetz_005", "res2net50_48w_2s": "res2net50_48w_2s",
            "convnext_atto": "convnext_atto", "skresnet18": "skresnet18", "resnest14d": "resnest14d",
            "mobilenetv3_small_050": "mobilenetv3_small_050", "tf_mixnet_s": "tf_mixnet_s"}
SPECS = {"wrn28_10_small": {"base": "wrn28_10", "name": "wrn28_10_small", "stages.0.depth": 1},
         "se_variant": {"base": "resnet18", "name": "se_variant", "block.type": "se_bottleneck",
                        "stages.3.depth": 1}}

SLOW_FAMILIES = {"regnet_x_400mf", "wrn28_10_small", "darknet17", "regnetz_005", "res2net50_48w_2s", "skresnet18",
                 "resnest14d", "mobilenetv3_small_050", "tf_mixnet_s"}  # under -m slow: the suite's time budget


def _spec(key: str):
    if key not in SPECS:
        return archkit.load_spec(key)
    values = dict(SPECS[key])
    base = values.pop("base")
    return archkit.as_spec(base, values=values)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(X), b.eval()(X))


@pytest.mark.parametrize("key", [pytest.param(k, marks=[pytest.mark.slow] if k in SLOW_FAMILIES else [])
                                 for k in FAMILIES])
def test_round_trip_through_a_folder(tmp_path, key) -> None:
    torch.manual_seed(0)
    spec = _spec(key)
    model = archkit.create_model(spec, num_classes=5).eval()
    folder = archkit.save_pretrained(model, tmp_path / key)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == FAMILIES[key] and cfg["num_classes"] == 5
    loaded = archkit.create_model(f"local-dir:{folder}", pretrained=True)
    assert loaded.spec.model_dump(exclude={"weights"}) == model.spec.model_dump(exclude={"weights"})
    assert _same(model, loaded)
    assert loaded.transfer_plan.params_transferred == loaded.transfer_plan.params_total
    theirs = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert _same(model, theirs)
    if FAMILIES[key] != "archkit":  # timm's own model class, not archkit's
        assert type(theirs).__module__.startswith("timm.")


def test_the_card_and_config_say_what_the_folder_is(tmp_path, capsys) -> None:
    assert main(["export", "resnet50d", "--format", "hf", "--output", str(tmp_path / "r50d")]) == 0
    capsys.readouterr()
    cfg = json.loads((tmp_path / "r50d" / "config.json").read_text())
    declared = archkit.load_spec("resnet50d").weights["ra2_in1k"].meta
    expected = {"input_size": [3, 224, 224], "interpolation": declared.interpolation, "crop_pct": declared.crop_pct,
                "mean": declared.mean, "std": declared.std, "first_conv": "conv1.0", "classifier": "fc",
                "license": "apache-2.0"}
    assert {k: cfg["pretrained_cfg"].get(k) for k in expected} == expected
    assert cfg["num_features"] == 2048 and cfg["global_pool"] == "avg"
    assert cfg["archkit"]["version"] == archkit.__version__ and cfg["archkit"]["spec"]["name"] == "resnet50d"
    card = (tmp_path / "r50d" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\n") and "license: apache-2.0" in card
    assert "Total params:         25,576,264" in card and "```yaml" in card
    assert f"SHA-256 {cfg['archkit']['weights_sha256']}" in card
    code = main(["build", f"local-dir:{tmp_path / 'r50d'}", "--summary"])
    out = capsys.readouterr().out
    assert code == 0 and "weights: not loaded" in out and "25,576,264" in out


def test_preprocessing_travels_with_a_custom_variant(tmp_path) -> None:
    """A variant's folder keeps its parent's preprocessing (timm's bicubic for resnet26d) in archkit, in timm
    and when saved again."""
    spec = archkit.as_spec("resnet26d", values={"name": "r26d_se", "block.attn": [{"type": "se"}]}, num_classes=3)
    first = archkit.save_pretrained(archkit.create_model(spec), tmp_path / "a")
    declared = archkit.load_spec("resnet26d").weights["bt_in1k"].meta
    want = {"interpolation": declared.interpolation, "crop_pct": declared.crop_pct, "mean": declared.mean}
    assert json.loads((first / "config.json").read_text())["architecture"] == "archkit"
    theirs = timm.data.resolve_data_config({}, model=timm.create_model(f"local-dir:{first}"))
    assert {k: theirs[k] for k in want} == want and want["interpolation"] == "bicubic"
    again = archkit.save_pretrained(archkit.create_model(f"local-dir:{first}", pretrained=True), tmp_path / "b")
    cfg = json.loads((again / "config.json").read_text())["pretrained_cfg"]
    assert {k: cfg[k] for k in want} == want and cfg["num_classes"] == 3


def _hf_cache(root: Path, repo: str, folder: Path, revision: str = "a" * 40) -> Path:
    """The layout huggingface_hub's cache has: refs/main naming a snapshot of the files."""
    base = root / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hf_hub_names_read_the_cache_offline(tmp_path, offline_hub, capsys) -> None:
    torch.manual_seed(1)
    model = archkit.create_model("resnet18", num_classes=3)
    folder = archkit.save_pretrained(model, tmp_path / "r18")
    _hf_cache(offline_hub, "someone/r18-three", folder)
    loaded = archkit.create_model("hf-hub:someone/r18-three", pretrained=True)
    assert _same(model, loaded)
    theirs = timm.create_model("hf-hub:someone/r18-three", pretrained=True)  # timm's resnet18, same cache
    assert _same(model, theirs)
    assert main(["build", "hf-hub:someone/r18-three", "--weights", "folder"]) == 0
    assert "transferred 11,178,051 of 11,178,051" in capsys.readouterr().out
    code = main(["build", "hf-hub:someone/missing", "--summary"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("hf-hub:someone/missing: config.json:"), err


def test_weights_fetched_only_when_used(tmp_path, offline_hub, capsys) -> None:
    """A cached config without its weights: the architecture loads; the weights say they are missing."""
    model = archkit.create_model("resnet18")
    folder = archkit.save_pretrained(model, tmp_path / "r18")
    (folder / "model.safetensors").unlink()
    _hf_cache(offline_hub, "someone/config-only", folder)
    assert main(["build", "hf-hub:someone/config-only", "--summary"]) == 0
    code = main(["build", "hf-hub:someone/config-only", "--weights", "folder"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "model.safetensors" in err, err


@pytest.mark.slow  # two processes importing torch and timm
def test_timm_alone_and_the_real_offline_switch(tmp_path) -> None:
    model = archkit.create_model("resnet50d", num_classes=4).eval()
    folder = archkit.save_pretrained(model, tmp_path / "r50d")
    _hf_cache(tmp_path / "hf", "someone/r50d", folder)
    torch.save(X, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(X), tmp_path / "y.pt")
    script = ("import sys, torch, timm; x = torch.load(sys.argv[2]); y = torch.load(sys.argv[3]); "
              "m = timm.create_model(sys.argv[1], pretrained=True).eval(); "
              "assert 'archkit' not in sys.modules, 'archkit was imported'; "
              "assert torch.equal(m(x), y); print('ok', type(m).__module__)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")}
    for name in (f"local-dir:{folder}", "hf-hub:someone/r50d"):
        result = subprocess.run([sys.executable, "-c", script, name, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                                capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0 and result.stdout.startswith("ok timm."), result.stderr[-2000:]


# --- hostile folders ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_folder(tmp_path_factory) -> Path:
    return archkit.save_pretrained(archkit.create_model("resnet18", num_classes=3),
                                   tmp_path_factory.mktemp("good") / "r18")


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _edit(folder: Path, change) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))


def _bad_spec_value(cfg):
    cfg["archkit"]["spec"]["stages"][1]["depth"] = 0


def _wrong_type(cfg):
    cfg["archkit"]["spec"] = ["not", "a", "spec"]


def _unknown_arch(cfg):
    del cfg["archkit"]
    cfg["architecture"] = "vit_huge_patch14_224"


@pytest.mark.parametrize("case, fragment", [
    ("huge", "is over 1,048,576 bytes"),
    ("deep", "nested more than 64 levels deep"),
    ("not_json", "config.json:1:2: not valid JSON"),
    ("bad_value", "config.json:"),
    ("wrong_type", "archkit: must be an object with the archkit spec under 'spec'"),
    ("bad_meta", "crop_pct: must be <= 1.0 (got 5)"),
    ("unknown_arch", "architecture: names no model archkit knows ('vit_huge_patch14_224')"),
    ("symlinked_config", "config.json is a symlink"),
    ("fifo_weights", "model.safetensors: not a regular file"),
    ("other_weights", "differ in shape outside the transfer rules"),
    ("no_folder", "no such folder"),
    ("huge_int", "not valid JSON: Exceeds the limit"),
    ("nan", "not valid JSON: NaN is not a JSON number"),
    ("hash_type", "archkit.weights_sha256: must be a hex string (got 5)"),
    ("missing_tensor", "a shared folder's weights must be its model's whole state; 1 tensors are missing"),
    ("timm_keyword", "model_args.features_only: archkit does not apply the timm keyword 'features_only'"),
])
def test_hostile_folders_are_one_located_line(tmp_path, good_folder, capsys, case, fragment) -> None:
    folder = tmp_path / "f"
    if case != "no_folder":
        _copy(good_folder, folder)
    config = folder / "config.json"
    if case == "huge":
        config.write_text('{"a": "' + "x" * (2 << 20) + '"}')
    elif case == "deep":
        config.write_text("[" * 5000 + "]" * 5000)
    elif case == "not_json":
        config.write_text("{{{")
    elif case == "bad_value":
        _edit(folder, _bad_spec_value)
        fragment = f"{config}:"  # located in the file, with the field
    elif case == "wrong_type":
        _edit(folder, _wrong_type)
    elif case == "bad_meta":
        _edit(folder, lambda cfg: cfg["pretrained_cfg"].update(crop_pct=5))
    elif case == "unknown_arch":
        _edit(folder, _unknown_arch)
    elif case == "symlinked_config":
        (tmp_path / "elsewhere.json").write_text(config.read_text())
        config.unlink()
        config.symlink_to(tmp_path / "elsewhere.json")
    elif case == "fifo_weights":
        (folder / "model.safetensors").unlink()
        os.mkfifo(folder / "model.safetensors")
    elif case == "other_weights":
        archkit.save_pretrained(archkit.build_model("resnet50"), tmp_path / "r50")
        (folder / "model.safetensors").write_bytes((tmp_path / "r50" / "model.safetensors").read_bytes())
        _edit(folder, lambda cfg: cfg["archkit"].pop("weights_sha256"))
    elif case == "huge_int":
        config.write_text(config.read_text().replace('"seed": null', '"seed": ' + "9" * 5000))
    elif case == "nan":
        config.write_text(config.read_text().replace('"seed": null', '"seed": NaN'))
    elif case == "hash_type":
        _edit(folder, lambda cfg: cfg["archkit"].update(weights_sha256=5))
    elif case == "missing_tensor":
        from safetensors.torch import load_file, save_file

        state = load_file(str(folder / "model.safetensors"))
        del state["layer1.0.conv1.weight"]
        save_file(state, str(folder / "model.safetensors"))
        _edit(folder, lambda cfg: cfg["archkit"].pop("weights_sha256"))
    elif case == "timm_keyword":
        _edit(folder, lambda cfg: (cfg.pop("archkit"), cfg["model_args"].update(features_only=True)))
    out = tmp_path / "out.pt"
    code = main(["build", f"local-dir:{folder}", "--weights", "folder", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not out.exists()


def test_changed_weights_fail_their_recorded_hash(tmp_path, good_folder, capsys) -> None:
    folder = _copy(good_folder, tmp_path / "f")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    code = main(["build", f"local-dir:{folder}", "--weights", "folder"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "expected" in err and "refusing to use it" in err, err


def test_an_export_never_replaces_a_folder_it_did_not_write(tmp_path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["export", "resnet18", "--format", "hf", "--output", str(tmp_path / "mine")]) == 2
    assert "holds files archkit did not write" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert main(["export", "resnet18", "--format", "hf", "--output", str(tmp_path / "r18")]) == 0
    assert main(["export", f"local-dir:{tmp_path / 'r18'}", "--format", "hf", "--output", str(tmp_path / "r18")]) == 2
    assert "holds an input of this command" in capsys.readouterr().err


def test_push_uploads_the_folder(tmp_path, monkeypatch, good_folder, capsys) -> None:
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub, "upload_folder",
                        lambda **kw: calls.append(("upload", kw)) or type("Info", (), {"commit_url": "u"})())
    assert main(["push", str(good_folder), "--repo", "someone/r18", "--private"]) == 0
    assert calls[0] == ("create", "someone/r18", {"private": True, "exist_ok": True})
    assert calls[1][1]["folder_path"] == str(good_folder) and calls[1][1]["repo_id"] == "someone/r18"
    assert calls[1][1]["allow_patterns"] == ["config.json", "model.safetensors", "README.md"]
    for bad in ("a/b.", "a/b--c", "a/b.git"):
        assert main(["push", str(good_folder), "--repo", bad]) == 2
    assert main(["push", str(tmp_path), "--repo", "someone/x"]) == 2
    assert "not a folder archkit wrote" in capsys.readouterr().err


def test_timm_names_of_archkit_specs_carry_their_preprocessing() -> None:
    model = timm.create_model("archkit_resnet50")
    config = timm.data.resolve_data_config({}, model=model)
    meta = archkit.load_spec("resnet50").weights["IMAGENET1K_V2"].meta  # torchvision: resize 232, crop 224
    assert config["interpolation"] == meta.interpolation == "bilinear"
    assert config["crop_pct"] == pytest.approx(224 / 232, abs=1e-4)


def test_the_list_of_timm_models_is_timms() -> None:
    from archkit import share

    byob = {n for n in timm.list_models(module="byobnet") if n in archkit.list_models()}
    assert len(byob) == 53  # every byobnet.py model (tests/test_timm_byobnet.py, tests/test_timm_byob_blocks.py)
    mobile = {n for m in ("efficientnet", "mobilenetv3") for n in timm.list_models(module=m) if n in archkit.list_models()}
    assert len(mobile) == 148  # tests/test_timm_efficientnet.py: all of timm's two files
    assert share._timm_names() == set(timm.list_models(module="resnet")) | set(timm.list_models(module="cspnet")) | \
        byob | set(timm.list_models(module="regnet")) | set(timm.list_models(module="res2net")) | \
        set(timm.list_models(module="sknet")) | set(timm.list_models(module="resnest")) | \
        set(timm.list_models(module="convnext")) | mobile


def test_spec_tools_read_folders(tmp_path, good_folder, capsys) -> None:
    """explain names the config.json line; diff and validate take folder names; a folder is no base."""
    assert main(["explain", f"local-dir:{good_folder}", "stages.1.depth"]) == 0
    out = capsys.readouterr().out
    config = json.loads((good_folder / "config.json").read_text())
    assert out.startswith("stages.1.depth = 2\n") and f"{good_folder / 'config.json'}:" in out
    assert config["archkit"]["spec"]["stages"][1]["depth"] == 2
    assert main(["diff", "resnet18", f"local-dir:{good_folder}"]) == 1
    assert "head fc: linear(features=1000) -> linear(features=3)" in capsys.readouterr().out
    (tmp_path / "child.yaml").write_text(f"base: local-dir:{good_folder}\n")
    assert main(["validate", str(tmp_path / "child.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tmp_path / 'child.yaml'}:1:1: base: a shared folder cannot be a base"), err


def test_an_export_keeps_what_it_did_not_write(tmp_path, capsys, monkeypatch) -> None:
    """Only a folder holding nothing but archkit's three files is replaced; a Hugging Face cache never."""
    assert main(["export", "resnet18", "--format", "hf", "--output", str(tmp_path / "clone")]) == 0
    (tmp_path / "clone" / "NOTES.md").write_text("mine")
    assert main(["export", "resnet18", "--format", "hf", "--output", str(tmp_path / "clone")]) == 2
    assert "holds files archkit did not write" in capsys.readouterr().err
    assert (tmp_path / "clone" / "NOTES.md").read_text() == "mine"
    snapshot = _hf_cache(tmp_path / "hf", "org/m", tmp_path / "clone")
    assert main(["export", "resnet18", "--format", "hf", "--output", str(snapshot)]) == 2
    assert "inside a Hugging Face cache" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")  # an output named like its packaged spec is not that spec's file
    assert main(["export", "resnet18", "--format", "hf", "--output", "resnet18"]) == 0


def test_timm_folders_apply_their_keywords_and_text_round_trips(tmp_path, good_folder) -> None:
    folder = _copy(good_folder, tmp_path / "timm_written")
    _edit(folder, lambda cfg: (cfg.pop("archkit"), cfg["model_args"].update(output_stride=8)))
    ours = archkit.create_model(f"local-dir:{folder}", pretrained=True).eval()
    theirs = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert ours.spec.output_stride == 8 and _same(ours, theirs)
    spec = archkit.as_spec("resnet18", values={"name": "r18_emoji", "description": "Fast \U0001f680 model"})
    saved = archkit.save_pretrained(archkit.create_model(spec), tmp_path / "emoji")
    assert archkit.load_spec(f"local-dir:{saved}").description == "Fast \U0001f680 model"


def test_timm_checks_the_recorded_hash_too(tmp_path, good_folder) -> None:
    folder = _copy(good_folder, tmp_path / "f")
    _edit(folder, lambda cfg: cfg.update(architecture="archkit", model_args={"spec": cfg["archkit"]["spec"]}))
    assert _same(timm.create_model(f"local-dir:{folder}", pretrained=True), archkit.create_model(
        f"local-dir:{folder}", pretrained=True))
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(archkit.WeightsError, match="refusing to use it"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)
