"""The built model: a plain ``nn.Sequential`` (same children, keys and outputs) with the API people use
to train and deploy timm and mmdetection backbones.

timm's model API: ``num_classes``, ``num_features``, ``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier``, ``feature_info``, ``set_grad_checkpointing`` and
``group_matcher`` (layer-wise learning-rate decay). mmdetection's freezing: ``frozen_stages`` (the
stem and the first N stages: no gradients, norms in eval mode, surviving ``model.train()``) and
``norm_eval`` (every norm in eval mode).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .transfer import classifier_name


class FeatureInfo(list):
    """timm's ``FeatureInfo`` habits over a list of dicts: ``channels()``, ``reduction()``, ``module_name()``."""

    def channels(self, idx: int | None = None) -> Any:
        """Channels of each output (or of output ``idx``)."""
        return self._get("num_chs", idx)

    def reduction(self, idx: int | None = None) -> Any:
        """Input size / feature size of each output (or of output ``idx``)."""
        return self._get("reduction", idx)

    def module_name(self, idx: int | None = None) -> Any:
        """The child module each output comes from."""
        return self._get("module", idx)

    def get_dicts(self, keys: list[str] | None = None, idx: int | None = None) -> Any:
        """timm's ``get_dicts``: each output's dict (or only ``keys`` of it; of output ``idx`` alone)."""
        pick = (lambda d: dict(d)) if keys is None else (lambda d: {k: d[k] for k in keys})
        return [pick(d) for d in self] if idx is None else pick(self[idx])

    def _get(self, key: str, idx: int | None) -> Any:
        return [d[key] for d in self] if idx is None else self[idx][key]


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class Freezable:
    """mmdetection's ResNet freezing for ``ArchkitNet`` and feature backbones: ``frozen_stages`` (the stem
    and the first N stages: no gradients, eval mode) and ``norm_eval``, both surviving ``train()``.

    The class using it sets ``stem_names``, ``stage_names`` (module paths, from the plan),
    ``frozen_stages`` and ``norm_eval`` (no class-level annotations: TorchScript would try to type them).
    """

    def frozen_modules(self) -> Iterator[nn.Module]:
        """The stem's layers and the first ``frozen_stages`` stages (none when it is -1)."""
        if self.frozen_stages < 0:
            return
        for name in self.stem_names:
            yield self.get_submodule(name)
        for name in self.stage_names[: self.frozen_stages]:
            yield self.get_submodule(name)
        if self.frozen_stages >= len(self.stage_names):  # the final layers make the last stage's feature map
            for name in getattr(self, "final_names", ()):
                yield self.get_submodule(name)

    def freeze(self, frozen_stages: int | None = None, norm_eval: bool | None = None) -> "ArchkitNet":
        """Set ``frozen_stages`` / ``norm_eval`` (as the spec keys do) and apply them now."""
        if frozen_stages is not None:
            if not -1 <= frozen_stages <= len(self.stage_names):
                raise ValueError(f"frozen_stages must be -1..{len(self.stage_names)} (this model has "
                                 f"{len(self.stage_names)} stages), got {frozen_stages}")
            self.frozen_stages = frozen_stages
        if norm_eval is not None:
            self.norm_eval = norm_eval
        self._apply_freezing()
        return self

    def _apply_freezing(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False
        if self.norm_eval and self.training:
            for m in self.modules():
                if isinstance(m, _NORMS):
                    m.eval()

    def train(self, mode: bool = True) -> "ArchkitNet":
        super().train(mode)
        self._apply_freezing()  # frozen stages and norm_eval survive model.train()
        return self


class ArchkitNet(Freezable, nn.Sequential):
    """An archkit network: ``nn.Sequential`` of stem layers, ``layer1``..``layerN`` and head layers
    (torchvision's layout), or of ``stem``, ``stages`` and ``head`` (timm's); ``stem_names``,
    ``stage_names`` and ``head_names`` are the module paths of each part's layers, from the plan."""

    __jit_unused_properties__ = ["num_classes", "num_features"]  # Python-side API: TorchScript skips them

    def __init__(self, children: Any, spec: Any, stem: list[str], stages: list[str], head: list[str],
                 feature_info: list[dict], final: list[str] = ()):
        super().__init__(children)
        self.spec = spec
        self.stem_names, self.stage_names, self.head_names = list(stem), list(stages), list(head)
        self.final_names = list(final)  # layers after the stages that belong to the features (timm's final_conv)
        self.feature_info = FeatureInfo(feature_info)
        self.grad_checkpointing = False
        self.frozen_stages = getattr(spec, "frozen_stages", -1)
        self.norm_eval = getattr(spec, "norm_eval", False)
        self._apply_freezing()

    def __getitem__(self, idx: Any) -> Any:
        """As ``nn.Sequential``; a slice is a plain ``nn.Sequential`` of those children."""
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    # --- timm's classifier API ---------------------------------------------------------------------

    def _classifier_name(self) -> str | None:
        return classifier_name(self, self.head_names)

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier (0 without one)."""
        name = self._classifier_name()
        return getattr(self.get_submodule(name), "out_features", 0) if name else 0

    @property
    def num_features(self) -> int:
        """Channels the features give the head (2048 for a ResNet-50; a final conv's width where it feeds only
        the head, timm's RegNetZ), as timm's."""
        from .plan import plan

        p = plan(self.spec)
        if p.final and not p.final_taps and not self.spec.features_only:
            return p.features_shape[0]
        return self.feature_info.channels(-1)

    def get_classifier(self) -> nn.Module:
        """The head's last linear layer (an ``nn.Identity`` when there is none)."""
        name = self._classifier_name()
        return self.get_submodule(name) if name else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes`` (0: none, pooled features out), initialized as PyTorch's."""
        name = self._classifier_name()
        if name is None:
            raise ValueError(f"{self.spec.name} has no linear classifier in its head to reset (build it with "
                             "num_classes=N to get one)")
        old = self.get_submodule(name)
        like = next(self.parameters())
        bias = old.archkit_bias if hasattr(old, "archkit_bias") else old.bias is not None
        if num_classes > 0:
            new = nn.Linear(old.in_features, num_classes, bias, device=like.device, dtype=like.dtype)
        else:  # keep the slot: a later reset_classifier(N) brings a classifier back, as timm's
            new = nn.Identity()
            new.in_features, new.archkit_bias = old.in_features, bias
        parent, _, child = name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, child, new)
        self.spec = _with_classes(self.spec, num_classes)  # what save_pretrained and checkpoints record

    # --- forward in two halves ---------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages and final layers: the last feature map."""
        for name in self.stem_names:
            x = self.get_submodule(name)(x)
        for name in self.stage_names:
            x = _run_stage(self.get_submodule(name), x, self.grad_checkpointing)
        for name in getattr(self, "final_names", ()):  # (models pickled before final layers existed lack it)
            x = self.get_submodule(name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The head; ``pre_logits=True`` stops before the classifier (pooled features)."""
        stop = self._classifier_name() if pre_logits else None
        for name in self.head_names:
            if name == stop:
                break
            if stop is not None and stop.startswith(f"{name}."):  # a head module holding its classifier
                return self.get_submodule(name)(x, pre_logits=True)
            x = self.get_submodule(name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not torch.jit.is_scripting() and self.grad_checkpointing:
            return self.forward_head(self.forward_features(x))
        for module in self:
            x = module(x)
        return x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (timm's name)."""
        self.grad_checkpointing = enable

    def save_pretrained(self, directory: Any) -> Any:
        """Write this model as a shared folder (``archkit.save_pretrained``); returns its path."""
        from .share import save_pretrained

        return save_pretrained(self, directory)

    def push_to_hub(self, repo_id: str, directory: Any, **kwargs: Any) -> str:
        """``save_pretrained(directory)``, then upload the folder to the Hugging Face hub as ``repo_id``."""
        from .share import push

        self.save_pretrained(directory)
        return push(directory, repo_id, **kwargs)

    # --- layer-wise learning-rate decay ------------------------------------------------------------

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's ``group_matcher``, from the plan's module paths (``archkit.plan.Plan.group_matcher``)."""
        from .plan import plan

        return plan(self.spec).group_matcher(coarse)


class FeatureExtractor(Freezable, nn.Sequential):
    """The stem and stages of a spec, returning the chosen stages' feature maps (timm's ``features_only``).

    Children keep the full model's names, so a classifier's ``state_dict`` loads by the same keys
    (its head entries are the only extras). ``feature_info`` gives each output's module, channels and
    reduction (input size / feature size, as the power of two the strides make: timm's).
    """

    def __init__(self, children: OrderedDict[str, nn.Module], return_layers: list[str], feature_info: list[dict],
                 spec: Any = None, stem: list[str] = (), stages: list[str] = (), final: list[str] = ()):
        super().__init__(children)
        self.return_layers = tuple(return_layers)  # module paths whose outputs are the features
        self.feature_info = FeatureInfo(feature_info)
        self.grad_checkpointing = False
        self.spec = spec
        self.stem_names, self.stage_names, self.final_names = list(stem), list(stages), list(final)
        self.frozen_stages = min(getattr(spec, "frozen_stages", -1), len(self.stage_names))
        self.norm_eval = getattr(spec, "norm_eval", False)
        self._apply_freezing()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        features = []
        stages = set(self.stage_names)  # stage identity from the plan, never from a name's shape
        for name in (*self.stem_names, *self.stage_names, *getattr(self, "final_names", ())):
            module = self.get_submodule(name)
            x = _run_stage(module, x, self.grad_checkpointing) if name in stages else module(x)
            if name in self.return_layers:
                features.append(x)
        return features

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (timm's name)."""
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        """A backbone has no classifier: refused in one line."""
        raise ValueError("a features_only backbone has no classifier to reset (build the full model instead)")



def _with_classes(spec: Any, num_classes: int) -> Any:
    """``spec`` with ``num_classes`` classes (the spec's rule for timm's keyword)."""
    from . import loader, specs

    if spec is None:
        return spec
    tree = spec.tree()
    loader.set_classes_and_channels(tree, num_classes, None)
    return specs.validate(tree, f"<{spec.name}>")


def _run_stage(stage: nn.Module, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    """A stage, each block recomputed in the backward pass under checkpointing (a stage module that is not
    a sequence of blocks, a CSP stage, is recomputed whole)."""
    if use_checkpoint and torch.is_grad_enabled() and not torch.jit.is_scripting():
        if type(stage) is not nn.Sequential:
            return checkpoint(stage, x, use_reentrant=False)
        for block in stage:
            x = checkpoint(block, x, use_reentrant=False)
        return x
    return stage(x)
