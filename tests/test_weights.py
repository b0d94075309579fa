"""Models by name and pretrained weights: packaged specs, declared weights downloaded from a local HTTP
server (127.0.0.1, files the test generates), hash checks, the cache, transfer plans, safetensors.

Nothing here reaches outside the machine; the declared URLs of shipped specs are never fetched.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision
from timm.models import adapt_input_conv

import archkit
from archkit.cli import main
from conftest import ROOT

PROBE = torch.randn(2, 3, 64, 64)


@pytest.fixture(scope="module")
def reference() -> tuple[torch.nn.Module, bytes, str]:
    """torchvision's resnet50 (random init), its state_dict file bytes and their SHA-256."""
    torch.manual_seed(1)
    model = torchvision.models.resnet50().eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    return model, data, hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        mode, body = self.files.get(self.path, ("404", b""))
        if mode == "404":
            self.send_error(404, "Not Found")
        elif mode == "drop":  # the connection closes before any response
            self.close_connection = True
            self.connection.shutdown(2)
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if mode == "ok" else body[: len(body) // 3])  # "truncated": then closes

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def server(reference):
    """A local HTTP server on 127.0.0.1 serving the generated checkpoint in several ways."""
    _, data, _ = reference
    _Handler.files = {"/resnet50-test.pth": ("ok", data), "/truncated.pth": ("truncated", data),
                      "/dropped.pth": ("drop", data)}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _spec(tmp_path: Path, url: str, sha256: str) -> Path:
    path = tmp_path / "r50_local.yaml"
    path.write_text(f"base: resnet50\nname: r50_local\nweights:\n  test:\n    url: {url}\n"
                    f"    sha256: '{sha256}'\n    format: torchvision\n    meta: {{num_classes: 1000}}\n")
    return path


def test_declared_weights_download_verify_cache_and_load(tmp_path, server, cache, reference, monkeypatch) -> None:
    ref, _, digest = reference
    spec = _spec(tmp_path, f"{server}/resnet50-test.pth", digest)
    model = archkit.create_model(spec, weights="test").eval()
    assert model.transfer_plan.params_transferred == model.transfer_plan.params_total == 25_557_032
    with torch.no_grad():
        assert torch.equal(model(PROBE), ref(PROBE))
    (cached,) = [p for p in cache.iterdir()]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    # offline with a cached file works; the file is verified again before use
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    again = archkit.create_model(spec, weights="test").eval()
    with torch.no_grad():
        assert torch.equal(again(PROBE), ref(PROBE))
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")  # tampered in the cache
    with pytest.raises(archkit.WeightsError, match="cached file .* has SHA-256 .* expected"):
        archkit.create_model(spec, weights="test")


def test_hub_weights_without_a_hash_are_trusted_on_first_use(tmp_path, server, cache, capsys) -> None:
    """A timm hub file (safetensors, no published hash), as test_resnet declares one, served locally."""
    import timm

    torch.manual_seed(2)
    theirs = timm.create_model("test_resnet").eval()
    data = safetensors.torch.save(theirs.state_dict())
    route = "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors"
    _Handler.files[route] = ("ok", data)
    declared = archkit.load_spec("test_resnet").weights["r160_in1k"]
    assert declared.sha256 is None and declared.url.endswith(route)  # the shipped declaration
    spec = tmp_path / "hub.yaml"
    spec.write_text(f"base: test_resnet\nname: hub\nweights:\n  r160_in1k:\n    url: {server}{route}\n"
                    "    format: timm\n")
    model = archkit.create_model(spec, pretrained=True).eval()
    rendered = model.transfer_plan.render()
    digest = hashlib.sha256(data).hexdigest()
    assert f"trusted on first download, SHA-256 {digest[:16]}" in rendered
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), theirs(x))
    (cached,) = [p for p in cache.iterdir() if not p.name.endswith(".sha256")]
    assert (cache / (cached.name + ".sha256")).read_text().strip() == digest
    cached.write_bytes(data[:-4] + b"\0\0\0\0")  # changed after the first use: refused
    with pytest.raises(archkit.WeightsError, match=f"not the {digest} recorded on first download"):
        archkit.create_model(spec, pretrained=True)


@pytest.mark.parametrize("path, sha, fragment", [
    ("/resnet50-test.pth", "0" * 64, "does not match the declared"),
    ("/truncated.pth", None, "connection closed after"),
    ("/missing.pth", None, "HTTP 404"),
    ("/dropped.pth", None, "cannot download"),
])
def test_bad_downloads_give_one_line_and_leave_nothing(tmp_path, server, cache, reference, capsys, path, sha,
                                                       fragment) -> None:
    spec = _spec(tmp_path, f"{server}{path}", sha or reference[2])
    code = main(["build", str(spec), "--weights", "test", "--output", str(tmp_path / "out.pt")])
    out, err = capsys.readouterr()
    assert code == 1 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "out.pt").exists()
    assert not cache.exists() or not list(cache.iterdir())  # no partial or mismatched file stays


def test_offline_without_a_cached_file_names_the_url_and_cache(tmp_path, cache, capsys) -> None:
    spec = _spec(tmp_path, "http://127.0.0.1:9/resnet50-abcdef12.pth", "abcdef12")
    assert main(["build", str(spec), "--weights", "test"]) == 1
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/resnet50-abcdef12.pth" in err and str(cache / "resnet50-abcdef12.pth") in err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, reference) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "resnet50-test.pth"
    path.write_bytes(reference[1])
    return path


def test_new_classifier_keeps_every_other_tensor(checkpoint, reference) -> None:
    model = archkit.create_model("resnet50", weights=checkpoint, num_classes=10)
    plan = model.transfer_plan
    assert (plan.params_transferred, plan.params_total) == (23_508_032, 23_528_522)
    assert [i.key for i in plan.of("reinit")] == ["fc.weight", "fc.bias"]
    source = reference[0].state_dict()
    for key, value in model.state_dict().items():
        assert key.startswith("fc.") or torch.equal(value, source[key]), key
    assert model.fc.out_features == 10


@pytest.mark.parametrize("in_chans", [1, 4])
def test_first_conv_is_adapted_for_other_input_channels(checkpoint, reference, in_chans: int) -> None:
    model = archkit.create_model("resnet50", weights=checkpoint, in_chans=in_chans)
    expected = adapt_input_conv(in_chans, reference[0].conv1.weight.detach().clone())  # timm's rule
    assert torch.equal(model.conv1.weight, expected)
    if in_chans == 1:
        assert torch.equal(model.conv1.weight, reference[0].conv1.weight.sum(dim=1, keepdim=True))
    assert [i.key for i in model.transfer_plan.of("adapted")] == ["conv1.weight"]


def test_added_attention_is_reinitialized_and_listed(checkpoint, reference) -> None:
    model = archkit.create_model("seresnet50", weights=checkpoint)
    plan = model.transfer_plan
    source = reference[0].state_dict()
    assert {i.key for i in plan.of("copied")} == set(source)  # every original tensor copied
    reinit = plan.of("reinit")
    assert reinit and all(".se." in i.key for i in reinit) and len(reinit) == 16 * 4
    assert not plan.of("unused") and not plan.of("mismatch")


def test_a_shape_change_outside_the_rules_is_refused_unless_partial(checkpoint, capsys) -> None:
    with pytest.raises(archkit.WeightsError, match="differ in shape outside the transfer rules"):
        archkit.create_model("resnet50", weights=checkpoint, width_multiplier=0.5)
    model = archkit.create_model("resnet50", weights=checkpoint, width_multiplier=0.5, allow_partial=True)
    assert model.transfer_plan.of("reinit")
    assert main(["build", "resnet50", "--set", "width_multiplier=0.5", "--weights", str(checkpoint)]) == 2
    assert "--allow-partial" in capsys.readouterr().err


def test_cli_prints_the_plan_and_json_has_it(checkpoint, capsys) -> None:
    assert main(["build", "resnet50", "--weights", str(checkpoint), "--num-classes", "10", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "transferred 23,508,032 of 23,528,522 parameters" in out and "classifier: 1000 -> 10 classes" in out
    assert main(["build", "resnet50", "--weights", str(checkpoint), "--num-classes", "10", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["transfer"]["params_transferred"] == 23_508_032 and data["total_params"] == 23_528_522


def test_safetensors_round_trip(tmp_path, capsys) -> None:
    path = tmp_path / "m.safetensors"
    assert main(["build", "resnet18", "--seed", "3", "--output", str(path)]) == 0
    model = archkit.load_checkpoint(path).eval()
    again = archkit.build_model(archkit.load_spec("resnet18", ["seed=3"])).eval()
    with torch.no_grad():
        assert torch.equal(model(PROBE), again(PROBE))
    assert set(safetensors.torch.load_file(str(path))) == set(again.state_dict())
    # safetensors files from the hubs load as weights too
    assert archkit.create_model("resnet18", weights=path).transfer_plan.params_transferred == 11_689_512


class _Evil:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_bad_weights_give_one_line_exit_2_and_write_nothing(tmp_path, capsys) -> None:
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"conv1.weight": _Evil()}, fh)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    alien = tmp_path / "alien.pth"
    torch.save({"encoder.block.weight": torch.zeros(3)}, alien)
    out = tmp_path / "out.pt"
    cases = [("IMAGENET1K_V3", "did you mean 'IMAGENET1K_V2'"), (str(text), "not a readable checkpoint"),
             (str(evil), "would run code"), (str(alien), "no tensor of the checkpoint matches")]
    for weights, fragment in cases:
        code = main(["build", "resnet50", "--weights", weights, "--output", str(out)])
        _, err = capsys.readouterr()
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (weights, err)
        assert not out.exists()


def test_names_work_from_anywhere(tmp_path) -> None:
    (tmp_path / "resnet50").write_text("not this one")  # a local file of the same name is not taken for a name
    result = subprocess.run([sys.executable, "-m", "archkit", "build", "resnet50", "--summary"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "25,557,032" in result.stdout
    user = tmp_path / "mine.yaml"
    user.write_text("base: resnet50\nname: mine\nhead:\n  - {type: adaptive_avgpool}\n  - {type: flatten}\n"
                    "  - {name: fc, type: linear, features: 7}\n")
    assert archkit.build_model(user, device="meta").fc.out_features == 7
    assert "resnet50" in archkit.list_models("resnet*") and "darknet53" not in archkit.list_models("resnet*")
    with pytest.raises(archkit.SpecError, match="no spec named 'resnet5'.*did you mean 'resnet50'"):
        archkit.load_spec("resnet5")


def test_list_shows_names_parameters_and_weights(capsys) -> None:
    assert main(["list", "resnet5*"]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    row = next(line for line in lines if line.startswith("resnet50 "))
    assert "25,557,032" in row and "4.089" in row and "IMAGENET1K_V2, IMAGENET1K_V1, a1_in1k" in row
    # grouped by family: each group's header counts its rows
    group = lines.index("ResNet-C, -D, -S, -T (deep stems) (4)")
    assert {line.split()[0] for line in lines[group + 1:group + 5]} == {"resnet50c", "resnet50d", "resnet50s", "resnet50t"}
    assert lines.index("ResNet (3)") < lines.index(row)
    assert main(["list", "nothing*"]) == 2


def test_declared_weights_are_torchvisions_facts() -> None:
    from torchvision.models import ResNet50_Weights, Wide_ResNet101_2_Weights

    for name, enum in (("resnet50", ResNet50_Weights), ("wide_resnet101_2", Wide_ResNet101_2_Weights)):
        spec = archkit.load_spec(name)
        for member in enum:
            declared = spec.weights[member.name]
            assert declared.url == member.url and member.url.endswith(f"-{declared.sha256}.pth")
            assert declared.meta.accuracy["imagenet1k_top1"] == member.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            assert declared.meta.resize_size == member.transforms.keywords.get("resize_size", 256)
    assert not archkit.load_spec("resnet50_dilated").weights  # not inherited through base:


@pytest.mark.slow  # builds a wheel in a subprocess
def test_the_wheel_ships_the_specs(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("archkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "archkit/zoo/resnet50.yaml" in names and "archkit/zoo/cifar_resnet20.yaml" in names
