"""Helpers for block authors: ``check_block(block)`` exercises a block type the way archkit uses it."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["check_block"]


def check_block(block: Any, params: dict | None = None, *, planes: int = 16, size: int = 9,
                dilations: tuple[int, ...] = (1, 2)) -> None:
    """Build a block type (a registered name, a description or a module-form class) as a stage's first
    and later blocks across strides, dilations, channel changes and every shortcut kind it accepts,
    plus once with drop path and an SE module at each attention position it offers; run forward and
    backward; check output shapes against the plan, that every parameter gets a gradient, that the
    model builds on the meta device, that ``init.zero_init_residual`` zeroes something where the block
    marks a norm, and that the analytic summary equals a meta-device forward under FlopCounterMode.

    Raises AssertionError naming the case that failed. A block that refuses a dilation with a located
    error (blocks that cannot dilate, or stride) is skipped for that dilation (stride).
    """
    from . import catalog

    name, registered = block, False
    if not isinstance(block, str):
        name = f"check_block_{id(block):x}"
        catalog.register_block(name, block)
        registered = True
    try:
        kind = catalog.block_type(name)
        shortcuts = [k.value for k in kind.shortcuts]
        cases = [(stride, dilation, in_channels, short, [])
                 for stride, dilation, in_channels, short in itertools.product((1, 2), dilations, (None, 8), shortcuts)]
        cases += [(2, 1, 8, shortcuts[0], [{"type": "se", "position": p, "rd_divisor": 1}]) for p in kind.attn_positions]
        for case in cases:
            _check_case(name, kind, params, planes, size, *case)
    finally:
        if registered:
            catalog.BLOCKS.unregister(name)


def _check_case(name: str, kind: Any, params: dict | None, planes: int, size: int, stride: int, dilation: int,
                in_channels: int | None, short: str, attn: list) -> None:
    """One of ``check_block``'s networks: built, run forward and backward, its costs against the oracle."""
    import torch

    from . import summary
    from .api import as_spec, build_model
    from .errors import SpecError
    from .oracle import measure_meta

    block_spec = {"type": name, **(params or {}), "attn": attn}
    if short in ("projection", "avg_down", "zero_pad", "none"):
        block_spec["shortcut"] = short
    first = {"planes": planes, "depth": 2, "stride": stride}
    stages = [first] if dilation == 1 else [{"planes": planes, "depth": 1, "stride": 2},
                                             {**first, "stride": 2, "dilate": True}]
    spec = {"name": "check", "input": {"channels": 3, "size": [size, size]},
            "stem": [{"type": "conv", "channels": in_channels or kind.channels_out(planes, _params(kind, params)),
                      "kernel_size": 1}],
            "block": block_spec, "stages": stages, "stage": {"type": kind.stage},
            "drop_path_rate": 0.5 if attn else 0.0, "init": {"zero_init_residual": True}}
    case = f"{kind.cls_name}(stride={stride}, dilation={dilation}, in={in_channels}, shortcut={short}, " \
           f"attn={[a['position'] for a in attn]})"
    try:
        model = build_model(spec)
    except SpecError as exc:
        if dilation > 1 and "cannot dilate" in str(exc) or short == "zero_pad" and "shrink" in str(exc) or \
                stride > 1 and "cannot stride" in str(exc):
            return
        raise AssertionError(f"{case}: {exc}") from None
    build_model(spec, device="meta")
    expected = summary.measure(as_spec(spec)).output_shape
    model.train()
    x = torch.randn(2, 3, size, size, requires_grad=True)
    out = model(x)
    assert list(out.shape) == [2, *expected[1:]], f"{case}: output {tuple(out.shape)}, planned {expected}"
    out.float().pow(2).mean().backward()
    missing = [n for n, q in model.named_parameters() if q.grad is None]
    assert not missing, f"{case}: parameters unused in forward: {missing}"
    assert torch.isfinite(x.grad).all(), f"{case}: no finite gradient to the input"
    if kind.describe is not None:
        ours = summary.measure(as_spec(spec), depth=2)
        oracle = measure_meta(as_spec(spec), depth=2)
        assert [(r.name, r.output_shape, r.params, r.macs) for r in ours.rows] == \
            [(r.name, r.output_shape, r.params, r.macs) for r in oracle.rows], \
            f"{case}: the described cost differs from a meta-device forward"


def _params(kind: Any, params: dict | None) -> Any:
    return kind.params.model_validate({"type": kind.name, **(params or {})})
