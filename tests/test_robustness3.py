"""A hostile trial of fit, the weights cache, downloads, dtypes, plugins' declarations and outputs
(issue 21): each case through the CLI, as a user meets it. Downloads come from a local HTTP server
on 127.0.0.1 serving bytes the test generates."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

import archkit
from archkit.catalog import ATTENTION, BLOCKS
from archkit.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- fit writes what it measured --------------------------------------------------------------------

def _macs(capsys, path: Path) -> tuple[int, int]:
    code, out, err = run(capsys, "build", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    return data["total_params"], data["macs"]


@pytest.mark.parametrize("extra", [
    ["--set", "block.attn=[{type: se}]", "--set", "stages.3.depth=1"],
    ["--input-size", "128"],
    ["--set", "block={type: bottleneck}", "--set", "stages.3.depth=2"],  # replaces a mapping the base extends
])
def test_fit_writes_exactly_what_it_measured(tmp_path, capsys, extra) -> None:
    out = tmp_path / "fit.yaml"
    code, text, err = run(capsys, "fit", "resnet50d", "--macs", "1.5G", *extra, "--output", str(out))
    assert code == 0, err
    header = out.read_text().splitlines()[0]
    params, macs = _macs(capsys, out)
    assert header.endswith(f"{params:,} parameters, {macs / 1e9:.3f} GMACs"), (header, params, macs)
    chosen = [line for line in text.splitlines() if line.startswith("chosen:")][0]
    assert f"{macs / 1e9:.3f} GMACs" in chosen and macs <= 1.5e9


@pytest.mark.parametrize("name", ["resnet34 #v2.yaml", "odd: name.yaml", "new\nline.yaml"])
def test_fit_quotes_every_name_it_writes(tmp_path, capsys, name) -> None:
    base = tmp_path / name
    base.write_text("base: resnet34\nname: small34\nstages:\n  - {planes: 32, depth: 2}\n  - {planes: 64, depth: 2, "
                    "stride: 2}\n  - {planes: 128, depth: 2, stride: 2}\n  - {planes: 256, depth: 2, stride: 2}\n")
    out = tmp_path / "fit.yaml"
    code, _, err = run(capsys, "fit", str(base), "--macs", "0.5G", "--output", str(out))
    assert code == 0, err
    header = out.read_text().splitlines()[0]
    params, macs = _macs(capsys, out)
    assert header.endswith(f"{params:,} parameters, {macs / 1e9:.3f} GMACs")
    assert params < 5_000_000  # the written base is this file, not the packaged resnet34 (21.8 M)


def test_fit_refuses_an_output_that_is_also_its_plot(tmp_path, capsys) -> None:
    same = tmp_path / "same.svg"
    code, _, err = run(capsys, "fit", "resnet18", "--macs", "1G", "--output", str(same), "--plot", str(same))
    assert code == 2 and "is also another output of this command" in one_line(err)
    assert not same.exists()


def test_fit_over_regnet_numbers_the_docs_name(tmp_path, capsys) -> None:
    code, out, err = run(capsys, "fit", "regnet_x_400mf", "--macs", "800M", "--vary", "bottleneck_multiplier")
    assert code == 0 and "chosen: bottleneck" in out, err
    code, _, err = run(capsys, "validate", "regnet_x_400mf", "--set", "regnet.bottleneck_multiplier=0.01")
    assert code == 2 and "--set regnet.bottleneck_multiplier=0.01" in one_line(err) and "without inner" in err


def test_a_search_too_large_to_walk_is_sampled(capsys) -> None:
    started = time.monotonic()
    code, out, err = run(capsys, "fit", "regnet_x_400mf", "--macs", "800M", "--vary", "w_a,w_0,w_m,group_width,depth")
    assert code == 0 and "(sampled: 840 combinations of the grid numbers, too many to walk)" in out, err
    code, _, err = run(capsys, "fit", "regnet_x_400mf", "--macs", "800M", "--set", "regnet.w_0=65536",
                       "--vary", "w_a,w_0")
    assert code == 2 and "no w_a and w_0" in one_line(err)  # a bounded grid: answered, not hours
    assert time.monotonic() - started < 60


def test_stages_set_on_a_regnet_are_refused_not_dropped(capsys) -> None:
    code, _, err = run(capsys, "validate", "regnet_x_400mf", "--set", "stages.0.block.groups=2")
    assert code == 2 and "generates its stages" in one_line(err)


# --- the weights cache and downloads ----------------------------------------------------------------

def _torch_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def r18() -> tuple[torch.nn.Module, bytes]:
    torch.manual_seed(3)
    model = torchvision.models.resnet18().eval()
    return model, _torch_bytes(model)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self) -> None:  # noqa: N802
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        route(self)

    def log_message(self, *args) -> None:
        pass


def _ok(body: bytes, **headers: str):
    def send(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.end_headers()
        h.wfile.write(body)
    return send


def _endless(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.end_headers()
    h.close_connection = True
    try:
        while True:
            h.wfile.write(b"\x80" * 65536)
    except OSError:
        pass


def _slow(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    try:
        for _ in range(1000):
            h.wfile.write(b"\x80")
            h.wfile.flush()
            time.sleep(0.2)
    except OSError:
        pass


def _redirect(to: str):
    def send(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", to)
        h.end_headers()
    return send


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_a_hash_in_a_file_name_is_checked_and_hosts_never_share_entries(tmp_path, server, cache, r18,
                                                                        capsys) -> None:
    url, port = server
    model, data = r18
    digest = hashlib.sha256(data).hexdigest()
    _Handler.routes["/resnet18-f37072fd.pth"] = _ok(data)  # torchvision's name, other bytes
    code, _, err = run(capsys, "build", "resnet18", "--weights", f"{url}/resnet18-f37072fd.pth")
    assert code == 1 and "does not match the file name's f37072fd" in one_line(err)
    assert not cache.exists() or not [p for p in cache.iterdir()]
    # the same file name on two hosts, no hash anywhere: two entries, each trusted on its own first use
    _Handler.routes["/r18.pth"] = _ok(data)
    for host in ("127.0.0.1", "localhost"):
        code, out, err = run(capsys, "build", "resnet18", "--weights", f"http://{host}:{port}/r18.pth")
        assert code == 0 and "trusted on first download" in out, err
    entries = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".sha256"))
    assert len(entries) == 2 and all(e.endswith("-r18.pth") for e in entries)
    assert all((cache / f"{e}.sha256").read_text().strip() == digest for e in entries)
    # deleting the file does not reset what was trusted: a changed file is refused, naming the record
    (cache / entries[0]).unlink()
    (cache / entries[1]).unlink()
    torch.manual_seed(4)
    _Handler.routes["/r18.pth"] = _ok(_torch_bytes(torchvision.models.resnet18()))
    code, _, err = run(capsys, "build", "resnet18", "--weights", f"{url}/r18.pth")
    assert code == 1 and "recorded on the first download" in one_line(err) and ".sha256 to trust" in err


@pytest.mark.parametrize("route, handler, fragment", [
    ("/endless.pth", _endless, "more than 100,000 bytes, the download limit"),
    ("/big.pth", _ok(b"\x80" * 200_000), "200,000 bytes, above the download limit of 100,000"),
    ("/slow.pth", _slow, "not complete after 2 s"),
    ("/gzip.pth", _ok(gzip.compress(b"\x80" * 100), Content_Encoding="gzip"), "gzip-encoded"),
    ("/garbage.pth", _ok(b"<html>not found</html>"), "not a weights file"),
    ("/ftp.pth", _redirect("ftp://127.0.0.1/x.pth"), "only http(s) redirects"),
])
def test_downloads_are_bounded_and_checked(tmp_path, server, cache, capsys, monkeypatch, route, handler,
                                           fragment) -> None:
    url, _ = server
    _Handler.routes[route] = handler
    monkeypatch.setenv("ARCHKIT_MAX_DOWNLOAD_BYTES", "100000")
    monkeypatch.setenv("ARCHKIT_DOWNLOAD_TIMEOUT", "2")
    started = time.monotonic()
    code, _, err = run(capsys, "build", "resnet18", "--weights", url + route, "--output", str(tmp_path / "o.pt"))
    assert code == 1 and fragment in one_line(err)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "o.pt").exists()
    assert not cache.exists() or not list(cache.iterdir())  # no partial, oversized or untrusted file stays


def test_file_urls_are_files(tmp_path, capsys, r18) -> None:
    path = tmp_path / "r18.pth"
    path.write_bytes(r18[1])
    code, out, err = run(capsys, "build", "resnet18", "--weights", path.as_uri())
    assert code == 0 and "transferred 11,689,512 of 11,689,512" in out, err
    code, _, err = run(capsys, "build", "resnet18", "--weights", "file:///dev/zero")
    assert code == 2 and "/dev/zero: not a regular file" in one_line(err)
    code, _, err = run(capsys, "build", "resnet18", "--weights", "ftp://127.0.0.1/x.pt")
    assert code == 2 and "ftp:// is not supported" in one_line(err)


# --- tensors keep their dtype -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.bool, torch.complex64, torch.float8_e4m3fn])
def test_weights_of_another_kind_of_dtype_are_refused(tmp_path, capsys, r18, dtype) -> None:
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({k: v.to(dtype) if v.is_floating_point() else v
                                 for k, v in r18[0].state_dict().items()}, str(path))
    code, out, err = run(capsys, "build", "resnet18", "--weights", str(path), "--output", str(tmp_path / "o.pt"))
    name = str(dtype).replace("torch.", "")
    assert code == 2 and f"tensor conv1.weight is {name}, the model's is float32" in one_line(err)
    assert not (tmp_path / "o.pt").exists()


def test_floating_weights_are_cast_and_the_plan_says_so(tmp_path, capsys, r18) -> None:
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({k: v.half() if v.is_floating_point() else v
                                 for k, v in r18[0].state_dict().items()}, str(path))
    code, out, err = run(capsys, "build", "resnet18", "--weights", str(path))
    assert code == 0 and "cast from float16" in out, err


# --- nothing overwrites its own input -------------------------------------------------------------------

def test_export_never_replaces_the_weights_it_reads(tmp_path, capsys, r18) -> None:
    weights = tmp_path / "r18copy.pt"
    weights.write_bytes(r18[1])
    spec = tmp_path / "decl.yaml"
    spec.write_text("base: resnet18\nname: decl\nweights:\n  W: {file: r18copy.pt}\n")
    before = weights.read_bytes()
    for ref in ("W", "decl.yaml:W"):
        code, _, err = run(capsys, "export", str(spec), "--weights", ref if ref == "W" else f"{spec}:W",
                           "--format", "torchscript", "--output", str(weights))
        assert code == 2 and "is also an input of this command" in one_line(err)
    link = tmp_path / "link.pt"
    link.symlink_to(weights)
    code, _, err = run(capsys, "build", str(spec), "--weights", "W", "--output", str(link))
    assert code == 2 and "is also an input" in one_line(err)
    assert weights.read_bytes() == before


def test_an_output_named_after_a_base_file_is_refused(tmp_path, capsys) -> None:
    base = tmp_path / "parent.yaml"
    base.write_text("base: resnet18\nname: parent\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: parent.yaml\nname: child\n")
    code, _, err = run(capsys, "build", str(child), "--output", str(base))
    assert code == 2 and "is also an input" in one_line(err)
    assert base.read_text() == "base: resnet18\nname: parent\n"


def test_an_empty_output_name_is_an_error(capsys) -> None:
    code, _, err = run(capsys, "build", "resnet18", "--output", "")
    assert code == 2 and "--output needs a file name" in one_line(err)


# --- weights entries and plugins' declarations ------------------------------------------------------

def test_a_weights_entry_needs_one_place(tmp_path, capsys) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text("base: resnet18\nname: w\nweights:\n  a: {sha256: 'abcdef12'}\n"
                    "  b: {url: 'http://127.0.0.1/y.pt', file: y.pt}\n")
    code, _, err = run(capsys, "validate", str(spec))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert "w.yaml:4:3: weights.a: declares neither url: nor file:" in lines[0]
    assert "weights.b: declares both url: and file:" in lines[1]


def test_a_relative_file_given_on_the_command_line_is_relative_to_the_working_directory(
        tmp_path, capsys, monkeypatch, r18) -> None:
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "s.yaml"
    spec.write_text("base: resnet18\nname: s\n")
    (tmp_path / "w.pt").write_bytes(r18[1])
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "build", "specs/s.yaml", "--set", "weights.mine.file=w.pt", "--weights", "mine")
    assert code == 0 and "transferred 11,689,512" in out, err


def test_guards_count_on_meta_not_on_a_plugins_word(tmp_path, capsys) -> None:
    from archkit.complexity import Cost
    from archkit.modules import BasicBlock

    class Lying(BasicBlock):
        """Declares one parameter."""

        @classmethod
        def cost(cls, b):  # noqa: ANN001, ANN206
            return Cost(1, 1, 1)

    archkit.register_block("lying_cost_test", Lying)
    try:
        code, _, err = run(capsys, "build", "resnet18", "--set", "block.type=lying_cost_test",
                           "--max-params", "1000000", "--output", str(tmp_path / "o.pt"))
        assert code == 2 and "11,689,512 parameters, above the limit of 1,000,000" in one_line(err)
        assert not (tmp_path / "o.pt").exists()
    finally:
        BLOCKS.unregister("lying_cost_test")


def test_a_plugin_that_changes_the_channels_is_caught_before_saving(tmp_path, capsys) -> None:
    from archkit.attention import AttentionParams

    class Halving(AttentionParams):
        """Halves the channels (and says nothing of it)."""

        def build(self, channels: int):  # noqa: ANN201
            return torch.nn.Conv2d(channels, channels // 2, 1)

    ATTENTION.register("halving_test", Halving, kind="attention")
    try:
        out = tmp_path / "o.pt"
        code, _, err = run(capsys, "build", "resnet18", "--set", "block.attn=[{type: halving_test, position: post_add}]",
                           "--output", str(out))
        assert code == 2 and "stages[0]: layer1 fails to run: Given groups=1" in one_line(err)
        assert not out.exists()
    finally:
        ATTENTION.unregister("halving_test")


def test_a_block_that_gives_other_channels_than_declared_is_named(tmp_path, capsys) -> None:
    from archkit.modules import BasicBlock

    class Narrowing(BasicBlock):
        """Gives half the channels it declares."""

        def forward(self, x):  # noqa: ANN001, ANN201
            out = super().forward(x)
            return out[:, : out.shape[1] // 2]

    archkit.register_block("widening_test", Narrowing)
    try:
        code, _, err = run(capsys, "build", "resnet18", "--set", "stages.3.depth=1", "--set",
                           "stages.3.block.type=widening_test",
                           "--output", str(tmp_path / "o.pt"))
        assert code == 2 and "stages[3]: layer4: the built module gives (256, 7, 7), the plan (512, 7, 7)" \
            in one_line(err)
        assert not (tmp_path / "o.pt").exists()
    finally:
        BLOCKS.unregister("widening_test")


# --- what archkit prints, odd inputs --------------------------------------------------------------------

def test_terminal_escapes_from_a_spec_are_printed_escaped(tmp_path, capsys) -> None:
    spec = tmp_path / "esc.yaml"
    spec.write_text('base: resnet18\nname: "x\\e[31mred\\u202e"\n')
    for argv in (["build", str(spec), "--summary"], ["validate", str(spec)], ["diff", str(spec), "resnet18"]):
        code, out, err = run(capsys, *argv)  # refused (issue 31: a name is printable), and said escaped
        assert code == 2 and "\x1b" not in out + err and "\u202e" not in out + err
        assert err.strip().endswith("name: holds the control character '\\x1b'; write printable text"), err


def test_a_model_is_float32_whatever_the_default_dtype(capsys, monkeypatch, tmp_path) -> None:
    import sys
    from importlib.metadata import EntryPoint

    from archkit import plugins

    (tmp_path / "dtype_plugin.py").write_text("import torch\ntorch.set_default_dtype(torch.float64)\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        plugins.load_isolated(EntryPoint(name="x", value="dtype_plugin:X", group=plugins.BLOCK_GROUP))
        assert torch.get_default_dtype() == torch.float32
        assert "set torch's default dtype to float64 at import; restored to float32" in capsys.readouterr().err
        torch.set_default_dtype(torch.float64)  # a caller's (or a plugin's, later) global setting
        model = archkit.build_model("resnet18", device="meta")
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    finally:
        torch.set_default_dtype(torch.float32)
        sys.modules.pop("dtype_plugin", None)


def test_an_empty_stem_builds_runs_and_has_no_stem_feature(tmp_path, capsys) -> None:
    spec = tmp_path / "nostem.yaml"
    spec.write_text("base: resnet18\nname: nostem\nstem: []\n")
    model = archkit.create_model(spec, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert archkit.create_model(spec, features_only=True).feature_info.reduction() == [1, 2, 4, 8]
    with pytest.raises(archkit.SpecError, match="this spec has no stem, so no 0"):
        archkit.create_model(spec, features_only=True, out_indices=[0, 1])


def test_odd_requests_get_one_line(tmp_path, capsys) -> None:
    for argv, fragment in (
        (["draw", "resnet18", "--output", str(tmp_path / "x.png")], "--output writes SVG"),
        (["fit", "resnet18", "--macs", "1G", "--plot", str(tmp_path / "p.png")], "--plot writes SVG"),
        (["build", "resnet18", "--weights", "resnet5:IMAGENET1K_V1"], "no spec named 'resnet5' (SPEC:NAME takes a spec's declared weights); did you mean 'resnet50'?"),
        (["export", "resnet18", "--input-size", "65536", "--format", "torchscript", "--output",
          str(tmp_path / "m.pt")], "needs at least 1,024.0 GiB"),
        (["validate", "regnet_y_400mf", "--set", "regnet.se_ratio=0.0001"], "would give 0"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and fragment in one_line(err), (argv, err)
    assert not list(tmp_path.iterdir())
    with pytest.raises(archkit.SpecError, match="not a list"):
        archkit.load_spec(["resnet18"])


def test_a_deeply_nested_stored_spec_is_one_line(tmp_path, capsys, r18) -> None:
    path = tmp_path / "deep.safetensors"
    safetensors.torch.save_file(r18[0].state_dict(), str(path),
                                metadata={"format": "archkit-checkpoint", "spec": "[" * 100_000 + "]" * 100_000})
    code, _, err = run(capsys, "build", "resnet18", "--weights", str(path))
    assert code == 2 and "nests too deep" in one_line(err)
    with pytest.raises(archkit.CheckpointError, match="nests too deep"):
        archkit.load_checkpoint(path)


def test_an_overlong_url_file_name_is_cached_under_a_short_name(server, cache, r18, capsys) -> None:
    url, _ = server
    route = "/" + "w" * 400 + ".pth"
    _Handler.routes[route] = _ok(r18[1])
    code, out, err = run(capsys, "build", "resnet18", "--weights", url + route)
    assert code == 0 and "transferred 11,689,512" in out, err
    assert all(len(p.name) < 160 for p in cache.iterdir())
