"""Optimizer parameter groups with layer-wise learning-rate decay, without timm.

Layers are numbered as timm numbers them from ``group_matcher``: the stem is layer 0, each block
the next, and what follows the last block (the head) the last; a parameter at layer ``i`` of ``L``
gets ``lr_scale = layer_decay ** (L - 1 - i)``. Norm weights and biases (any tensor of one
dimension) get no weight decay, as timm's ``param_groups_layer_decay``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Each trainable parameter's layer id (0 = stem, 1.. = blocks in order, last = head)."""
    matcher = model.group_matcher(coarse=False)
    stem = re.compile(matcher["stem"])
    specs = matcher["blocks"] if isinstance(matcher["blocks"], list) else [(matcher["blocks"], None)]
    blocks = re.compile(specs[0][0])
    # timm's MATCH_PREV_GROUP suffix (99999,): those layers (final_conv) join the last block's group
    final = next((re.compile(r) for r, suffix in specs[1:] if suffix == (99999,)), None)
    order: dict[tuple, int] = {}
    ids: dict[str, int] = {}
    pending, finals = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if stem.match(name):
            ids[name] = 0
            continue
        m = blocks.match(name)
        if m:
            key = tuple(int(g) for g in m.groups())
            ids[name] = order.setdefault(key, len(order) + 1)
        elif final is not None and final.match(name):
            finals.append(name)
        else:
            pending.append(name)
    for name in finals:  # the final layers join the last block's group (timm's final_conv: MATCH_PREV_GROUP)
        ids[name] = max(len(order), 1)
    last = len(order) + 1
    for name in pending:  # the head
        ids[name] = last
    return ids


def param_groups(model: nn.Module, lr: float, layer_decay: float = 1.0, weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups for ``torch.optim``: per layer, with and without weight decay, each with
    ``lr = lr * lr_scale`` and its ``lr_scale`` (for schedulers that rescale)."""
    ids = layer_ids(model)
    top = max(ids.values(), default=0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if name not in ids:
            continue
        decay = p.ndim > 1
        scale = layer_decay ** (top - ids[name])
        group = groups.setdefault((ids[name], decay), {"params": [], "lr": lr * scale, "lr_scale": scale,
                                                        "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]
