"""The transfer plan: which tensors of a checkpoint go where in a model, decided before anything loads.

Fine-tuning a variant from pretrained weights (another class count, another number of input
channels, added attention, deeper stages) needs more than ``strict=False``. The plan is computed
from the model's expected keys and shapes (a meta-device model is enough) and the checkpoint's, and
says for every tensor whether it is:

- ``copied``: same key, same shape;
- ``adapted``: the first convolution for another ``in_chans``: the RGB kernels summed for one
  channel, else repeated and scaled by 3/in_chans (timm's ``adapt_input_conv``);
- ``reinit``: kept as initialized: the classifier for another class count, or a tensor the
  checkpoint lacks (new attention modules, extra blocks);
- ``unused``: in the checkpoint, not in the model;
- ``mismatch``: same key, another shape, outside the rules above: refused unless ``allow_partial``
  (then re-initialized), so a partial load is never silent.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import torch
from torch import nn

from .errors import WeightsError

ACTIONS = ("copied", "adapted", "reinit", "unused", "mismatch")


@dataclasses.dataclass(frozen=True)
class Item:
    """One tensor's fate."""

    key: str
    action: str
    shape: tuple[int, ...] | None  # in the model (None: unused)
    source_shape: tuple[int, ...] | None  # in the checkpoint (None: absent)
    numel: int
    parameter: bool  # a parameter (else a buffer such as running_mean)
    note: str = ""


@dataclasses.dataclass
class TransferPlan:
    """Every tensor's fate and the share of parameters transferred."""

    source: str
    items: list[Item]
    provenance: str = ""  # how the file was checked: a declared hash, trust on first use, or none

    def of(self, action: str) -> list[Item]:
        """The items with ``action``."""
        return [i for i in self.items if i.action == action]

    @property
    def params_total(self) -> int:
        """Parameters of the model."""
        return sum(i.numel for i in self.items if i.parameter and i.action != "unused")

    @property
    def params_transferred(self) -> int:
        """Parameters copied or adapted from the checkpoint."""
        return sum(i.numel for i in self.items if i.parameter and i.action in ("copied", "adapted"))

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain data (``--json``'s ``transfer``)."""
        return {"source": self.source, "provenance": self.provenance, "params_total": self.params_total,
                "params_transferred": self.params_transferred,
                "counts": {a: len(self.of(a)) for a in ACTIONS},
                "tensors": [{"key": i.key, "action": i.action, "shape": list(i.shape) if i.shape else None,
                             "source_shape": list(i.source_shape) if i.source_shape else None,
                             "note": i.note} for i in self.items]}

    def render(self) -> str:
        """A short human summary: counts per action, the keys that were not copied, the share transferred."""
        out = [f"Transfer from {self.source}:"]
        if self.provenance:
            out.append(f"  file: {self.provenance}")
        for action in ACTIONS:
            items = self.of(action)
            if not items and action in ("adapted", "mismatch"):
                continue
            params = sum(i.numel for i in items if i.parameter)
            line = f"  {action:<9}{len(items):>5} tensor{'s' if len(items) != 1 else ' '}  {params:>13,} parameters"
            if items and action != "copied":
                line += "  " + _keys(items)
            elif items:
                line += "".join(f"; {n}" for n in Counter(i.note for i in items if i.note))
            out.append(line)
        total = self.params_total
        share = 100.0 * self.params_transferred / total if total else 0.0
        out.append(f"  transferred {self.params_transferred:,} of {total:,} parameters ({share:.2f}%)")
        return "\n".join(out)


def _keys(items: list[Item], limit: int = 4) -> str:
    notes = Counter(i.note for i in items if i.note)
    shown = ", ".join(i.key for i in items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
    return shown + "".join(f"; {n}" for n in notes)


def first_convs(model: nn.Module, in_channels: int) -> list[str]:
    """The weights of the convolutions reading the input (where ``in_chans`` changes land): the model's
    first convolutions up to the first one that reads another width (a re-parameterizable stem reads the
    input with two, ``conv_kxk`` and ``conv_1x1``: timm's ``first_conv`` tuple)."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels != in_channels or module.groups != 1:
                break
            keys.append(f"{name}.weight")
    return keys


def classifier_name(model: nn.Module, head_names: list[str]) -> str | None:
    """The module path of the head's last linear layer: a head layer itself, or the linear layer a head
    module names as its ``classifier_name`` (CLIP's attention pooling: ``proj``); None without one."""
    def linear(m: Any) -> bool:  # a linear layer, or the slot reset_classifier(0) left (it keeps in_features)
        return isinstance(m, nn.Linear) or (isinstance(m, nn.Identity) and hasattr(m, "archkit_bias"))

    for name in reversed(head_names):
        module = model.get_submodule(name)
        if linear(module):
            return name
        inner = getattr(module, "classifier_name", None)
        if inner and linear(getattr(module, inner, None)):
            return f"{name}.{inner}"
    return None


def classifier(model: nn.Module, head_names: list[str]) -> set[str]:
    """Keys of the last linear layer of the head (where ``num_classes`` changes land)."""
    name = classifier_name(model, head_names)
    return {f"{name}.weight", f"{name}.bias"} if name else set()


_CASTABLE = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_COUNTERS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def dtype_problem(key: str, source: torch.Tensor, target: torch.Tensor) -> str | None:
    """Why ``source`` may not be loaded into ``target`` by dtype (None: the same dtype or a safe cast).

    Floating weights of another float width are cast (the plan says so); integer counters such as
    BatchNorm's ``num_batches_tracked`` take any integer; anything else (int8 or bool weights,
    complex, float8) is refused: a silent cast would load different numbers.
    """
    if source.dtype == target.dtype:
        return None
    if source.dtype in _CASTABLE and target.dtype in _CASTABLE:
        return None
    if source.dtype in _COUNTERS and target.dtype == torch.int64:
        return None
    return f"tensor {key} is {str(source.dtype).replace('torch.', '')}, the model's is " \
           f"{str(target.dtype).replace('torch.', '')}: only float16, bfloat16, float32 and float64 weights are cast"


def make_plan(model: nn.Module, source: dict[str, torch.Tensor], label: str, *, first_conv_key: Any,
              classifier_keys: set[str], allow_partial: bool = False) -> TransferPlan:
    """The plan for loading ``source`` into ``model`` (which may live on the meta device); WeightsError
    for a tensor whose dtype cannot be cast safely (see ``dtype_problem``)."""
    params = {k for k, _ in model.named_parameters()}
    first_keys = {first_conv_key} if isinstance(first_conv_key, str) else set(first_conv_key or ())
    items = []
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        src = source.get(key)
        src_shape = tuple(src.shape) if src is not None else None
        item = dict(key=key, shape=shape, source_shape=src_shape, numel=tensor.numel(), parameter=key in params)
        if src is not None:
            problem = dtype_problem(key, src, tensor)
            if problem:
                raise WeightsError(f"{label}: {problem}; nothing loaded")
        cast = f"cast from {str(src.dtype).replace('torch.', '')}" \
            if src is not None and src.dtype != tensor.dtype and tensor.dtype in _CASTABLE else ""
        if src is None:
            items.append(Item(action="reinit", note="not in the checkpoint", **item))
        elif src_shape == shape:
            items.append(Item(action="copied", note=cast, **item))
        elif key in first_keys and _adaptable(src_shape, shape):
            how = "RGB kernels summed" if shape[1] == 1 else "kernels repeated and scaled"
            items.append(Item(action="adapted", note=f"input channels {src_shape[1]} -> {shape[1]}: {how}", **item))
        elif key in classifier_keys and len(shape) == len(src_shape) and shape[1:] == src_shape[1:]:
            items.append(Item(action="reinit", note=f"classifier: {src_shape[0]} -> {shape[0]} classes", **item))
        elif allow_partial:
            items.append(Item(action="reinit", note="shape differs (--allow-partial)", **item))
        else:
            items.append(Item(action="mismatch", note="shape differs", **item))
    expected = model.state_dict()
    for key, tensor in source.items():
        if key not in expected:
            items.append(Item(key, "unused", None, tuple(tensor.shape), tensor.numel(), True))
    return TransferPlan(label, items)


def structure_problem(plan: TransferPlan, state: dict[str, torch.Tensor]) -> str | None:
    """Why a plan keeps less than the whole, where the checkpoint's structure differs from the model's:
    some of its tensors go unused *while* some of the model's stay as initialized (no key of one side
    where the other has one: another block form, another attention type). Fewer blocks alone (only
    unused) or new modules alone (only re-initialized) are what a transfer is for."""
    unused = plan.of("unused")
    fresh = [i for i in plan.of("reinit") if i.source_shape is None and i.parameter]
    if not unused or not fresh or plan.of("mismatch") or not (plan.of("copied") or plan.of("adapted")):
        return None  # nothing amiss, or ``apply``'s refusal says more (another shape; nothing matches at all)
    lost = sum(i.numel for i in fresh)
    share = lost / max(1, plan.params_total)
    hint = ""
    if any(k.endswith("reparam_conv.weight") for k in state):
        hint = " (deploy-form weights: build the spec with deploy: true to load them)"
    return (f"{plan.source}: the checkpoint's structure differs from the model's: {len(unused)} of its tensors "
            f"would go unused ({_first(unused)}) while {len(fresh)} of the model's ({lost:,} parameters, "
            f"{share:.0%}) stay random ({_first(fresh)}){hint}; pass --allow-partial (allow_partial=True) "
            "to load what matches anyway")


MIN_SHARE = 0.5  # below it, the checkpoint is a fragment of this model, or another model's weights


def share_problem(plan: TransferPlan) -> str | None:
    """Why a plan keeps too little: less than half the model's parameters would come from the checkpoint
    (new modules and more blocks are what a transfer is for, but not a model that is mostly random)."""
    total, moved = plan.params_total, plan.params_transferred
    if not total or moved >= MIN_SHARE * total or plan.of("mismatch") or not moved:
        return None  # whole enough, or ``apply``'s refusal says more
    return (f"{plan.source}: only {moved:,} of {total:,} parameters ({moved / total:.1%}) would come from the "
            "checkpoint, the rest random (a fragment of this model, or another model's weights?); pass "
            "--allow-partial (allow_partial=True) to load them anyway")


def _first(items: list[Item], limit: int = 2) -> str:
    return ", ".join(i.key for i in items[:limit]) + (", ..." if len(items) > limit else "")


def _adaptable(src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    return len(src) == len(dst) == 4 and src[0] == dst[0] and src[2:] == dst[2:] and src[1] > 0


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """timm's ``adapt_input_conv``: sum the input kernels for one channel, else repeat and scale them."""
    dtype = weight.dtype
    weight = weight.float()
    if in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    else:
        source = weight.shape[1]
        weight = weight.repeat(1, math.ceil(in_chans / source), 1, 1)[:, :in_chans] * (source / float(in_chans))
    return weight.to(dtype)


def apply(model: nn.Module, plan: TransferPlan, source: dict[str, torch.Tensor]) -> None:
    """Load the plan's copied and adapted tensors into ``model``; re-initialized ones stay as built."""
    refused = plan.of("mismatch")
    if refused:
        shown = ", ".join(f"{i.key} {list(i.source_shape)} -> {list(i.shape)}" for i in refused[:3])
        more = f" (+{len(refused) - 3} more)" if len(refused) > 3 else ""
        raise WeightsError(f"{plan.source}: {len(refused)} tensor(s) differ in shape outside the transfer rules: "
                           f"{shown}{more}; pass --allow-partial (allow_partial=True) to re-initialize them")
    if not plan.of("copied") and not plan.of("adapted"):
        raise WeightsError(f"{plan.source}: no tensor of the checkpoint matches the model's keys "
                           "(weights for another architecture or key layout?)")
    state = model.state_dict()
    for item in plan.items:
        if item.action == "copied":
            state[item.key] = source[item.key]
        elif item.action == "adapted":
            state[item.key] = adapt_input_conv(source[item.key], item.shape[1])
    model.load_state_dict(state, strict=True)


def _behaviour(spec: dict) -> dict[str, Any]:
    """What changes a network's function without changing any tensor's shape."""
    stages = spec.get("stages") or []
    layers = [layer for layer in spec.get("stem") or [] if isinstance(layer, dict)]
    geometry = ("type", "stride", "padding", "dilation", "kernel_size")
    return {
        "activation": spec.get("activation"),
        "norm": (spec.get("norm") or {}).get("type") if isinstance(spec.get("norm"), dict) else spec.get("norm"),
        "stage strides": [(s.get("stride", 1), s.get("dilate", False)) for s in stages if isinstance(s, dict)],
        "stem": [{k: layer.get(k) for k in geometry} for layer in layers],
    }


def check_same_function(stored: dict, spec: Any, label: str, allow_partial: bool) -> None:
    """Refuse an archkit checkpoint whose own spec computes something else with the same shapes
    (another activation, norm, stride or stem geometry), unless ``allow_partial``."""
    if allow_partial or not isinstance(stored, dict):
        return
    ours = _behaviour(spec.model_dump(mode="json"))
    theirs = _behaviour(stored)
    differ = [k for k in ours if ours[k] != theirs[k]]
    if differ:
        raise WeightsError(f"{label}: saved from spec {stored.get('name')!r}, which differs from this one in "
                           f"{', '.join(differ)} with the same tensor shapes; pass --allow-partial to load it anyway")
