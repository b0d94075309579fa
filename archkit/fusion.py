"""Conv-BN fusion for inference, following the data flow (torch.fx), shortcuts included.

A BatchNorm whose only input is a convolution whose only user is that BatchNorm is folded into the
convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and removed from the graph; a norm with its
activation inside (timm's ``BatchNormAct2d``) leaves its activation in its place. Working on the
traced graph, not on child order, finds the pairs wherever a block (or a plugin's) puts them, and
never folds a norm that reads something else (a pre-activation block's norm reads the sum).
"""

from __future__ import annotations

import copy

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .errors import NothingToFuse
from .nn.layers import BatchNormAct2d, EvoNorm2dS0a, RmsNorm2d


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping a norm with its activation inside as one call (it is fused as a norm), and
    modules whose forward branches on the input's size (``fx_leaf``: attention pooling, BAT) as calls."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, BatchNormAct2d) or getattr(m, "fx_leaf", False) or super().is_leaf_module(m, qualname)


def fuse(model: nn.Module) -> fx.GraphModule:
    """An eval-mode copy of ``model`` with every conv -> BatchNorm pair folded into the conv."""
    model = copy.deepcopy(model).eval()
    graph_module = fx.GraphModule(model, _Tracer().trace(model))
    modules = dict(graph_module.named_modules())
    folded = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        source = node.args[0]
        if not (isinstance(source, fx.Node) and source.op == "call_module"
                and isinstance(modules.get(source.target), nn.Conv2d) and len(source.users) == 1):
            continue
        bn = modules[node.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        fused = fuse_conv_bn_eval(modules[source.target], bn)
        _set(graph_module, source.target, fused)
        if isinstance(bn, BatchNormAct2d):  # the activation stays where the norm was
            _set(graph_module, node.target, nn.Sequential(bn.drop, bn.act))
        else:
            node.replace_all_uses_with(source)
            graph_module.graph.erase_node(node)
        folded += 1
    if not folded:
        norms = sorted({type(m).__name__ for m in model.modules()
                        if isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm, EvoNorm2dS0a,
                                          RmsNorm2d))})
        what = f"it uses {', '.join(norms)}" if norms else "it has no norm layers"
        raise NothingToFuse(f"nothing to fuse: no convolution is followed by a BatchNorm ({what})")
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    graph_module.fused_pairs = folded
    return graph_module


def _set(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, module)
