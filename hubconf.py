"""torch.hub entry points: every packaged archkit spec by name.

    model = torch.hub.load("<clone dir>", "resnet50", source="local", num_classes=10)

Keywords are those of ``archkit.create_model`` (``weights``, ``pretrained``, ``num_classes``,
``in_chans``, spec fields). Run from a clone: torch.hub puts its directory on ``sys.path``.
"""

from __future__ import annotations

from typing import Any, Callable

import archkit

dependencies = ["torch", "pydantic", "yaml"]


def _entry(name: str) -> Callable[..., Any]:
    def load(**kwargs: Any) -> Any:
        return archkit.create_model(name, **kwargs)

    load.__name__ = name
    load.__doc__ = f"archkit spec {name!r}; keywords as archkit.create_model."
    return load


for _name in archkit.list_models():
    globals()[_name] = _entry(_name)
