"""archkit's public functions (``archkit/__init__.py`` re-exports them; modules inside the package import
them from here, never from the package facade)."""

from __future__ import annotations

import os
from typing import Any

def load_spec(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] | None = None, *,
              num_classes: int | None = None, in_chans: int | None = None):
    """Load a spec by name (``"resnet50"``) or file, merge ``base:``, apply ``--set``-style overrides
    (``"stages.2.depth=23"``), timm's ``num_classes`` / ``in_chans``, and validate it."""
    from . import zoo

    return zoo.load(path, overrides, num_classes=num_classes, in_chans=in_chans)


def as_spec(spec: Any, *, num_classes: int | None = None, in_chans: int | None = None,
            values: dict[str, Any] | None = None):
    """A validated spec from a ModelSpec, a name, a file path or a plain dict, with changes applied."""
    from . import loader, specs, zoo
    from .errors import Mark

    changed = num_classes is not None or in_chans is not None or bool(values)
    if isinstance(spec, specs.ModelSpec) and not changed:
        return spec
    if isinstance(spec, specs.ModelSpec):
        source, tree = f"<{spec.name}>", spec.tree()
    elif isinstance(spec, (str, os.PathLike)):
        source, tree = str(spec), loader.load(spec, resolve=zoo.resolve)
    elif isinstance(spec, dict):
        source, tree = "<dict>", loader.load_mapping(spec, zoo.resolve)
    else:
        raise TypeError(f"expected a ModelSpec, a spec name or path, or a dict, got {type(spec).__name__}")
    for key, value in (values or {}).items():
        wrapped = loader.from_mapping({"v": value})["v"]
        loader.set_value(tree, key, wrapped, Mark(f"{key}={value!r}"))
    loader.set_classes_and_channels(tree, num_classes, in_chans)
    return specs.validate(tree, source)


def build_model(spec: Any, device: Any = None, *, features_only: bool | None = None, out_indices: Any = None,
                max_params: int | None = None):
    """Build the ``nn.Sequential`` for a spec (ModelSpec, name, path or dict); ``device="meta"`` allocates nothing.

    ``features_only=True`` returns a backbone giving the feature maps of ``out_indices`` (0 = the stem
    before its final pool, i = stage i), with ``.feature_info`` (channels and reduction per output), as timm's.
    More than ``max_params`` parameters (default ``$ARCHKIT_MAX_PARAMS``, else 2e9) are refused before
    anything is allocated.
    """
    from . import build

    return build.build(as_spec(spec), device=device, features_only=features_only, out_indices=out_indices,
                       max_params=max_params)


def create_model(name_or_spec: Any, *, weights: str | os.PathLike | None = None, pretrained: bool = False,
                 num_classes: int | None = None, in_chans: int | None = None, allow_partial: bool = False,
                 device: Any = None, max_params: int | None = None, **overrides: Any):
    """timm's habit: a model by name, resized and changed by keyword, optionally from pretrained weights.

    ``num_classes`` resizes the head's classifier (0 removes it), ``in_chans`` the first conv; other
    keywords are spec fields, dotted for nested ones (``create_model("resnet50", drop_path_rate=0.1,
    **{"stages.2.depth": 23})``). ``weights`` is a declared name, ``SPEC:NAME``, a file or a URL
    (``pretrained=True``: the spec's first declared weights); they load through a transfer plan
    (``model.transfer_plan``) that copies what fits, adapts the first conv to ``in_chans``,
    re-initializes a resized classifier and new modules, and refuses other shape changes unless
    ``allow_partial``. More than ``max_params`` parameters (default ``$ARCHKIT_MAX_PARAMS``, else 2e9) are
    refused before anything is allocated.
    """
    from . import build

    spec = as_spec(name_or_spec, num_classes=num_classes, in_chans=in_chans, values=overrides)
    if pretrained and weights is None:
        from .weights import default_name

        weights = default_name(spec)
    model = build.build(spec, device=device if weights is None else None, max_params=max_params)
    if weights is not None:
        model.transfer_plan = load_pretrained(model, spec, weights, allow_partial=allow_partial)
        if device is not None:
            model.to(device)
    return model


def load_pretrained(model: Any, spec: Any, weights: str | os.PathLike, *, allow_partial: bool = False):
    """Load ``weights`` (declared name, ``SPEC:NAME``, file or URL) into ``model`` built from ``spec``;
    returns the transfer plan (raises WeightsError, loading nothing, when the plan refuses)."""
    from . import transfer
    from . import weights as w
    from .errors import WeightsError
    from .plan import plan

    spec = as_spec(spec)
    source = w.resolve(weights, spec)
    path = w.fetch(source)
    try:
        state, stored = w.read_state(path, source.label)
    except WeightsError:
        w.forget(source, path)  # a download that is no usable checkpoint does not stay cached, trusted
        raise
    if stored is not None:
        transfer.check_same_function(stored, spec, source.label, allow_partial)
    head = [lp.name for lp in plan(spec).head] if not spec.features_only else []
    label = source.label if source.label == str(path) else f"{source.label} ({path.name})"
    first_keys, classifier_keys = transfer.first_convs(model, spec.input.channels), transfer.classifier(model, head)
    result = transfer.make_plan(model, state, label, first_conv_key=first_keys, classifier_keys=classifier_keys,
                                allow_partial=allow_partial)
    result.provenance = w.provenance(source, path)
    fused = [i for i in result.items if i.action == "reinit" and i.key.endswith(("reparam_conv.weight",
                                                                                 "reparam_conv.bias"))]
    if spec.deploy and fused and any(".conv_kxk." in f".{k}" for k in state):
        units = len({i.key.rsplit(".", 2)[0] for i in fused})
        raise WeightsError(f"{label}: train-form weights (conv_kxk branches) for a deploy-form spec ({units} "
                           "fused convs would stay random); load them without deploy: true, then "
                           "archkit.reparameterize the model (or archkit export --reparameterize)")
    partial = None if allow_partial else transfer.structure_problem(result, state) or transfer.share_problem(result)
    if partial is not None:
        raise WeightsError(partial)
    if weights == "folder" and "folder" in spec.weights and not allow_partial:  # a shared folder's own weights
        resized = {*first_keys, *classifier_keys}  # num_classes / in_chans asked of the folder's model
        modules = {k.rpartition(".")[0] for k in resized if k}
        off = [i for i in result.items if i.action in ("reinit", "unused")  # mismatches: refused below
               and (i.key.rpartition(".")[0] not in modules or (i.action == "reinit" and i.source_shape is None))]
        if off and not result.of("mismatch"):  # tensors of another shape: the plan's own refusal says which
            raise WeightsError(f"{label}: a shared folder's weights must be its model's whole state; "
                               f"{len(off)} tensors are missing or extra ({_first_keys(off)}); "
                               "pass --allow-partial to load them anyway")
    transfer.apply(model, result, state)
    return result


def _first_keys(items: list, limit: int = 3) -> str:
    return ", ".join(f"{i.key} {i.action}" for i in items[:limit]) + (" ..." if len(items) > limit else "")


def fuse(model: Any):
    """An eval-mode copy of ``model`` with every BatchNorm that follows a conv folded into it (torch.fx)."""
    from .fusion import fuse as _fuse

    return _fuse(model)


def reparameterize(model: Any):
    """The deploy form of a model with re-parameterizable blocks (RepVGG, MobileOne): each unit's branches
    fused into one convolution with bias, as timm's ``reparameterize_model``; a new eval-mode model built
    from the same spec with ``deploy: true`` (``model`` is unchanged; one already in deploy form is
    returned as it is)."""
    from .reparam import reparameterize as _reparameterize

    return _reparameterize(model)


def param_groups(model: Any, lr: float, layer_decay: float = 1.0, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups with layer-wise learning-rate decay and no weight decay on norms and biases."""
    from .optim import param_groups as _groups

    return _groups(model, lr, layer_decay, weight_decay)


def list_models(pattern: str = "*") -> list[str]:
    """Names of the packaged (and plugin) specs matching a shell-style ``pattern``, as ``timm.list_models``."""
    from . import zoo

    return zoo.names(pattern)


def register_block(name: str, block: Any, **kwargs: Any) -> Any:
    """Register a block type under ``name``: a description (``archkit.blocks.block``) or a module-form
    class (see ``archkit.blocks.base`` for the contract)."""
    from .catalog import register_block as _register

    return _register(name, block, **kwargs)


def list_blocks() -> list[str]:
    """Names of every registered block type."""
    from .catalog import BLOCKS

    return BLOCKS.names()


def save_checkpoint(model: Any, spec: Any, path: str | os.PathLike) -> None:
    """Save weights plus the fully resolved spec atomically; ``.safetensors`` paths write safetensors."""
    from .checkpoint import save

    save(model, as_spec(spec), path)


def load_checkpoint(path: str | os.PathLike, device: Any = None):
    """Rebuild a model from a checkpoint's stored spec and load its weights (never running code)."""
    from .checkpoint import load

    return load(path, device=device)


def save_pretrained(model: Any, directory: str | os.PathLike, spec: Any = None) -> Any:
    """Write ``model`` as a shared folder (``config.json`` with timm's keys and the full spec,
    ``model.safetensors``, a ``README.md`` model card) that ``create_model("local-dir:DIR")`` and
    ``timm.create_model("local-dir:DIR")`` read; returns the folder's path."""
    from .share import save_pretrained as _save

    return _save(model, directory, as_spec(spec) if spec is not None else None)


def push_to_hub(directory: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
                message: str | None = None) -> str:
    """Upload a folder ``save_pretrained`` wrote to the Hugging Face hub (needs ``huggingface_hub``)."""
    from .share import push

    return push(directory, repo_id, private=private, revision=revision, message=message)
