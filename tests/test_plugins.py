"""Plugin discovery and failure isolation: faked entry points, and a real broken distribution."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from importlib.metadata import EntryPoint

import pytest
import torch

import archkit
import archkit.summary
from archkit import plugins
from archkit.modules import BasicBlock
from archkit.cli import main
from archkit.errors import SpecError
from archkit.attention import AttentionParams
from archkit.catalog import ATTENTION, BLOCKS
from conftest import SPECS


class _Dist:
    def __init__(self, name: str, version: str):
        self.name, self.version, self.metadata = name, version, {"Name": name}


def _ep(name: str, value: str, dist: str, version: str = "1.0", group: str = plugins.BLOCK_GROUP) -> EntryPoint:
    ep = EntryPoint(name=name, value=value, group=group)
    return ep._for(_Dist(dist, version)) if hasattr(ep, "_for") else ep


class GoodBlock(BasicBlock):
    """A healthy plugin block."""


class OtherGoodBlock(BasicBlock):
    """Another plugin's block of the same name."""


class NotABlock:
    """Lacks the contract."""


class OldStyleBlock(BasicBlock):
    """Written for archkit 0.1: (in_channels, planes, ..., norm=, act=) instead of the block's plan."""

    def __init__(self, in_channels, planes, *, stride=1, dilation=1, downsample=None, params, norm, act):  # noqa
        super().__init__(in_channels, planes, stride=stride, dilation=dilation, downsample=downsample, params=params,
                         ctx=None)


class BrokenAttention(AttentionParams):
    """An attention type whose module cannot be built."""

    def build(self, channels: int) -> torch.nn.Module:
        raise RuntimeError("never")


@pytest.fixture
def fake_plugins(monkeypatch):
    """Install a fake module and a list of entry points; restore the real registry afterwards."""
    module = types.ModuleType("fake_archkit_plugin")
    module.GoodBlock, module.OtherGoodBlock, module.NotABlock = GoodBlock, OtherGoodBlock, NotABlock
    module.OldStyleBlock, module.BrokenAttention = OldStyleBlock, BrokenAttention
    monkeypatch.setitem(sys.modules, "fake_archkit_plugin", module)

    def install(*eps: EntryPoint) -> None:
        monkeypatch.setattr(plugins, "_entry_points", lambda group: [e for e in eps if e.group == group])
        plugins.set_enabled(True)

    yield install
    monkeypatch.undo()
    plugins.set_enabled(None)


def _spec(block: str) -> dict:
    return {"name": "p", "input": {"size": [16, 16]}, "stem": [{"type": "conv", "channels": 16}],
            "stages": [{"planes": 16, "depth": 1, "block": {"type": block}}]}


def test_healthy_plugin_is_built_and_reachable_both_ways(fake_plugins) -> None:
    fake_plugins(_ep("good", "fake_archkit_plugin:GoodBlock", "good-dist", "2.1"))
    assert BLOCKS.get("good").origin == "good-dist 2.1"
    for name in ("good", "good_dist:good"):
        assert isinstance(archkit.build_model(_spec(name))[1][0], GoodBlock)


@pytest.mark.parametrize("value, error", [
    ("no_such_module_xyz:Block", "ModuleNotFoundError"),     # fails to import
    ("fake_archkit_plugin:Missing", "AttributeError"),       # names nothing
    ("fake_archkit_plugin:NotABlock", "TypeError"),          # breaks the contract
])
def test_broken_plugin_is_isolated(fake_plugins, value: str, error: str) -> None:
    fake_plugins(_ep("good", "fake_archkit_plugin:GoodBlock", "good-dist"),
                 _ep("bad", value, "bad-dist", "0.3"))
    (broken,) = BLOCKS.broken
    assert (broken.name, broken.distribution, broken.version) == ("bad", "bad-dist", "0.3")
    assert broken.error.startswith(error) and "\n" not in broken.error
    archkit.build_model(_spec("good"))  # healthy plugins and built-ins keep working
    archkit.build_model(SPECS / "resnet18.yaml", device="meta")
    with pytest.raises(SpecError, match=r"'bad' comes from plugin bad-dist 0.3, which failed to load: " + error):
        archkit.build_model(_spec("bad"))


def test_plugin_raising_at_import_is_isolated(fake_plugins, monkeypatch) -> None:
    class Exploding(types.ModuleType):
        def __getattr__(self, name: str):
            raise RuntimeError("boom during registration")
    monkeypatch.setitem(sys.modules, "exploding_plugin", Exploding("exploding_plugin"))
    fake_plugins(_ep("boom", "exploding_plugin:Block", "boom-dist"))
    assert BLOCKS.broken[0].error == "RuntimeError: boom during registration"
    assert "basic" in BLOCKS


def test_two_plugins_same_name_need_qualified_names(fake_plugins) -> None:
    fake_plugins(_ep("twin", "fake_archkit_plugin:GoodBlock", "dist-a"),
                 _ep("twin", "fake_archkit_plugin:OtherGoodBlock", "dist-b"))
    assert isinstance(archkit.build_model(_spec("dist_a:twin"))[1][0], GoodBlock)
    assert isinstance(archkit.build_model(_spec("dist_b:twin"))[1][0], OtherGoodBlock)
    with pytest.raises(SpecError, match=r"'twin' is provided by several plugins: dist_a:twin \(dist-a 1.0\), "
                                        r"dist_b:twin \(dist-b 1.0\)"):
        archkit.build_model(_spec("twin"))


def test_plugin_cannot_replace_a_builtin(fake_plugins, capsys) -> None:
    fake_plugins(_ep("basic", "fake_archkit_plugin:GoodBlock", "sneaky"))
    assert BLOCKS.get("basic").origin == "built-in"
    assert isinstance(archkit.build_model(_spec("sneaky:basic"))[1][0], GoodBlock)
    main(["blocks"])
    assert "sneaky 1.0 also defines block 'basic', which stays built-in's; use sneaky:basic" in capsys.readouterr().out


def test_discovery_is_lazy_cached_and_can_be_turned_off(fake_plugins, monkeypatch) -> None:
    calls = []
    eps = (_ep("good", "fake_archkit_plugin:GoodBlock", "good-dist"),)
    monkeypatch.setattr(plugins, "_entry_points", lambda group: calls.append(group) or eps)
    plugins.set_enabled(True)
    assert calls == []  # nothing loads until a registry is used
    BLOCKS.names(), BLOCKS.names(), BLOCKS.get("good")
    assert calls == [plugins.BLOCK_GROUP]  # once
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    plugins.set_enabled(None)
    assert "good" not in BLOCKS and "basic" in BLOCKS


def _installed(tmp_path, dist: str, version: str, entry: str, module: str, code: str) -> dict:
    """A distribution really on sys.path (dist-info with one archkit.blocks entry point); the env to run with."""
    site = tmp_path / "site"
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[archkit.blocks]\n{entry} = {module}:Block\n")
    (site / f"{module}.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop(plugins.DISABLE_ENV, None)
    return env


@pytest.mark.slow  # three CLI processes with a plugin really on the path
def test_a_really_installed_broken_plugin_changes_nothing_else(tmp_path) -> None:
    """A distribution on sys.path whose entry point fails to import: the CLI still works."""
    env = _installed(tmp_path, "broken-example", "0.9", "broken_block", "broken_example_mod",
                     "raise ImportError('this plugin is broken on purpose')\n")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archkit", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    listing = cli("blocks")
    assert listing.returncode == 0, listing.stderr
    assert "broken_block (archkit.blocks) from broken-example 0.9: ImportError: this plugin is broken on purpose" \
        in listing.stdout
    assert cli("build", str(SPECS / "resnet18.yaml")).returncode == 0
    bad = tmp_path / "uses_broken.yaml"
    bad.write_text(f"base: {SPECS / 'resnet18.yaml'}\nname: b\nblock: {{type: broken_block}}\n")
    result = cli("build", str(bad))
    assert result.returncode == 2 and "broken-example 0.9, which failed to load" in result.stderr
    quiet = cli("--no-plugins", "blocks")
    assert quiet.returncode == 0 and "broken" not in quiet.stdout


def test_plugin_blocks_appear_in_the_schema(fake_plugins, capsys) -> None:
    fake_plugins(_ep("good", "fake_archkit_plugin:GoodBlock", "good-dist"))
    main(["schema"])
    assert '"const": "good"' in capsys.readouterr().out
    x = torch.randn(1, 3, 16, 16)
    assert archkit.build_model(_spec("good"))(x).shape == (1, 16, 16, 16)


def test_one_distribution_seen_twice_is_reported_not_fatal(fake_plugins) -> None:
    fake_plugins(_ep("good", "fake_archkit_plugin:GoodBlock", "same-dist"),
                 _ep("good", "fake_archkit_plugin:OtherGoodBlock", "same-dist"))
    assert BLOCKS.get("same_dist:good").obj.module is GoodBlock
    assert BLOCKS.get("good").obj.module is GoodBlock
    assert "already registered" in BLOCKS.broken[0].error


def test_old_style_plugin_gets_one_line_saying_what_changed(fake_plugins) -> None:
    fake_plugins(_ep("old", "fake_archkit_plugin:OldStyleBlock", "old-dist", "0.1"))
    (broken,) = BLOCKS.broken
    assert broken.error.startswith("TypeError") and "takes (in_channels, planes" in broken.error
    assert "now takes the block's plan" in broken.error
    with pytest.raises(SpecError, match="old-dist 0.1, which failed to load: TypeError: .*now takes the block's plan"):
        archkit.build_model(_spec("old"))


def test_attention_plugins_join_specs_and_are_isolated(fake_plugins) -> None:
    fake_plugins(_ep("never", "fake_archkit_plugin:BrokenAttention", "attn-dist", group=plugins.ATTENTION_GROUP),
                 _ep("gone", "fake_archkit_plugin:Missing", "attn-dist", group=plugins.ATTENTION_GROUP))
    assert ATTENTION.get("never").origin == "attn-dist 1.0"
    assert [b.name for b in ATTENTION.broken] == ["gone"]
    spec = {**_spec("basic"), "block": {"type": "basic", "attn": [{"type": "gone"}]}}
    spec["stages"] = [{"planes": 16, "depth": 1}]
    with pytest.raises(SpecError, match="attention type 'gone' comes from plugin attn-dist 1.0, which failed"):
        archkit.build_model(spec)
    spec["block"]["attn"] = [{"type": "se"}]
    assert archkit.build_model(spec).layer1[0].se is not None  # built-ins unaffected


@pytest.mark.slow  # a process installing a plugin and importing torch._dynamo
def test_a_block_asking_torch_compiler_summarises_through_the_cli(tmp_path) -> None:
    """No stubs of torch internals: a plugin forward calling torch.compiler/torch._dynamo works."""
    env = _installed(tmp_path, "compiling-example", "1.0", "compiling_block", "compiling_example_mod",
                     "import torch\nimport torch._dynamo\nfrom archkit.modules import BasicBlock\n\n"
                     "class Block(BasicBlock):\n    \"\"\"Asks whether it is being compiled.\"\"\"\n\n"
                     "    def forward(self, x):\n"
                     "        assert not torch.compiler.is_compiling() and not torch._dynamo.is_compiling()\n"
                     "        return super().forward(x)\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("base: resnet18\nname: c\nblock: {type: compiling_block}\n")
    result = subprocess.run([sys.executable, "-m", "archkit", "build", str(spec), "--summary"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "11,689,512" in result.stdout and "Block x2" in result.stdout


class OneConvBlock(torch.nn.Module):
    """docs/plugins.md's module-form block, as written there."""

    from archkit.blocks import BlockParams as Params
    expansion = 1
    shortcuts = ("projection", "avg_down", "zero_pad")
    attn_positions = ("pre_add",)

    def __init__(self, b):  # noqa: ANN001
        super().__init__()
        from archkit.build import TorchContext

        t = TorchContext(b.norm, b.act, b)
        self.conv1 = torch.nn.Conv2d(b.in_channels, b.planes, 3, b.stride, 1, bias=False)
        self.bn1, self.relu = t.norm(b.planes), t.act()
        self.se = t.attention("pre_add", b.planes)
        self.downsample = t.shortcut()

    def forward(self, x):  # noqa: ANN001, ANN201
        out = self.bn1(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def test_the_documented_module_form_block_passes_the_contract_check() -> None:
    from archkit.testing import check_block

    check_block(OneConvBlock)
    archkit.register_block("one_conv_test", OneConvBlock)
    try:
        spec = archkit.load_spec("resnet18", ["block.type=one_conv_test", "block.attn=[{type: se}]",
                                               "input.size=[64, 64]"])
        model = archkit.build_model(spec)
        table = archkit.summary.measure(spec)  # measured on meta: the class declares no cost
        assert table.total_params == sum(p.numel() for p in model.parameters())
        assert type(model.layer2[0].se).__name__ == "SEModule" and model.layer2[1].downsample is None
    finally:
        BLOCKS.unregister("one_conv_test")


def test_spec_names_shipped_twice_are_reported(fake_plugins, tmp_path, capsys) -> None:
    """Two plugins shipping one spec name, and a plugin shipping a packaged name: a note each in
    `archkit list` and `archkit blocks`; archkit's own name wins, then entry-point order."""
    from archkit import zoo
    from archkit.cli import main

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "twin.yaml").write_text(f"base: resnet18\nname: twin\ndescription: from {sub}\n")
    (tmp_path / "b" / "resnet50.yaml").write_text("base: resnet18\nname: resnet50\n")
    module = sys.modules["fake_archkit_plugin"]
    module.SPECS_A, module.SPECS_B = str(tmp_path / "a"), str(tmp_path / "b")
    fake_plugins(_ep("a", "fake_archkit_plugin:SPECS_A", "specs-a", group=zoo.SPEC_GROUP),
                 _ep("b", "fake_archkit_plugin:SPECS_B", "specs-b", group=zoo.SPEC_GROUP))
    assert archkit.load_spec("twin").description == "from a"
    assert archkit.load_spec("resnet50").stages[0].block.type == "bottleneck"  # the packaged one
    for command in (["list", "twin"], ["blocks"]):
        assert main(command) == 0
        out = capsys.readouterr().out
        assert f"plugin specs-b also ships spec 'twin'; plugin specs-a's is used (give {tmp_path / 'b' / 'twin.yaml'}" \
            in out
        assert "plugin specs-b also ships spec 'resnet50'; archkit's own is used" in out


def test_a_layer_types_capabilities_are_typed_at_registration() -> None:
    """One declared protocol (LayerParams' class attributes): a wrong type is refused when the plugin loads."""
    from archkit.catalog import check_layer
    from archkit.params import LayerParams

    class Loose(LayerParams):
        classifier = "yes"  # type: ignore[assignment]

    class Fine(LayerParams):
        widths = ("channels", "mid")

    with pytest.raises(TypeError, match="classifier must be bool, got 'yes'"):
        check_layer("loose", Loose)
    assert check_layer("fine", Fine) is Fine and not Fine.classifier and Fine.global_pool is None
