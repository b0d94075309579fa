"""The reference the analytic summary is tested against: the whole model built on the meta device and run
once under torch's ``FlopCounterMode``, a row per module. Nothing is allocated."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from .errors import SpecError, SummaryError, first_line
from .specs import ModelSpec
from .summary import Row, Summary


def _shape(out: Any) -> list:
    """A tensor's shape, or the shapes of a list of tensors (a features_only model's outputs)."""
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (list, tuple)):
        return [_shape(o) for o in out]
    return []


def _type_name(module: nn.Module) -> str:
    """The class name; a stage shows its block type and depth instead of 'Sequential'."""
    kinds = {type(m).__name__ for m in module.children()}
    if type(module) is nn.Sequential and len(kinds) == 1 and len(module):
        return f"{kinds.pop()} x{len(module)}"
    return type(module).__name__


class WrittenBytes:
    """Bytes each aten op writes in a forward pass: every output of an op that is neither a view nor in
    place (max pooling's int64 indices included; a batch norm in eval mode writes its output only: the
    meta kernels' saved statistics are empty on real devices; ``_unsafe_view`` is a view that torch does
    not mark as one). The reference of the summary's activation memory."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                out = func(*args, **(kwargs or {}))
                if not func.is_view and not func._schema.is_mutable and "_unsafe_view" not in func.__name__:
                    outs = tree_flatten(out)[0]
                    if "batch_norm" in func.__name__:
                        outs = outs[:1]
                    counter.total += sum(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor))
                return out

        self.total = 0
        self.mode = Mode()


def measure_meta(spec: ModelSpec, batch_size: int = 1, depth: int = 1,
                 dtype: torch.dtype = torch.float32) -> Summary:
    """Build ``spec`` on the meta device and run one forward pass under FlopCounterMode, with a row
    per module to ``depth``; the oracle the analytic path is tested against."""
    from torch.utils.flop_counter import FlopCounterMode

    from .build import build

    model = build(spec, device="meta").to(dtype).eval()
    x = torch.empty(batch_size, spec.input.channels, *spec.input.size, device="meta", dtype=dtype)
    counter = FlopCounterMode(display=False)
    recorder = _Recorder(counter, depth)
    written = WrittenBytes()
    acts = [0]  # pycls' activations: what each convolution and linear layer outputs, counted by hooks

    def count(_m: nn.Module, _args: Any, output: Any) -> None:
        acts[0] += output.numel() if isinstance(output, torch.Tensor) else 0

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    # the rows of depth 1 are the plan's parts (stem layers, stages, head layers) whatever the layout
    for name in (*model.stem_names, *model.stage_names, *getattr(model, "final_names", ()),
                 *getattr(model, "head_names", ())):
        recorder.attach(model.get_submodule(name), name, 1)
    try:
        with torch.no_grad(), counter, written.mode:
            out = model(x)
    except Exception as exc:  # e.g. a plugin block that reads tensor values, which meta tensors lack
        where = recorder.entered[-1] if recorder.entered else spec.name
        raise SummaryError(f"{where} cannot run on the meta device: {first_line(exc, 200)}") from exc
    finally:
        recorder.remove()
        for hook in hooks:
            hook.remove()
    params = list(model.parameters())
    return Summary(
        name=spec.name,
        input_shape=list(x.shape),
        output_shape=_shape(out),
        batch_size=batch_size,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        macs=counter.get_total_flops() // 2,
        activations=acts[0],
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        activation_bytes=written.total,
        dtype=str(dtype).replace("torch.", ""),
        rows=recorder.rows,
    )


class _Recorder:
    """Forward hooks that give each attached module a row: its type, output shape, parameters and MACs."""

    def __init__(self, counter: Any, depth: int):
        self.counter, self.depth = counter, depth
        self.rows: list[Row] = []
        self.hooks: list[Any] = []
        self.entered: list[str] = []  # modules whose forward started, innermost last

    def attach(self, module: nn.Module, name: str, level: int) -> None:
        row = Row(name, _type_name(module), level, [], sum(p.numel() for p in module.parameters()), 0)
        self.rows.append(row)
        start = [0]

        def pre(_m: nn.Module, _args: Any) -> None:
            start[0] = self.counter.get_total_flops()
            self.entered.append(f"{name} ({type(_m).__name__})")

        def post(_m: nn.Module, _args: Any, out: Any) -> None:
            row.macs = (self.counter.get_total_flops() - start[0]) // 2
            row.output_shape = _shape(out)
            self.entered.pop()

        self.hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        if level < self.depth and not getattr(module, "archkit_primitive", False):
            for child_name, child in module.named_children():
                self.attach(child, f"{name}.{child_name}", level + 1)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def check_shapes(model: nn.Module, spec: ModelSpec) -> None:
    """Run ``model`` (built from ``spec``, on any device) once at batch 1 and check that every stem layer,
    stage and head layer gives the shape the plan says. SpecError, located at the part, when a shape
    differs or a part fails: what a plugin type declares (its cost, its output channels) is not trusted
    where weights are about to be allocated or written."""
    from .plan import plan

    p = plan(spec, head=not spec.features_only)
    parts = [(lp.name, (lp.part, lp.index), lp.out_shape) for lp in p.stem]
    parts += [(sp.name, ("stages", sp.index), sp.out_shape) for sp in p.stages]
    parts += [(lp.name, (lp.part, lp.index), lp.out_shape) for lp in p.final]
    parts += [(lp.name, (lp.part, lp.index), lp.out_shape) for lp in (p.head if not spec.features_only else ())]
    got: dict[str, list] = {}
    entered: list[tuple[str, tuple]] = []
    hooks = []
    for name, path, _ in parts:
        with contextlib.suppress(AttributeError):
            module = model.get_submodule(name)
            hooks.append(module.register_forward_pre_hook(lambda _m, _a, name=name, path=path:
                                                          entered.append((name, path))))
            hooks.append(module.register_forward_hook(lambda _m, _a, out, name=name: got.__setitem__(name, _shape(out))))
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    was_training = model.training
    model.eval()
    def compare() -> None:
        for name, path, shape in parts:
            if name in got and got[name] != [1, *shape]:
                raise spec.error(path, f"{name}: the built module gives {tuple(got[name][1:])}, the plan "
                                 f"{tuple(shape)} (a plugin type's declared shapes are wrong); nothing built or written")

    try:
        with torch.no_grad():
            x = torch.randn(1, spec.input.channels, *spec.input.size, generator=torch.Generator().manual_seed(0))
            model(x.to(device))  # random, not zeros: a block may branch on its input's values
    except Exception as exc:
        compare()  # a part that gave the wrong shape before a later one failed is the cause
        name, path = entered[-1] if entered else (spec.name, ())
        raise spec.error(path, f"{name} fails to run: {first_line(exc, 200)}; nothing built or written") from exc
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    compare()


def checked_params(spec: ModelSpec) -> tuple[int, bool]:
    """The parameters of ``spec`` counted on a meta build, and whether its shapes were checked there
    (``check_shapes`` on meta; False when the model cannot run on meta, e.g. a block reading tensor
    values: the caller checks the built model instead)."""
    from .build import build

    model = build(spec, device="meta")
    count = sum(q.numel() for q in model.parameters())
    try:
        check_shapes(model, spec)
    except SpecError as exc:
        if "fails to run" in str(exc):
            return count, False
        raise
    return count, True
