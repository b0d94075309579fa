"""Helpers for block authors: ``check_block(cls)`` exercises a block the way the builder uses it."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch
from torch import nn

from .context import Context

__all__ = ["check_block"]


def check_block(cls: Any, params: dict | None = None, *, planes: int = 16, size: int = 9,
                dilations: tuple[int, ...] = (1, 2)) -> None:
    """Build ``cls`` as a stage's first and later blocks across strides, dilations, channel changes and
    every shortcut kind it accepts, plus once with drop path and an SE module at each attention
    position it offers; run forward and backward; check output shapes, that every parameter gets a
    gradient, that the block builds on the meta device and that ``zero_init_last`` (if any) zeroes
    something.

    Raises AssertionError naming the case that failed. A block that refuses a dilation with
    ValueError or NotImplementedError (as torchvision's BasicBlock) is skipped for that dilation.
    """
    from .attention.se import SEModule, SqueezeExcite
    from .registry import check_block as check_contract

    check_contract(cls.__name__, cls)
    p = cls.Params(**(params or {}))
    out_channels = cls.out_channels(planes, p)
    assert isinstance(out_channels, int) and out_channels > 0, f"out_channels({planes}) = {out_channels!r}"
    cases = [(stride, dilation, in_channels, kind, Context(shortcut=kind))
             for stride, dilation, in_channels, kind in itertools.product((1, 2), dilations, (out_channels, 8),
                                                                          cls.shortcuts)]
    for position in cls.attn_positions:
        attn = (SqueezeExcite(position=position, rd_divisor=1),)
        cases.append((2, 1, 8, cls.shortcuts[0], Context(shortcut=cls.shortcuts[0], attn=attn, drop_path_rate=0.5)))
    for stride, dilation, in_channels, kind, ctx in cases:
        changes = stride != 1 or in_channels != out_channels
        if kind == "zero_pad" and in_channels > out_channels:
            continue  # the plan refuses this before any block is built
        ctx = ctx if kind == "none" or changes else dataclasses.replace(ctx, shortcut="identity")
        case = (f"{cls.__name__}(in={in_channels}, planes={planes}, stride={stride}, dilation={dilation}, "
                f"shortcut={ctx.shortcut}, attn={[a.position for a in ctx.attn]})")

        def make() -> nn.Module:
            downsample = None
            if ctx.shortcut not in ("identity", "none"):
                downsample = cls.make_shortcut(in_channels, out_channels, stride, dilation, p, ctx)
            return cls(in_channels, planes, stride=stride, dilation=dilation, downsample=downsample,
                       params=p, ctx=ctx)

        try:
            block = make()
        except (ValueError, NotImplementedError):
            if dilation == 1:
                raise
            continue
        with torch.device("meta"):
            make()
        if ctx.attn:
            found = [n for n, m in block.named_modules() if isinstance(m, SEModule)]
            assert found, f"{case}: the attention module was not attached"
        params_list = list(block.parameters())
        assert params_list, f"{case}: no parameters registered (modules kept in a plain list?)"
        block.train()
        x = torch.randn(2, in_channels, size, size, requires_grad=True)
        torch.manual_seed(0)
        out = block(x)
        expected = (2, out_channels, (size - 1) // stride + 1, (size - 1) // stride + 1)
        assert tuple(out.shape) == expected, f"{case}: output {tuple(out.shape)}, expected {expected}"
        out.float().pow(2).mean().backward()
        missing = [n for n, q in block.named_parameters() if q.grad is None]
        assert not missing, f"{case}: parameters unused in forward: {missing}"
        assert x.grad is not None and torch.isfinite(x.grad).all(), f"{case}: no finite gradient to the input"
        zero = getattr(block, "zero_init_last", None)
        if callable(zero):
            before = {n: q.detach().clone() for n, q in block.named_parameters()}
            zero()
            changed = [n for n, q in block.named_parameters() if not torch.equal(q, before[n])]
            assert changed, f"{case}: zero_init_last() changed nothing"
