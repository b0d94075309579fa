"""Every torchvision ResNet rebuilt exactly: parameter count, state_dict keys, outputs, init, MACs."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch.utils.flop_counter import FlopCounterMode

import archkit
from archkit import summary
from conftest import SPECS, TORCHVISION


def _weights_meta(name: str) -> dict:
    """torchvision's published figures for a model (no download: the enum only holds metadata)."""
    weights = tvm.get_model_weights(name)
    return weights.DEFAULT.meta


# over 30 M parameters: torchvision's init of the reference alone takes seconds; under -m slow
LARGE = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in LARGE else []) for n in TORCHVISION])
def test_same_params_keys_and_outputs_as_torchvision(name: str) -> None:
    torch.manual_seed(0)
    reference = getattr(tvm, name)().eval()
    model = archkit.build_model(SPECS / f"{name}.yaml", device="meta")
    ref_state = reference.state_dict()
    assert list(model.state_dict()) == list(ref_state)
    assert sum(p.numel() for p in model.parameters()) == _weights_meta(name)["num_params"]
    model.load_state_dict(ref_state, strict=True, assign=True)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("name", TORCHVISION)
def test_macs_match_torchvision_published_figures(name: str) -> None:
    spec = archkit.load_spec(SPECS / f"{name}.yaml")
    macs = summary.measure(spec).macs
    assert round(macs / 1e9, 3) == _weights_meta(name)["_ops"]
    # the oracle: FlopCounterMode over torchvision's own model counts FLOPs = 2 x MACs
    with torch.device("meta"):
        reference = getattr(tvm, name)()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        reference(torch.empty(1, 3, 224, 224, device="meta"))
    assert 2 * macs == counter.get_total_flops()


def test_dilated_backbone_matches_torchvision() -> None:
    torch.manual_seed(0)
    reference = tvm.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    model = archkit.build_model(SPECS / "resnet50_dilated.yaml", device="meta")
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    model.eval()
    dilations = [m.dilation for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert dilations == [m.dilation for m in reference.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        features = model[:-3](x)  # up to layer4: output stride 8
        assert features.shape == (1, 2048, 8, 8)
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_zeroes_the_same_weights_as_torchvision(name: str) -> None:
    reference = getattr(tvm, name)(zero_init_residual=True)
    model = archkit.build_model(archkit.load_spec(SPECS / f"{name}.yaml", ["init.zero_init_residual=true"]))
    ref_state, state = reference.state_dict(), model.state_dict()
    zeros = {k for k, v in state.items() if v.is_floating_point() and v.numel() and not v.any()}
    ref_zeros = {k for k, v in ref_state.items() if v.is_floating_point() and v.numel() and not v.any()}
    assert zeros == ref_zeros
    assert any(k.endswith(("bn2.weight", "bn3.weight")) for k in zeros)


def test_initialization_follows_torchvision() -> None:
    torch.manual_seed(0)
    reference = tvm.resnet50().state_dict()
    state = archkit.build_model(SPECS / "resnet50.yaml").state_dict()
    for key, ref in reference.items():
        if key.endswith("num_batches_tracked"):
            continue
        value = state[key]
        if "bn" in key or "downsample.1" in key or key.endswith("running_mean") or key.endswith("running_var"):
            assert torch.equal(value, ref), key  # constants: ones, zeros
        elif value.dim() == 4 and value.numel() >= 16384:  # kaiming_normal(fan_out): compare spreads
            assert value.std().item() == pytest.approx(ref.std().item(), rel=0.05), key
    # the classifier keeps PyTorch's default init (uniform, bound 1/sqrt(fan_in)), as torchvision's
    bound = 1 / 2048 ** 0.5
    for key in ("fc.weight", "fc.bias"):
        assert state[key].abs().max().item() <= bound and state[key].std().item() == pytest.approx(
            reference[key].std().item(), rel=0.05)
    assert all(state[k].item() == 0 for k in state if k.endswith("num_batches_tracked"))


def test_each_weight_is_written_once_and_seeds_reproduce() -> None:
    spec = archkit.load_spec(SPECS / "seresnet50.yaml", ["seed=11", "input.size=[32, 32]"])
    a, b = archkit.build_model(spec).state_dict(), archkit.build_model(spec).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # SE convs have biases: PyTorch's default bound, not garbage left by to_empty
    bias = a["layer1.0.se.fc1.bias"]
    assert torch.isfinite(bias).all() and bias.abs().max().item() <= 1 / 256 ** 0.5
