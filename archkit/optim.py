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


MATCH_PREV_GROUP = 99999  # timm's suffix: the layer joins the group before it


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Each trainable parameter's layer id, as timm's ``group_with_matcher`` numbers ``group_matcher``'s
    groups: a parameter's key is (the matcher's ordinal, the numbers its rule captures, the rule's suffix);
    keys sort; each new key is the next layer unless it ends in ``MATCH_PREV_GROUP``; unmatched: last."""
    matcher = model.group_matcher(coarse=False)
    rules = []
    for ordinal, spec in enumerate(matcher.values()):
        for pattern, suffix in (spec if isinstance(spec, list) else [(spec, None)]):
            rules.append((re.compile(pattern), (ordinal,), suffix or ()))
    keys: dict[str, tuple] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            keys[name] = next((tuple(map(float, (*prefix, *found.groups(), *suffix))) for rule, prefix, suffix in rules
                               if (found := rule.match(name))), (float("inf"),))
    ids, layer = {}, -1
    for key in sorted(set(keys.values())):
        if layer < 0 or key[-1] != MATCH_PREV_GROUP:
            layer += 1
        ids[key] = layer
    return {name: ids[key] for name, key in keys.items()}


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
