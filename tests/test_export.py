"""Built models go to deployment: ONNX (run in onnxruntime), torch.export, TorchScript, fx, compile."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import archkit
from archkit.modules import BasicBlock
from archkit.cli import main
from archkit.catalog import BLOCKS
from conftest import SPECS

SMALL = ["input.size=[64, 64]"]


@pytest.fixture(scope="module")
def resnet18():
    spec = archkit.load_spec(SPECS / "resnet18.yaml", SMALL + ["seed=0"])
    return spec, archkit.build_model(spec).eval()


@pytest.mark.slow  # the ONNX exporter takes ~8 s; the other export formats run by default
def test_onnx_with_dynamic_batch_runs_in_onnxruntime(resnet18, tmp_path, capsys) -> None:
    spec, model = resnet18
    path = tmp_path / "m.onnx"
    code = main(["export", str(SPECS / "resnet18.yaml"), "--set", "seed=0", "--input-size", "64",
                 "--format", "onnx", "--output", str(path)])  # a dynamic batch by default (issue 36.9)
    out, err = capsys.readouterr()
    assert code == 0 and "batch: dynamic, 1..4096" in out, err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 64)  # another batch size than the example's
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_an_unknown_format_is_an_export_error_and_writes_nothing(resnet18, tmp_path) -> None:
    from archkit.errors import ExportError
    from archkit.export import example_input, export

    spec, model = resnet18
    with pytest.raises(ExportError, match="unknown export format 'tflite'; choose from: onnx, torchscript"):
        export(model, "tflite", tmp_path / "m.tflite", example_input(spec))
    assert list(tmp_path.iterdir()) == []


def test_exported_program_and_torchscript_files(resnet18, tmp_path, capsys) -> None:
    spec, model = resnet18
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
    for fmt, load in (("exported-program", lambda p: torch.export.load(p).module()), ("torchscript", torch.jit.load)):
        path = tmp_path / f"m.{fmt}"
        args = ["export", str(SPECS / "resnet18.yaml"), "--format", fmt, "--output", str(path)]
        assert main([*args, "--set", "seed=0", "--input-size", "64"]) == 0, capsys.readouterr().err
        with torch.inference_mode():
            torch.testing.assert_close(load(str(path))(x), expected)


def test_export_with_checkpoint_weights(tmp_path, capsys) -> None:
    ckpt, out = tmp_path / "w.pt", tmp_path / "m.pt2"
    assert main(["build", str(SPECS / "resnet18.yaml"), "--seed", "3", "--output", str(ckpt)]) == 0
    assert main(["export", str(SPECS / "resnet18.yaml"), "--weights", str(ckpt), "--input-size", "32",
                 "--format", "exported-program", "--output", str(out)]) == 0, capsys.readouterr().err
    reference = archkit.load_checkpoint(ckpt).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(torch.export.load(str(out)).module()(x), reference(x))


def _tiny(block: str) -> dict:
    stride = 2 if BLOCKS.get(block).obj.stride else 1  # (MobileNetV4's attention blocks keep the resolution)
    return {"name": "tiny", "input": {"size": [16, 16]}, "seed": 0, "stage": {"type": BLOCKS.get(block).obj.stage},
            "stem": [{"type": "conv", "channels": 32}, {"type": "norm"}, {"type": "act"}],
            "stages": [{"planes": 16, "depth": 2, "block": {"type": block}},
                       {"planes": 32, "depth": 1, "stride": stride, "block": {"type": block}}],
            "head": [{"type": "adaptive_avgpool"}, {"type": "flatten"}, {"type": "linear", "features": 4}]}


@pytest.mark.parametrize("block", [n for n, _ in BLOCKS.listing()])
def test_every_block_traces_exports_and_scripts(block: str) -> None:
    model = archkit.build_model(_tiny(block)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), expected)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected)
        if BLOCKS.get(block).origin == "built-in":  # built-ins are also scriptable
            torch.testing.assert_close(torch.jit.script(model)(x), expected)


@pytest.mark.slow  # Inductor compiles C++ for ~5 s
def test_torch_compile_matches_eager() -> None:
    model = archkit.build_model(_tiny("bottleneck")).eval()
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


class DataDependent(BasicBlock):
    """A block whose control flow depends on values: not exportable."""

    def forward(self, x):  # noqa: ANN001, ANN201
        if x.sum().item() > 0:
            return super().forward(x)
        return x


def test_untraceable_block_gives_an_error_naming_it(tmp_path, capsys, write) -> None:
    archkit.register_block("data_dependent_test", DataDependent)
    try:
        path = write(f"base: {SPECS / 'resnet18.yaml'}\nname: dd\ninput: {{size: [32, 32]}}\n"
                     "block: {type: data_dependent_test}\n")
        code = main(["export", str(path), "--format", "exported-program", "--output", str(tmp_path / "x.pt2")])
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "block type 'data_dependent_test' (built-in) in layer1 cannot be exported" in err
        assert not (tmp_path / "x.pt2").exists()
    finally:
        BLOCKS.unregister("data_dependent_test")


def test_channels_last_and_bfloat16_autocast(resnet18) -> None:
    """The same numbers as torchvision's resnet18 with the same weights, in channels_last and under
    bfloat16 autocast (bit for bit: the same ops in the same order), and close to float32."""
    import torchvision

    spec, shared = resnet18
    model = archkit.build_model(spec).eval()  # its own copy: the module-scoped model is not mutated
    model.load_state_dict(shared.state_dict())
    reference = torchvision.models.resnet18().eval()
    reference.load_state_dict(shared.state_dict())
    torch.manual_seed(0)
    x = torch.randn(16, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        model, reference = (m.to(memory_format=torch.channels_last) for m in (model, reference))
        xc = x.to(memory_format=torch.channels_last)
        out = model(xc)
        assert torch.equal(out, reference(xc))
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, theirs = model(x), reference(x)
        assert out.dtype == torch.bfloat16 and torch.equal(out, theirs)


def test_summary_of_a_value_reading_block_names_it(capsys, write) -> None:
    archkit.register_block("data_dependent_summary", DataDependent)
    try:
        path = write(f"base: {SPECS / 'resnet18.yaml'}\nname: dd\nblock: {{type: data_dependent_summary}}\n")
        code = main(["build", str(path), "--summary"])
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "layer1.0 (DataDependent) cannot run on the meta device" in err
    finally:
        BLOCKS.unregister("data_dependent_summary")


def test_described_modules_pickle_and_script(resnet18) -> None:
    """A generated block class is rebuilt from its source when unpickled; TorchScript reads that source."""
    import inspect
    import pickle

    _, model = resnet18
    assert "self.downsample(x)" in inspect.getsource(type(model.layer2[0]).forward)
    again = pickle.loads(pickle.dumps(model)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        assert torch.equal(torch.jit.script(model)(x), model(x))
