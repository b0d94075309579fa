"""Train-to-deploy re-parameterization (RepVGG, MobileOne): every re-parameterizable unit's branches —
kxk conv-norms, the 1x1 conv-norm (padded to kxk) and the identity norm (an identity kernel) — folded
into the one convolution with bias its deploy form has (``reparam_conv``), as timm's
``reparameterize_model``, in the same order and dtype.

The deploy model is built from the same spec with ``deploy: true`` (its structure, costs and keys are
the spec's, so deploy checkpoints load strictly and the summary shows the deploy cost); the weights are
computed from the trained model's ``state_dict`` and loaded strictly: nothing is left unconverted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

_SUFFIX = "reparam_conv.weight"


def reparameterize(model: Any) -> Any:
    """The deploy form of an archkit model (a new model, in eval mode; ``model`` is unchanged). A model
    without re-parameterizable units is refused; one already in deploy form is returned as it is."""
    from .build import build
    from .errors import SpecError
    from .plan import has_deploy_form

    spec = getattr(model, "spec", None)
    if spec is None or not hasattr(spec, "deploy"):
        raise TypeError("reparameterize takes a model archkit built (it needs the model's spec)")
    if spec.deploy:
        return model
    update: dict[str, Any] = {"deploy": True}
    features = getattr(model, "return_layers", None) is not None
    if not features and getattr(model, "num_classes", None) is not None:  # a classifier reset since it was built
        from . import loader, specs

        tree = spec.tree()
        loader.set_classes_and_channels(tree, model.num_classes, None)
        spec = specs.validate(tree, f"<{spec.name}>")
    if has_deploy_form(spec) is False:
        raise SpecError(f"{spec.name} has no re-parameterizable blocks or stems (rep, one); nothing to convert")
    deploy_spec = spec.model_copy(update=update)
    indices = [d["index"] for d in model.feature_info] if features else None
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else None
    deployed = build(deploy_spec, device=device, features_only=features, out_indices=indices)
    if first is not None:
        deployed.to(first.dtype)  # fused in the trained model's dtype, as timm's
    target = deployed.state_dict()
    units = [k[: -len(_SUFFIX)] for k in target if k.endswith(_SUFFIX)]
    if not units:
        raise SpecError(f"{spec.name} has no re-parameterizable blocks or stems (rep, one); nothing to convert")
    trained = model.state_dict()
    state = {k: trained[k] for k in target if k in trained}
    for prefix in units:
        kernel, bias = _fused(trained, prefix, target[prefix + _SUFFIX].shape[-1], getattr(spec.norm, "eps", 1e-5))
        state[prefix + "reparam_conv.weight"], state[prefix + "reparam_conv.bias"] = kernel, bias
    deployed.load_state_dict(state, strict=True)
    return deployed.eval()


def _fuse_bn(state: dict, norm: str, kernel: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's ``_fuse_bn_tensor``: the kernel scaled by gamma / std, the bias beta - mean * gamma / std."""
    mean, var = state[f"{norm}.running_mean"], state[f"{norm}.running_var"]
    gamma, beta = state[f"{norm}.weight"], state[f"{norm}.bias"]
    std = (var + eps).sqrt()
    t = (gamma / std).reshape(-1, 1, 1, 1)
    return kernel * t, beta - mean * gamma / std


def _fused(state: dict, p: str, k: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The deploy kernel and bias of the unit at prefix ``p``: the kxk branches summed (RepVGG has one,
    MobileOne several), then + the padded 1x1 (``conv_1x1`` / ``conv_scale``) + the identity, as timm's."""
    names = [f"{p}conv_kxk"] if f"{p}conv_kxk.conv.weight" in state else []
    i = 0
    while f"{p}conv_kxk.{i}.conv.weight" in state:
        names.append(f"{p}conv_kxk.{i}")
        i += 1
    if not names:
        raise KeyError(f"{p or 'the model'}: no conv_kxk branch in the trained weights")
    kernel, bias = _fuse_bn(state, f"{names[0]}.bn", state[f"{names[0]}.conv.weight"], eps)
    for name in names[1:]:
        kb = _fuse_bn(state, f"{name}.bn", state[f"{name}.conv.weight"], eps)
        kernel, bias = kernel + kb[0], bias + kb[1]
    for scale in (f"{p}conv_1x1", f"{p}conv_scale"):
        if f"{scale}.conv.weight" in state:
            ks, bs = _fuse_bn(state, f"{scale}.bn", state[f"{scale}.conv.weight"], eps)
            pad = k // 2
            kernel, bias = kernel + F.pad(ks, [pad, pad, pad, pad]), bias + bs
    if f"{p}identity.weight" in state:
        ident = torch.zeros_like(kernel)
        input_dim = kernel.shape[1]
        for c in range(kernel.shape[0]):
            ident[c, c % input_dim, k // 2, k // 2] = 1
        ki, bi = _fuse_bn(state, f"{p}identity", ident, eps)
        kernel, bias = kernel + ki, bias + bi
    return kernel, bias
