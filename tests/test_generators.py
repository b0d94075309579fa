"""Generators as data: a plugin's ``archkit.generators`` entry point adds a spec key whose numbers make the
stages, and validation, the schema, ``fit``, ``explain`` and ``blocks`` take it with nothing else changed."""

from __future__ import annotations

import json
import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import torchvision
from pydantic import BaseModel

import archkit
from archkit import plugins
from archkit.catalog import GENERATORS
from archkit.cli import main
from archkit.errors import SpecError
from archkit.generators import Axis, Generator


def _documented() -> types.ModuleType:
    """The generator docs/plugins.md §8 shows, executed as written: the doc is the plugin under test."""
    text = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    section = text[text.index("## 8. A generator"):text.index("## 9.")]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("fake_archkit_generators")
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    return module


class Numbers(BaseModel):
    width: int
    depth: int


BROKEN = Generator("broken", Numbers, lambda n: 1 / 0)
WRONG_AXIS = Generator("wrong_axis", Numbers, lambda n: [], axes=(Axis("w_x", "w_x", lambda v: [v]),))


class _Dist:
    def __init__(self, name: str, version: str):
        self.name, self.version, self.metadata = name, version, {"Name": name}


def _ep(name: str) -> EntryPoint:
    ep = EntryPoint(name=name, value=f"fake_archkit_generators:{name.upper()}", group=plugins.GENERATOR_GROUP)
    return ep._for(_Dist("uniform-dist", "1.0")) if hasattr(ep, "_for") else ep


@pytest.fixture
def uniform_plugin(monkeypatch):
    module = _documented()
    module.BROKEN, module.WRONG_AXIS = BROKEN, WRONG_AXIS
    monkeypatch.setitem(sys.modules, "fake_archkit_generators", module)
    eps = [_ep("uniform"), _ep("broken"), _ep("wrong_axis")]
    monkeypatch.setattr(plugins, "_entry_points", lambda group: [e for e in eps if e.group == group])
    plugins.set_enabled(True)
    yield
    monkeypatch.undo()
    plugins.set_enabled(None)


def _resnet18_by(numbers: dict) -> dict:
    """torchvision's ResNet-18 with its stages: replaced by a generator's numbers."""
    data = archkit.load_spec("resnet18").data()
    del data["stages"]
    return {**data, "uniform": numbers}


def test_a_plugin_generator_rebuilds_torchvision_resnet18(uniform_plugin) -> None:
    assert GENERATORS.get("uniform").origin == "uniform-dist 1.0"
    model = archkit.build_model(_resnet18_by({"width": 64, "depth": 2})).eval()
    reference = torchvision.models.resnet18().eval()
    ours = {k: v.shape for k, v in model.state_dict().items()}
    assert ours == {k: v.shape for k, v in reference.state_dict().items()}
    model.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_a_plugin_generator_refusals_are_one_located_line(uniform_plugin, tmp_path, capsys) -> None:
    with pytest.raises(SpecError, match="width 60 is not a multiple of 8") as info:
        archkit.build_model(_resnet18_by({"width": 60, "depth": 2}), device="meta")
    assert info.value.problems[0].field == "uniform.width"
    data = archkit.load_spec("resnet18").data()
    del data["stages"]
    with pytest.raises(SpecError, match="generator 'broken' failed: ZeroDivisionError"):
        archkit.build_model({**data, "broken": {"width": 8, "depth": 1}}, device="meta")
    with pytest.raises(SpecError, match="takes one generator; this one gives uniform and broken"):
        archkit.build_model({**data, "uniform": {"width": 8, "depth": 1}, "broken": {"width": 8, "depth": 1}})
    with pytest.raises(SpecError, match="broken.depth: required field is missing"):
        archkit.build_model({**data, "broken": {"width": 8}}, device="meta")
    assert [b.name for b in GENERATORS.broken] == ["wrong_axis"]
    assert "varies w_x, which its params do not declare" in GENERATORS.broken[0].error
    spec = tmp_path / "u.yaml"
    spec.write_text("base: resnet18\nname: u\nstages: null\nuniform:\n  width: 64\n  depth: 2\n")
    assert main(["validate", str(spec)]) == 2
    assert "u.yaml:3" in capsys.readouterr().err  # stages given beside the generator: refused at their line


def test_schema_blocks_explain_and_fit_read_the_registry(uniform_plugin, tmp_path, capsys) -> None:
    main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    assert "width" in schema["properties"]["uniform"]["properties"]
    assert main(["blocks", "uniform"]) == 0
    assert "numbers fit --vary takes: uniform.width, uniform.depth" in capsys.readouterr().out
    spec = tmp_path / "u.yaml"
    body = {**_resnet18_by({"width": 64, "depth": 2}), "name": "u"}
    del body["weights"]
    spec.write_text(json.dumps(body))
    assert main(["explain", str(spec), "stages.1.planes"]) == 0
    assert "generated by its uniform: numbers" in capsys.readouterr().out
    out = tmp_path / "fit.yaml"
    # ResNet-18 is 1.82 GMACs at 224: 1.2G leaves room for narrower stages or fewer blocks, not both at 64 and 2
    code = main(["fit", str(spec), "--macs", "1.2G", "--vary", "uniform.width,uniform.depth", "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "chosen: width " in printed, printed
    # on its grid (width 32/64/128, depth 1/2/3) the largest under 1.2G is width 64, one block a stage: torchvision's
    # ResNet(BasicBlock, [1, 1, 1, 1]), whose FlopCounterMode MACs and parameters the fit printed
    numbers = archkit.loader.load(out, resolve=archkit.zoo.resolve)["uniform"]
    assert (numbers["width"], numbers["depth"]) == (64, 1), printed
    reference = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    macs = _flop_counter_macs(reference, [224, 224])
    assert f"{macs / 1e9:.3f}" in printed.splitlines()[2] and f"{sum(p.numel() for p in reference.parameters()):,}" \
        in printed.splitlines()[2]
    assert 1.2e9 < _flop_counter_macs(torchvision.models.resnet18(), [224, 224])  # the start was over the budget


def _flop_counter_macs(model: torch.nn.Module, size: list[int]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, *size))
    return counter.get_total_flops() // 2


def test_no_generator_may_take_a_specs_own_key() -> None:
    from archkit.catalog import check_generator
    from archkit.generators.base import SPEC_KEYS
    from archkit.specs import ModelSpec

    assert SPEC_KEYS == set(ModelSpec.model_fields) | {"base"}
    with pytest.raises(TypeError, match="would take the spec's own key layout"):
        check_generator("layout", Generator("layout", Numbers, lambda n: []))
