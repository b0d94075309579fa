"""timm's block strings as a generator: ``efficientnet: {arch: [[ds_r1_k3_s1_e1_c16_se0.25], [ir_r2_k3_s2_e6_c24_se0.25],
...]}`` decoded as timm's ``_efficientnet_builder.decode_arch_def`` reads them (one list per stage), each field
checked, into ``efficientnet`` stages of ``groups:`` (one group per string). The width and depth multipliers are the
spec's own (``width_multiplier``, ``depth_multiplier`` with the family's ``scaling:`` rule): compound scaling is
those two numbers, so EfficientNet-B1..B8 are B0 and two numbers.

A string is ``TYPE_FIELD_FIELD...``: TYPE ``ds``, ``dsa``, ``ir``, ``er``, ``cn``, ``uir`` or ``mqa``; fields ``r`` repeats,
``k`` kernel (``k3.5.7``: MixNet's mixed kernels), ``s`` stride, ``e`` expansion, ``c`` channels, ``se`` SE ratio,
``a``/``p`` the expansion / pointwise kernels (``uir``: the start / end depthwise kernels), ``fc`` the width an
edge block expands from, ``gs`` the group size, ``n`` the activation (``nre``, ``nr6``, ``nhs``, ``nsw``,
``nmi``), ``cc`` CondConv's experts (``ir``), ``h`` / ``d`` / ``v`` multi-query attention's heads, key and
value width and kv stride (``mqa``), ``d1`` space-to-depth (``ds``, ``ir``), ``noskip`` / ``skip``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Generator, GeneratorProblem

_ACTS = {"re": "relu", "r6": "relu6", "hs": "hard_swish", "sw": "silu", "mi": "mish"}
_TYPES = {"ds": "ds", "dsa": "ds", "ir": "ir", "er": "er", "cn": "cn", "uir": "uir", "mqa": "mqa"}
_FIELDS = {  # what each type reads (timm's _decode_block_str); r, s, c are every type's
    "ds": {"k", "p", "se", "gs", "d"}, "dsa": {"k", "p", "se", "gs", "d"},
    "ir": {"k", "a", "p", "e", "se", "gs", "cc", "d"},
    "er": {"k", "p", "e", "se", "fc", "gs"}, "cn": {"k", "gs"}, "uir": {"k", "a", "p", "e", "se", "gs"},
    "mqa": {"k", "h", "v", "d"},
}
_LATER = {"mha": "MobileNetV4's multi-head attention blocks"}


class SqueezeExciteSettings(BaseModel):
    """The network's SE form (timm's ``se_layer`` and ``se_from_exp``); each string's ``se`` gives the ratio."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    kind: Literal["se", "gc"] = Field("se", description="Squeeze-and-excitation, or global context (timm's 'gc').")
    from_exp: bool = Field(False, description="The ratio is of the expanded width (MobileNetV3), not the input's.")
    act: Literal["block", "relu"] = Field("block", description="The activation between its convs.")
    gate: Literal["sigmoid", "hard_sigmoid"] = Field("sigmoid", description="The gate.")
    divisor: int | None = Field(None, ge=1, le=256, description="Hidden width rounded to a multiple of this.")
    round_limit: float = Field(0.9, ge=0, lt=1, description="make_divisible's round_limit with divisor.")


class EfficientNetSpec(BaseModel):
    """timm's ``arch_def`` and the builder settings every block of the network shares."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    arch: list[list[str]] = Field(min_length=1, max_length=64, description="Block strings, one list per stage "
                                  "(timm's arch_def).")
    se: SqueezeExciteSettings = Field(default_factory=SqueezeExciteSettings, description="The SE form.")
    padding: Literal["symmetric", "same"] = Field("symmetric", description="Every conv's padding: timm's, or "
                                                  "TensorFlow's 'SAME' (the tf_ models).")
    aa: Literal["blur", "blurpc", "avg"] | None = Field(None, description="Anti-aliased downsampling in strided "
                                                        "blocks (timm's aa_layer).")
    group_size: int | None = Field(None, ge=0, le=1 << 20, description="Channels per group for every block whose "
                                   "string sets no gs (timm's group_size).")
    experts_multiplier: int = Field(1, ge=1, le=16, description="Multiplies every string's CondConv experts (cc; "
                                    "timm's experts_multiplier: the _8e models).")
    layer_scale: float | None = Field(None, gt=0, le=1, description="Layer scale start of uir blocks (timm's "
                                      "layer_scale_init_value).")
    fix_first_last: bool = Field(False, description="The first and last stages keep their depth under the depth "
                                 "multiplier (timm's fix_first_last).")
    depth_multipliers: list[Annotated[float, Field(gt=0, le=64)]] | None = Field(None, description="Each stage's own depth multiplier, in place "
                                                  "of the spec's (timm's per-stage depth_multiplier).")


def _number(text: str, kind: type, key: str, where: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise GeneratorProblem(where, f"{key}{text}: {text!r} is not {'an integer' if kind is int else 'a number'}")
    if value < 0 or value != value:
        raise GeneratorProblem(where, f"{key}{text}: must not be negative")
    return value


def _kernel(text: str, key: str, where: str) -> int | list[int]:
    """timm's ``_parse_ksize``: ``3`` or ``3.5.7`` (mixed kernels)."""
    if "." in text:
        return [_number(k, int, key, where) for k in text.split(".")]
    return _number(text, int, key, where)


def decode(text: str, where: str = "arch") -> tuple[dict, int, int]:
    """One block string as (block mapping, repeats, stride), every field checked (``where`` names it in errors)."""
    ops = text.split("_")
    kind = ops[0]
    if kind in _LATER:
        raise GeneratorProblem(where, f"{text!r}: {kind} blocks ({_LATER[kind]}) are not built yet")
    if kind not in _TYPES:
        raise GeneratorProblem(where, f"{text!r}: unknown block type {kind!r} (one of {', '.join(_TYPES)})")
    options: dict[str, str] = {}
    skip = None
    for op in ops[1:]:
        if op in ("noskip", "skip"):
            skip = op == "skip"
            continue
        if op.startswith("n") and not op.startswith("noskip"):
            if op[1:] not in _ACTS:
                raise GeneratorProblem(where, f"{text!r}: unknown activation {op!r} (one of "
                                       f"{', '.join('n' + a for a in _ACTS)})")
            options["n"] = op[1:]
            continue
        parts = re.split(r"(\d.*)", op)
        if len(parts) < 2 or not parts[0]:
            raise GeneratorProblem(where, f"{text!r}: cannot read {op!r} (a key and a number, as k3 or se0.25)")
        key = parts[0]
        if key not in _FIELDS[kind] | {"r", "s", "c", "e"}:
            raise GeneratorProblem(where, f"{text!r}: {kind} blocks take no {key!r} (they take "
                                   f"{', '.join(sorted(_FIELDS[kind] | {'r', 's', 'c', 'e'}))})")
        options[key] = parts[1]
    for key in ("r", "s", "c", "k") + (("e",) if kind in ("ir", "er", "uir") else ()) + \
            (("h", "d") if kind == "mqa" else ()):
        if key not in options:
            raise GeneratorProblem(where, f"{text!r}: needs {key} ({_NAMES[key]})")
    return _mapping(kind, options, skip, text, where)


_NAMES = {"r": "repeats", "s": "stride", "c": "channels", "k": "kernel", "e": "expansion", "h": "heads",
          "d": "the key and value width"}


def _mapping(kind: str, o: dict[str, str], skip: bool | None, text: str, where: str) -> tuple[dict, int, int]:
    num = lambda key, t=int: _number(o[key], t, key, where)  # noqa: E731
    repeat, stride = num("r"), num("s")
    if repeat < 1 or stride not in (1, 2):
        raise GeneratorProblem(where, f"{text!r}: needs r >= 1 and s 1 or 2")
    block: dict[str, Any] = {"type": _TYPES[kind], "repeat": repeat, "channels": num("c")}
    if kind == "mqa":
        block["kernel_size"] = _kernel(o["k"], "k", where)
        block.update(num_heads=num("h"), key_dim=num("d"), kv_stride=num("v") if "v" in o else 1)
    elif kind == "uir":
        block["start_kernel_size"] = _kernel(o.get("a", "0"), "a", where)
        block["kernel_size"] = _kernel(o["k"], "k", where)
        block["end_kernel_size"] = _kernel(o.get("p", "0"), "p", where)
    else:
        block["kernel_size"] = _kernel(o["k"], "k", where)
        if "a" in o:
            block["exp_kernel_size"] = _kernel(o["a"], "a", where)
        if "p" in o:
            block["pw_kernel_size"] = _kernel(o["p"], "p", where)
    if "e" in o and kind in ("ir", "er", "uir"):
        block["exp_ratio"] = num("e", float)
    if "d" in o and kind != "mqa" and num("d"):
        if stride != 1:
            raise GeneratorProblem(where, f"{text!r}: space-to-depth (d) downsamples itself: it needs s1")
        block["s2d"] = 1
    if "cc" in o and num("cc"):
        block["num_experts"] = num("cc")
    if "fc" in o and num("fc"):
        block["force_in_channels"] = num("fc")
    if "gs" in o:
        block["group_size"] = num("gs")
    if "n" in o:
        block["act"] = _ACTS[o["n"]]
    if kind == "dsa":
        block["pw_act"] = True
    if kind == "cn":
        if skip:
            block["shortcut"] = "identity"
    elif skip is False or kind == "dsa":
        block["shortcut"] = "none"
    if "se" in o and num("se", float) > 0:
        block["se"] = {"ratio": num("se", float)}
    return block, repeat, stride


def stages(e: EfficientNetSpec) -> list[dict]:
    """Each stage's mapping: its groups (one per string), depth and planes, the first string's stride."""
    if e.depth_multipliers is not None and len(e.depth_multipliers) != len(e.arch):
        raise GeneratorProblem("depth_multipliers", f"{len(e.depth_multipliers)} multipliers for {len(e.arch)} "
                               "stages")
    out, run = [], False  # run: inside a space-to-depth run (timm's builder's space2depth state)
    for i, strings in enumerate(e.arch):
        if not strings:
            raise GeneratorProblem(f"arch.{i}", f"stage {i + 1} lists no block strings")
        groups, first_stride = [], 1
        for j, text in enumerate(strings):
            block, _, stride = decode(text, f"arch.{i}.{j}")
            if j and stride > 1:
                raise GeneratorProblem(f"arch.{i}.{j}", f"{text!r}: only a stage's first block strides (timm's builder); "
                                       f"start a new stage with it")
            if j == 0:
                ended = run and stride > 1
            block, stride, run = _space_to_depth(block, stride, run, text, f"arch.{i}.{j}")
            first_stride = stride if j == 0 else first_stride
            groups.append({**_settled(e, block), "__origin__": f"arch.{i}.{j}"})  # errors point at the string
        stage = {"type": "efficientnet", "planes": groups[-1]["channels"], "depth": sum(g["repeat"] for g in groups),
                 "stride": first_stride, "groups": groups}
        if ended:  # timm's builder: the block that ends a space-to-depth run strides 1 with a quarter of its expansion
            stage["first_exp_ratio"] = groups[0]["exp_ratio"] / 4
        if e.fix_first_last and i in (0, len(e.arch) - 1):  # timm's decode_arch_def: it wins
            stage["depth_multiplier"] = 1.0
        elif e.depth_multipliers is not None:
            stage["depth_multiplier"] = e.depth_multipliers[i]
        out.append(stage)
    return out


def _space_to_depth(block: dict, stride: int, run: bool, text: str, where: str) -> tuple[dict, int, bool]:
    """timm's builder on a space-to-depth run: the blocks after its first output four times their channels until
    a strided block ends it, striding 1 (the run downsampled) with a quarter of its expansion."""
    if block.get("s2d") == 1:
        if run:
            raise GeneratorProblem(where, f"{text!r}: a space-to-depth run is already open")
        return block, stride, True
    if not run:
        return block, stride, False
    if stride == 1:
        if block["type"] not in ("ds", "ir"):
            raise GeneratorProblem(where, f"{text!r}: a space-to-depth run takes ds and ir blocks only")
        return {**block, "s2d": 2}, stride, True
    if "exp_ratio" not in block:
        raise GeneratorProblem(where, f"{text!r}: the block that ends a space-to-depth run needs an expansion (e)")
    return block, 1, False


def _settled(e: EfficientNetSpec, block: dict) -> dict:
    """The block with the network's shared settings."""
    if "se" in block:
        block["se"] = {**block["se"], **e.se.model_dump(exclude_defaults=True)}
    if e.padding != "symmetric":
        block["padding"] = e.padding
    if e.aa is not None:
        block["aa"] = e.aa
    if e.group_size is not None and "group_size" not in block:
        block["group_size"] = e.group_size
    if "num_experts" in block:
        block["num_experts"] *= e.experts_multiplier
    if e.layer_scale is not None and block["type"] in ("uir", "mqa"):
        block["layer_scale"] = e.layer_scale
    return block


efficientnet = Generator("efficientnet", EfficientNetSpec, stages, doc="timm's block strings (EfficientNet, "
                         "MobileNet, MixNet, MnasNet, FBNet, LCNet), decoded as timm's decode_arch_def")
