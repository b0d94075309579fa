"""timm bridge: ``import archkit.timm`` registers every packaged spec as ``archkit_<name>`` in timm's
model registry, so ``timm.create_model("archkit_resnet50", num_classes=10)`` and timm's training
scripts build archkit models. timm is an optional extra (``pip install 'archkit[timm]'``); archkit's
core never imports it.

The keywords timm passes are honored: ``num_classes``, ``in_chans``, ``drop_path_rate`` and
``pretrained`` (the spec's first declared weights, through archkit's verified download and transfer
plan). Other keywords are archkit spec fields, as for ``archkit.create_model``.
"""

from __future__ import annotations

from typing import Any, Callable

from timm.models import register_model

from .api import create_model, list_models

PREFIX = "archkit_"
_IGNORED = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")  # timm's own loading keywords


def _factory(name: str) -> Callable[..., Any]:
    def build(pretrained: bool = False, **kwargs: Any) -> Any:
        for key in _IGNORED:
            kwargs.pop(key, None)
        if kwargs.get("drop_path_rate") is None:
            kwargs.pop("drop_path_rate", None)
        return create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = build.__qualname__ = f"{PREFIX}{name}"
    build.__module__ = __name__
    build.__doc__ = f"archkit spec {name!r} (archkit.create_model)."
    return build


def register_all() -> list[str]:
    """Register every packaged (and plugin) spec not registered yet; returns the timm names added."""
    import timm

    added = []
    for name in list_models():
        timm_name = f"{PREFIX}{name}"
        if timm.is_model(timm_name):
            continue
        fn = _factory(name)
        globals()[timm_name] = fn
        register_model(fn)
        added.append(timm_name)
    return added


register_all()
