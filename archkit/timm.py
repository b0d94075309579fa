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
_IGNORED = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_model_args")  # timm's own keywords


def _with_cfg(model: Any, architecture: str, extra: dict | None = None) -> Any:
    """timm's ``pretrained_cfg`` / ``default_cfg`` from the spec's declared weights (preprocessing, classes),
    so ``timm.data.resolve_data_config(model=...)`` gives the right crop and interpolation."""
    from .share import config

    cfg = {**config(model, model.spec)["pretrained_cfg"], "architecture": architecture, **(extra or {})}
    model.pretrained_cfg = model.default_cfg = cfg
    return model


def _keywords(kwargs: dict) -> dict:
    for key in _IGNORED:
        kwargs.pop(key, None)
    if kwargs.get("drop_path_rate") is None:
        kwargs.pop("drop_path_rate", None)
    return kwargs


def _factory(name: str) -> Callable[..., Any]:
    def build(pretrained: bool = False, **kwargs: Any) -> Any:
        return _with_cfg(create_model(name, pretrained=pretrained, **_keywords(kwargs)), f"{PREFIX}{name}")

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


def archkit(pretrained: bool = False, spec: Any = None, pretrained_cfg: Any = None, **kwargs: Any) -> Any:
    """Any archkit spec as a timm model: ``architecture: archkit`` with ``model_args: {spec: ...}`` in a
    shared folder's config.json (``timm.create_model("local-dir:PATH")``); ``pretrained=True`` loads the
    folder's weights through archkit's checks."""
    import dataclasses

    from . import hub
    from .api import as_spec, load_pretrained

    if not isinstance(spec, dict):
        raise ValueError("timm architecture 'archkit' needs model_args: {spec: {...}} (the folder's archkit spec)")
    cfg = dataclasses.asdict(pretrained_cfg) if dataclasses.is_dataclass(pretrained_cfg) else dict(pretrained_cfg or {})
    model = create_model(spec, **_keywords(kwargs))
    if pretrained:
        ref = f"{hub.LOCAL}{cfg['file']}" if cfg.get("file") else f"{hub.HUB}{cfg.get('hf_hub_id')}"
        keywords = _keywords(dict(kwargs))
        folder = as_spec(ref, num_classes=keywords.get("num_classes"), in_chans=keywords.get("in_chans"))
        model.transfer_plan = load_pretrained(model, folder, hub.WEIGHTS_NAME)  # the folder's recorded hash too
    # the folder's own pretrained_cfg (its preprocessing) over what the spec alone implies
    return _with_cfg(model, "archkit", {k: v for k, v in cfg.items() if v is not None and k != "architecture"})


register_model(archkit)
register_all()
