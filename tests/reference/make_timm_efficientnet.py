"""Write ``timm_efficientnet.json``: every model of timm's ``efficientnet.py`` and ``mobilenetv3.py`` as timm
builds it (state_dict keys and shapes, parameter count, FlopCounterMode MACs at its pretrained input size,
num_features, feature_info). Every row comes from timm, none from archkit; the tests compare archkit's packaged
specs against it, and a slow test checks the table against the installed timm.

    python tests/reference/make_timm_efficientnet.py        # rewrites the table (about two minutes)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("timm_efficientnet.json")
MODULES = ("efficientnet", "mobilenetv3")


def keys_digest(state: dict) -> str:
    """sha256 of the state_dict's keys and shapes in order, one ``key shape`` line each."""
    text = "\n".join(f"{k} {list(v.shape)}" for k, v in state.items())
    return hashlib.sha256(text.encode()).hexdigest()


def row(name: str) -> dict:
    """One model's facts, from timm alone."""
    import timm
    import torch
    from timm.models import get_pretrained_cfg
    from torch.utils.flop_counter import FlopCounterMode

    size = list(get_pretrained_cfg(name).input_size[1:])
    model = timm.create_model(name, device="meta").eval()
    with FlopCounterMode(display=False) as flops:
        model(torch.empty(1, 3, *size, device="meta"))
    state = model.state_dict()
    return {"input_size": size, "params": sum(p.numel() for p in model.parameters()),
            "macs": flops.get_total_flops() // 2, "keys": len(state), "keys_sha256": keys_digest(state),
            "num_features": model.num_features,
            "feature_info": [[f["module"], f["num_chs"], f["reduction"]] for f in model.feature_info]}


def table() -> dict:
    """Every model's row, by name, with the timm version they came from."""
    import timm

    names = sorted(n for m in MODULES for n in timm.list_models(module=m))
    return {"timm": timm.__version__, "models": {n: row(n) for n in names}}


if __name__ == "__main__":
    TABLE.write_text(json.dumps(table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE} ({len(json.loads(TABLE.read_text())['models'])} models)", file=sys.stderr)
