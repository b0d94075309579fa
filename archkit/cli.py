"""Command line: ``archkit build|validate|list|blocks|schema|export|push|draw|fit|sample|diff|explain``; it only
chains the library's steps. The spec commands import no torch: only building weights, exporting and
measuring a plugin type that declares no cost do."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import sys
import traceback
import warnings
from typing import Any, Callable, Sequence

from .errors import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, BadDestination, CheckpointError, ExportError, OutputError,
                     NothingToFuse, SpecError, SummaryError, WeightsError, first_line)
from .files import write_text

from .loader import MAX_PARAMS as DEFAULT_MAX_PARAMS, MAX_PARAMS_ENV
MAX_PARAMS_HELP = (f"refuse to materialize more parameters than this (default {DEFAULT_MAX_PARAMS:,}, "
                   f"or ${MAX_PARAMS_ENV}); counted from the spec before anything is allocated")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line + the usage hint (and the nearest flag), exit code 2
        import difflib
        import re

        hint = ""
        unknown = re.findall(r"(--?[A-Za-z][\w-]*)", message.split("unrecognized arguments:")[-1]) \
            if "unrecognized arguments" in message else []
        if unknown:
            options = [o for a in self._all_actions() for o in a.option_strings]
            close = difflib.get_close_matches(unknown[0], options, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            takers = self._commands_taking(unknown[0])
            if close and close[0] == unknown[0] and takers:  # a real option of other commands
                hint = f"; {unknown[0]} is an option of: {', '.join(takers)}"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint} (see '{self.prog} --help')\n")

    def _commands_taking(self, flag: str) -> list[str]:
        return [name for action in self._actions if isinstance(action, argparse._SubParsersAction)
                for name, parser in action.choices.items()
                if any(flag in a.option_strings for a in parser._actions)]

    def _all_actions(self) -> list[argparse.Action]:
        actions = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    actions.extend(parser._actions)
        return actions


class _Version(argparse.Action):
    """``--version`` from the installed package's metadata (read only when asked)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from .version import __version__

        parser.exit(message=f"archkit {__version__}\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum, with a one-line error otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value
    return parse


_positive = _int_at_least(1)


def _amount(text: str) -> float:
    """An argparse type: ``2G``, ``500M``, ``12.5M``, ``3e9``."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1:].upper(), 1.0)
    try:
        value = float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected an amount such as 2G or 500M, got {text!r}")
    return value
_non_negative = _int_at_least(0)


def _count(text: str) -> int:
    """An argparse type: a whole number of at least 1, also as ``1e6`` or ``10K``."""
    try:
        value = _amount(text)
    except argparse.ArgumentTypeError:
        value = 0.5
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number such as 1000, 1e6 or 10K, got {text!r}")
    return int(value)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                        help="show the full Python traceback on errors")
    common.add_argument("--no-plugins", action="store_true", default=argparse.SUPPRESS,
                        help="do not load plugin blocks and layers (also: ARCHKIT_NO_PLUGINS=1)")
    parser = _Parser(prog="archkit", description="Build ResNet-family PyTorch networks from YAML specs.",
                     parents=[common])
    parser.add_argument("--version", action=_Version, nargs=0, help="show archkit's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_add_build, _add_inspect, _add_export, _add_share, _add_fit, _add_sample):
        add(sub, common)
    return parser


def _add_build(sub: Any, common: argparse.ArgumentParser) -> None:
    """The build command."""
    b = sub.add_parser("build", parents=[common], help="build a spec; --summary, --json, --output",
                       description="Build the model a spec describes. --summary and --json compute shapes, "
                                   "parameters and MACs from the spec's description (no weights, no torch); --output "
                                   "materializes it and saves a checkpoint.")
    b.add_argument("spec", metavar="SPEC", help="spec name (archkit list) or YAML file")
    b.add_argument("--summary", action="store_true", help="print per-layer shapes, params and MACs")
    b.add_argument("--depth", type=_positive, default=1, metavar="N",
                   help="table depth: 1 = stem/stages/head, 2 = blocks, 3 = inside blocks (default 1)")
    b.add_argument("--input-size", type=_positive, nargs="+", metavar="N",
                   help="input height [width] for the summary and shape checks (default: the spec's)")
    b.add_argument("--batch-size", type=_positive, default=1, metavar="N", help="batch size for the summary")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field after base: merging, e.g. stages.2.depth=23 (repeatable)")
    b.add_argument("--output", metavar="FILE", help="materialize the model and save a checkpoint here")
    b.add_argument("--json", action="store_true", help="print the summary as JSON (stable keys)")
    b.add_argument("--seed", type=_non_negative, metavar="N", help="seed for the initial weights (overrides seed:)")
    b.add_argument("--max-params", type=_positive, metavar="N", help=MAX_PARAMS_HELP)
    _variant_args(b)
    b.set_defaults(func=cmd_build)


def _add_export(sub: Any, common: argparse.ArgumentParser) -> None:
    """The export command."""
    e = sub.add_parser("export", parents=[common], help="export to ONNX, TorchScript or an ExportedProgram",
                       description="Build a spec (random or checkpoint weights) and export it for deployment.")
    e.add_argument("spec", metavar="SPEC", help="spec name or YAML file")
    e.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported-program", "hf"],
                   help="hf: a shared folder (config.json, model.safetensors, README.md) for local-dir:/hf-hub:")
    e.add_argument("--output", required=True, metavar="FILE", help="file to write (atomically); a folder for hf")
    e.add_argument("--input-size", type=_positive, nargs="+", metavar="N", help="input height [width]")
    e.add_argument("--batch-size", type=_positive, default=2, metavar="N", help="example batch size (default 2)")
    e.add_argument("--dynamic-batch", action="store_true", help="let the batch dimension vary (onnx, "
                   "exported-program; the default, kept for older scripts)")
    e.add_argument("--static-batch", action="store_true", help="fix the batch dimension at --batch-size (onnx, "
                   "exported-program; by default it varies, 1..4096)")
    e.add_argument("--fuse", action="store_true", help="fold every BatchNorm that follows a conv into it first")
    e.add_argument("--reparameterize", action="store_true", help="convert re-parameterizable blocks (RepVGG, "
                   "MobileOne) to their deploy form first (archkit.reparameterize)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    e.add_argument("--max-params", type=_positive, metavar="N", help=MAX_PARAMS_HELP)
    _variant_args(e)
    e.set_defaults(func=cmd_export)


def _add_fit(sub: Any, common: argparse.ArgumentParser) -> None:
    """The fit command."""
    f = sub.add_parser("fit", parents=[common], help="fit a spec's width and depth (or a generator's numbers) to a budget",
                       description="Find width and depth multipliers (or the generator numbers named in --vary) whose "
                                   "MACs come closest to a budget (from below), deterministically, from the analytic "
                                   "costs; write the result as a spec.")
    f.add_argument("spec", metavar="SPEC", help="spec name or YAML file")
    f.add_argument("--macs", required=True, type=_amount, metavar="N", help="MAC budget, e.g. 2G or 500M")
    f.add_argument("--params-max", type=_amount, metavar="N", help="parameter budget, e.g. 12M")
    f.add_argument("--input-size", type=_positive, nargs="+", metavar="N", help="input height [width]")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    f.add_argument("--vary", metavar="NAMES", help="comma-separated numbers to vary (default: width,depth, the "
                   "multipliers); a generated spec's: its generator's numbers (regnet: w_0, w_a, w_m, group_width, "
                   "bottleneck_multiplier, regnet.depth; see `archkit blocks`)")
    f.add_argument("--output", metavar="FILE", help="write the chosen spec (a few lines over base: SPEC)")
    f.add_argument("--divisor", type=_positive, default=8, metavar="N", help="keep scaled widths a multiple of N "
                   "(default 8, hardware-friendly; the spec's width_divisor where larger; 1: any width)")
    f.add_argument("--plot", metavar="FILE.svg", help="draw every evaluated candidate, the budget and the choice")
    f.set_defaults(func=cmd_fit)


def _add_sample(sub: Any, common: argparse.ArgumentParser) -> None:
    """The sample command."""
    f = sub.add_parser("sample", parents=[common], help="draw models from design spaces: their numbers, "
                       "complexity and EDFs", description="Draw models from one or more design spaces (packaged: "
                       "anynetx_a..e, regnetx, regnety; or a YAML file), seeded and reproducible, keeping those that "
                       "meet the space's constraints; print their complexity and write a table, EDFs and specs.")
    f.add_argument("spaces", metavar="SPACE", nargs="+", help="design-space name or YAML file")
    f.add_argument("-n", "--num", type=_count, default=100, metavar="N", help="models to draw per space "
                   "(default 100)")
    f.add_argument("--seed", type=_non_negative, default=0, metavar="N", help="random seed (default 0)")
    f.add_argument("--jobs", type=_positive, default=None, metavar="N", help="processes drawing (default: the "
                   "machine's cores, at most 8); the result does not depend on it")
    f.add_argument("--max-draws", type=_count, default=None, metavar="N", help="give up after this many draws "
                   "per space (default 1,000,000, as pycls)")
    f.add_argument("--csv", metavar="FILE", help="write every sampled model's numbers and complexity as CSV")
    f.add_argument("--json", dest="json_file", metavar="FILE", help="the same as JSON, with the refusals")
    f.add_argument("--svg", metavar="FILE.svg", help="draw the EDFs of parameters, MACs and activations")
    f.add_argument("--output", metavar="DIR", help="write each sampled model as a spec file in DIR")
    f.set_defaults(func=cmd_sample)


def _add_inspect(sub: Any, common: argparse.ArgumentParser) -> None:
    """The validate, blocks, draw, list, diff, explain commands."""
    v = sub.add_parser("validate", parents=[common], help="validate one or more specs",
                       description="Validate specs (every field, then every shape and block); exit 2 if any fails.")
    v.add_argument("specs", metavar="SPEC", nargs="+", help="spec names or files")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    v.set_defaults(func=cmd_validate)
    k = sub.add_parser("blocks", parents=[common], help="list block, layer and attention types, or show one",
                       description="List every registered block, layer and attention type and the shortcut "
                                   "kinds, or show one type's parameters.")
    k.add_argument("name", nargs="?", metavar="NAME", help="a block, layer or attention type to describe")
    k.set_defaults(func=cmd_blocks)
    d = sub.add_parser("draw", parents=[common], help="draw the architecture as SVG",
                       description="Draw stem, stages and head as boxes with block type, depth, channels, "
                                   "resolution and shortcuts, as an SVG file.")
    d.add_argument("spec", metavar="SPEC", help="spec name or YAML file")
    d.add_argument("--output", required=True, metavar="FILE", help="SVG file to write")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    d.set_defaults(func=cmd_draw)
    m = sub.add_parser("list", parents=[common], help="list the packaged specs with parameters and GMACs",
                       description="List the packaged (and plugin) specs matching PATTERN, with parameters, GMACs "
                                   "at their input size and declared weights.")
    m.add_argument("pattern", nargs="?", default="*", metavar="PATTERN", help="shell-style pattern, e.g. 'resnet*'")
    m.set_defaults(func=cmd_list)
    df = sub.add_parser("diff", parents=[common], help="compare two specs stage by stage",
                        description="Parameters, MACs, output shapes and block settings that differ between two "
                                    "specs, per stage and in total. Exit 0 when equal, 1 when different.")
    df.add_argument("a", metavar="A", help="spec name or YAML file")
    df.add_argument("b", metavar="B", help="spec name or YAML file")
    df.add_argument("--json", action="store_true", help="print the differences as JSON")
    df.set_defaults(func=cmd_diff)
    x = sub.add_parser("explain", parents=[common], help="where a field's value comes from",
                       description="The value of FIELD after base: merging and --set, the file and line that set "
                                   "it, and what it overrode.")
    x.add_argument("spec", metavar="SPEC", help="spec name or YAML file")
    x.add_argument("field", metavar="FIELD", help="dotted field path, e.g. block.cardinality or stages.2.depth")
    x.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (repeatable)")
    x.set_defaults(func=cmd_explain)


def _add_share(sub: Any, common: argparse.ArgumentParser) -> None:
    """The push, schema commands."""
    h = sub.add_parser("push", parents=[common], help="upload a shared folder to the Hugging Face hub",
                       description="Upload a folder written by 'archkit export SPEC --format hf --output DIR' "
                                   "to the Hugging Face hub (needs huggingface_hub and a login: 'hf auth login').")
    h.add_argument("folder", metavar="DIR", help="the folder archkit wrote")
    h.add_argument("--repo", required=True, metavar="ORG/NAME", help="the hub repository (created if missing)")
    h.add_argument("--private", action="store_true", help="create the repository private")
    h.add_argument("--revision", metavar="REV", help="branch to push to (default: main)")
    h.add_argument("--message", metavar="TEXT", help="commit message")
    h.set_defaults(func=cmd_push)
    s = sub.add_parser("schema", parents=[common], help="print the JSON Schema of the spec format",
                       description="Print the JSON Schema of specs, with every registered block's parameters, "
                                   "for editors (yaml-language-server) and CI.")
    s.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    s.set_defaults(func=cmd_schema)


def _variant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-classes", type=_non_negative, metavar="N",
                   help="resize the head's classifier to N classes (0 removes it), as timm's num_classes")
    p.add_argument("--in-chans", type=_positive, metavar="N", help="input channels (the first conv follows)")
    p.add_argument("--weights", metavar="W", help="pretrained weights: a declared name (see the spec's weights:), "
                                                  "SPEC:NAME, a file or a URL; loaded through a transfer plan")
    p.add_argument("--scale", metavar="NAME", help="the named scale to build, for specs that declare scales:")
    p.add_argument("--allow-partial", action="store_true",
                   help="with --weights: re-initialize tensors whose shapes differ instead of refusing")


def _load(args: argparse.Namespace, overrides: list[str] | None = None) -> Any:
    from .zoo import load as load_spec

    overrides = _overrides(args, scale=True) if overrides is None else list(overrides)
    return load_spec(args.spec, overrides,
                     num_classes=getattr(args, "num_classes", None), in_chans=getattr(args, "in_chans", None))


def _overrides(args: argparse.Namespace, scale: bool = False) -> list[str]:
    """The command's ``--set`` overrides, with ``--seed``, ``--input-size`` (and ``--scale``) as overrides."""
    from .loader import Override

    overrides = list(args.set)
    if getattr(args, "seed", None) is not None:
        overrides.append(Override(f"seed={args.seed}", f"--seed {args.seed}"))
    size = getattr(args, "input_size", None)
    if size:
        if len(size) > 2:
            raise SpecError("--input-size takes HEIGHT [WIDTH]")
        overrides.append(Override(f"input.size=[{size[0]}, {size[-1]}]", f"--input-size {' '.join(map(str, size))}"))
    if scale and getattr(args, "scale", None):
        overrides.append(Override(f"scale={args.scale}", f"--scale {args.scale}"))
    return overrides


def _max_params(args: argparse.Namespace) -> int:
    from .build import params_limit

    return params_limit(args.max_params)


def _count_params(spec: Any) -> int:
    """Parameters from the analytic summary (every block described, every shape checked); a plugin
    block that cannot run on meta is counted from a meta build instead."""
    from .summary import measure

    try:
        return measure(spec).total_params
    except SummaryError:
        from .build import build

        return sum(p.numel() for p in build(spec, device="meta").parameters())


def _materialize(spec: Any, args: argparse.Namespace) -> tuple[Any, int]:
    """Build real weights, after checking the parameter count and the shapes (on meta) against the size
    guard and the plan."""
    from .build import build, check_budget
    from .oracle import check_shapes, checked_params

    limit = _max_params(args)
    check_budget(spec, limit)  # from the plan: a giant is refused before its meta build
    count, checked = checked_params(spec)
    if count > limit:
        raise SpecError(f"{spec.name} has {count:,} parameters, above the limit of {limit:,} for materializing; "
                        f"raise it with --max-params {count} or ${MAX_PARAMS_ENV}", None)
    model = build(spec, max_params=limit)
    if not checked:  # could not run on meta: checked once for real, at batch 1
        check_shapes(model, spec)
    return model, count


def _inputs(args: argparse.Namespace) -> list:
    """Every file the command reads, as the files they are: the spec and its ``base:`` chain, and the
    weights (a declared ``file:``, ``SPEC:NAME``, a path or a ``file://`` URL)."""
    from . import loader, zoo

    from . import hub

    found: list = []
    ref = getattr(args, "spec", None)
    if ref and hub.is_ref(ref):
        with contextlib.suppress(SpecError, OSError):
            root = hub.folder(ref)
            found += [root, *(p for p in root.iterdir() if p.is_file())]
    elif ref:
        if zoo.is_path(ref):  # a packaged name is not a file here (its file is in the chain below)
            found.append(ref)
        with contextlib.suppress(SpecError, OSError):
            found += [path for path, _ in loader.chain(zoo.resolve(ref), zoo.resolve)]
    weights = getattr(args, "weights", None)
    if weights:
        from . import weights as weights_mod

        found.append(weights)
        with contextlib.suppress(SpecError, WeightsError, OSError):
            source = weights_mod.resolve(weights, _load(args))
            if source.file is not None:
                found.append(source.file)
            elif source.url is not None and source.url.startswith("file://"):
                found.append(weights_mod.file_url_path(source.url))
    return found


def _example_fits(spec: Any, batch_size: int) -> None:
    """Refuse, before any work, an example forward whose largest layer alone (its input and output at
    ``batch_size``, float32) would not fit in this machine's memory: ``--input-size 65536`` is a typo,
    not a request for hundreds of gigabytes."""
    from .summary import measure

    try:
        result = measure(spec, batch_size=batch_size)
    except SummaryError:  # a plugin block that cannot be measured: the export itself will tell
        return
    numel = lambda shape: math.prod(shape) if shape and isinstance(shape[0], int) else 0  # noqa: E731
    shapes = [result.input_shape, *(r.output_shape for r in result.rows)]
    need = max(4 * (numel(a) + numel(b)) for a, b in zip(shapes, shapes[1:]))
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > memory:
        size = "x".join(map(str, spec.input.size))
        raise SpecError(f"an example input of {batch_size}x{spec.input.channels}x{size} needs at least "
                        f"{need / 2**30:,.1f} GiB for one layer's input and output; this machine has "
                        f"{memory / 2**30:,.1f} GiB (a smaller --input-size?)")


def _svg_name(path: str, flag: str) -> None:
    """A drawing goes to a ``.svg`` file (or a device such as /dev/stdout): never SVG under another name."""
    from pathlib import Path

    from .files import is_special

    if not is_special(Path(path)) and Path(path).suffix.lower() != ".svg":
        raise SpecError(f"{flag} writes SVG: give a file name ending in .svg (got {path!r})")


def _destination(args: argparse.Namespace) -> None:
    """Check ``--output`` before any work: its directory exists, it is writable, it is not an input."""
    if getattr(args, "output", None) is not None:
        from .files import check_destination

        if not args.output:
            raise SpecError("--output needs a file name (got an empty one)")
        check_destination(args.output, _inputs(args))


def cmd_build(args: argparse.Namespace) -> int:
    """archkit build."""
    _destination(args)
    spec = _load(args)
    out = getattr(args, "stdout", sys.stdout)
    _notes(spec)
    transfer = None
    model = None
    if args.weights:
        from .api import load_pretrained

        model, count = _materialize(spec, args)
        transfer = load_pretrained(model, spec, args.weights, allow_partial=args.allow_partial)
    if args.summary or args.json:
        from . import summary

        result = summary.measure(spec, batch_size=args.batch_size, depth=args.depth)
        if args.json:
            data = result.as_dict()
            if transfer is not None:
                data["transfer"] = transfer.as_dict()
            out.write(json.dumps(data, indent=2) + "\n")
        else:
            out.write(summary.render(result) + "\n")
            if transfer is not None:
                out.write(transfer.render() + "\n")
    elif transfer is not None:
        out.write(transfer.render() + "\n")
    if transfer is None and not args.json and hub_ref(args.spec) and "folder" in spec.weights:
        out.write("weights: not loaded (the folder's are declared as 'folder': add --weights folder)\n")
    if args.output:
        from .checkpoint import save

        if model is None:
            model, count = _materialize(spec, args)
        save(model, spec, args.output)
        print(f"saved {args.output}: {spec.name}, {count:,} parameters", file=sys.stderr if args.json else out)
    elif not (args.summary or args.json or transfer is not None):
        count = _count_params(spec)
        out.write(f"{spec.name}: OK, {count:,} parameters (add --summary for the table, --output FILE to save)\n")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """archkit export."""
    from .export import example_input, export

    if args.format == "hf":
        return _export_folder(args)
    _destination(args)
    spec = _load(args)
    _example_fits(spec, batch_size=2)
    model, _ = _materialize(spec, args)
    if args.weights:
        from .api import load_pretrained

        load_pretrained(model, spec, args.weights, allow_partial=args.allow_partial)
    if args.reparameterize:
        from .reparam import reparameterize

        model = reparameterize(model)
    if args.fuse and not args.reparameterize:  # a deploy form has no norm left after its convs to fold
        from .fusion import fuse

        model = fuse(model)
    # torch's exporters print progress and, on failure, whole graphs; the CLI says one line of its own
    if args.static_batch and args.dynamic_batch:
        raise SpecError("--static-batch and --dynamic-batch contradict each other; give one")
    dynamic = not args.static_batch and args.format != "torchscript"  # a trace takes any batch as it is
    chatter = io.StringIO()
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            export(model, args.format, args.output, example_input(spec, args.batch_size), dynamic)
    finally:
        logging.disable(logging.NOTSET)
    batch = "batch: dynamic, 1..4096" if dynamic else (f"batch fixed at {args.batch_size}"
                                                        if args.format != "torchscript" else "traced")
    print(f"wrote {args.output} ({args.format}, {spec.name}; {batch})")
    return EXIT_OK


def hub_ref(ref: Any) -> bool:
    from .hub import is_ref

    return is_ref(ref)


def _export_folder(args: argparse.Namespace) -> int:
    """archkit export --format hf: the model (with --weights loaded) as a shared folder."""
    from pathlib import Path

    from . import share
    from .errors import BadDestination

    if args.fuse:
        raise SpecError("--fuse changes the weights' layout; a shared folder keeps the spec's (leave out --fuse)")
    if not args.output:
        raise SpecError("--output needs a folder name (got an empty one)")
    target = Path(args.output).resolve()
    for item in _inputs(args):
        with contextlib.suppress(OSError, ValueError):
            if target == Path(item).resolve() or target in Path(item).resolve().parents:
                raise BadDestination(f"{args.output}: holds an input of this command ({item}); write another folder")
    share.check_folder_target(Path(args.output))
    spec = _load(args)
    model, _ = _materialize(spec, args)
    if args.weights:
        from .api import load_pretrained

        model.transfer_plan = load_pretrained(model, spec, args.weights, allow_partial=args.allow_partial)
    if args.reparameterize:  # the folder carries the deploy spec (deploy: true) and the fused weights
        from .reparam import reparameterize

        plan = getattr(model, "transfer_plan", None)
        model = reparameterize(model)
        spec = model.spec
        if plan is not None:
            model.transfer_plan = plan
    share.save_pretrained(model, args.output, spec)
    cfg_arch = share.timm_name(spec) or "archkit"
    print(f"wrote {args.output}/ (config.json, model.safetensors, README.md; {spec.name}, timm architecture "
          f"{cfg_arch!r}); load it with local-dir:{args.output}")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """archkit push DIR --repo ORG/NAME."""
    from .share import push

    url = push(args.folder, args.repo, private=args.private, revision=args.revision, message=args.message)
    print(f"pushed {args.folder} to {args.repo}: {url}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """archkit list [PATTERN]."""
    from . import plugins, zoo
    from .zoo import index

    names = zoo.names(args.pattern)
    if not names:
        raise SpecError(f"no spec matches {args.pattern!r}" + _suggest(args.pattern, zoo.names()))
    key = index.key(zoo.directories(), plugins.distributions(), plugins.enabled())
    groups: dict[str, list[tuple[str, ...]]] = {}
    for name, row in index.rows(names, key, _list_row).items():
        if "error" in row:  # e.g. a family that needs --scale: listed, not fatal
            groups.setdefault("other", []).append((name, "-", "-", "-", f"({row['error']})"))
            continue
        groups.setdefault(row["family"] or "other", []).append(
            (name, f"{row['params']:,}", f"{row['macs'] / 1e9:,.3f}", row["input"], row["weights"]))
    header = ("NAME", "PARAMS", "GMACS", "INPUT", "WEIGHTS")
    rows = [r for g in groups.values() for r in g]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(v.rjust(widths[i]) if i in (1, 2) else v.ljust(widths[i]) for i, v in enumerate(row)).rstrip()

    print("  " + line(header))
    for family in sorted(groups, key=lambda f: (f == "other", f.lower())):  # families A-Z, the unlabelled last
        print(f"\n{family} ({len(groups[family])})")
        for row in groups[family]:
            print("  " + line(row))
    conflicts = zoo.conflicts()
    if conflicts:
        print("\nName conflicts:")
        for text in conflicts:
            print(f"  {text}")
    return EXIT_OK


def _list_row(name: str) -> dict:
    """What ``archkit list`` shows of one spec (``archkit.zoo.index`` keeps it)."""
    from . import summary
    from .zoo import load as load_spec

    try:
        spec = load_spec(name)
        result = summary.measure(spec)
    except (SpecError, SummaryError) as exc:
        return {"error": first_line(exc, 60)}
    return {"family": spec.family, "params": result.total_params, "macs": result.macs,
            "input": "x".join(map(str, spec.input.size)), "weights": ", ".join(spec.weights) or "-"}


def cmd_fit(args: argparse.Namespace) -> int:
    """archkit fit."""
    from . import design, loader, zoo
    from .files import check_destination

    _destination(args)
    if args.plot is not None:
        _svg_name(args.plot, "--plot")
        check_destination(args.plot, _inputs(args), [args.output])
    spec = _load(args)
    if spec.width_divisor < args.divisor and not any(s.partition("=")[0].strip() == "width_divisor" for s in args.set):
        from .loader import Override

        args.set = [*args.set, Override(f"width_divisor={args.divisor}", f"--divisor {args.divisor}")]
        spec = _load(args)  # widths the multiplier scales stay multiples of the divisor (written with the result)
    tree = loader.load(args.spec, _overrides(args), resolve=zoo.resolve) if args.vary else None  # a generator's numbers
    vary = design.axes(args.vary, tree)
    search = design.fit(spec, args.macs, args.params_max, vary, tree)
    best, seen = search.best, search.seen
    unique = sorted({c.values: c for c in seen}.values(), key=lambda c: (-c.macs, c.values))
    under = [c for c in unique if c.macs <= args.macs and (args.params_max is None or c.params <= args.params_max)]
    what = " and ".join(a.label for a in vary)
    refused = sum(search.refused.values())
    if best is None:
        _none_fits(args, spec.name, search, unique, what)
    how = "" if search.method == "grid" else \
        f" (sampled: {search.combinations:,} combinations of the grid numbers, too many to walk)"
    print(f"{len(unique)} candidates evaluated{how}; best under {args.macs / 1e9:g} GMACs"
          + (f" and {args.params_max:,.0f} parameters" if args.params_max else "") + ":")
    if refused:
        print(f"  {refused:,} more refused: " + "; ".join(f"{why} ({count:,})" for why, count in
                                                    list(search.refused.items())[:3]))
    labels = [a.label for a in vary] + (["divisor"] * (len(best.values) - len(vary)))
    print("  " + " ".join(f"{label:>{max(7, len(label))}}" for label in labels) + f" {'GMACs':>9} {'params':>14}")
    shown = {(best.params, best.macs): best}  # other numbers that give the same network are not shown twice
    for c in under:
        if len(shown) < 5:
            shown.setdefault((c.params, c.macs), c)
    for c in shown.values():
        print("  " + " ".join(f"{v!r:>{max(7, len(label))}}" for label, (_, v) in zip(labels, c.values))
              + f" {c.macs / 1e9:>9.3f} {c.params:>14,}")
    gap = (args.macs - best.macs) / args.macs
    print(f"chosen: {best.text}: {best.macs / 1e9:.3f} GMACs ({gap:.1%} under the budget)")
    if args.output:
        design.write_fitted(args.output, args.spec, _overrides(args, scale=True), spec, best, args.macs)
        print(f"wrote {args.output}")
    if args.plot:
        write_text(args.plot, design.plot_svg(unique, best, args.macs, args.params_max, f"archkit fit {spec.name}: "
                                              f"{len(unique)} candidates"))
        print(f"wrote {args.plot}")
    return EXIT_OK


def _none_fits(args: argparse.Namespace, name: str, search: Any, unique: list, what: str) -> None:
    """fit's answer when no candidate meets the budget: the closest one, the refusals, the plot."""
    from . import design

    small = [c for c in unique if args.params_max is None or c.params <= args.params_max] or unique
    closest = min(small, key=lambda c: abs(c.macs - args.macs)) if small else None
    hint = f"; the closest: {closest.text}: {closest.macs / 1e9:.3f} GMACs, {closest.params:,} parameters" \
        if closest else ""
    refused = sum(search.refused.values())
    if refused:
        why, count = next(iter(search.refused.items()))
        hint += f"; {refused:,} candidates refused ({count:,}: {why})"
    if args.plot:
        write_text(args.plot, design.plot_svg(unique, None, args.macs, args.params_max, f"archkit fit {name}"))
    raise SpecError(f"no {what} of {name} meets the budget{hint}")


def cmd_sample(args: argparse.Namespace) -> int:
    """archkit sample."""
    from . import space as spaces

    if args.svg:
        _svg_name(args.svg, "--svg")
    loaded = [spaces.load(ref) for ref in args.spaces]
    for i, sp in enumerate(loaded):
        twin = next((o for o in loaded[:i] if o.name == sp.name), None)
        if twin is not None:
            what = "is given twice" if twin.source == sp.source else f"names it too ({twin.source})"
            raise SpecError(f"{sp.name!r}: {what}; each space sampled needs its own name", sp.marks.get(("space",)),
                            "space")
    _sample_destinations(args, loaded)
    jobs = args.jobs or max(1, min(os.cpu_count() or 1, 8))
    results = []
    for sp in loaded:
        progress = _progress(sp.name, args.num)
        result = spaces.sample(sp, args.num, args.seed, max_draws=args.max_draws or spaces.MAX_DRAWS, jobs=jobs,
                               progress=progress)
        if getattr(progress, "open", False):
            print(file=sys.stderr)
        results.append(result)
        _print_sampled(result, args.num)
    _write_sampled(args, results)
    short = [r for r in results if len(r.samples) < args.num]
    if short:
        r = short[0]
        raise SpecError(f"{r.space.name}: only {len(r.samples):,} of {args.num:,} models met the constraints in "
                        f"{r.draws:,} draws (raise --max-draws, or widen the space)")
    return EXIT_OK


def _sample_destinations(args: argparse.Namespace, loaded: list) -> None:
    """Refuse, before any draw, an output that is an input (a space file or a file of its base spec), another
    output, or a spec file ``--output`` would write over one of them (also through a symlink)."""
    import re
    from pathlib import Path

    from .files import check_destination

    inputs = [f for sp in loaded for f in sp.files]
    files = [f for f in (args.csv, args.json_file, args.svg) if f]
    for i, f in enumerate(files):
        check_destination(f, inputs, [*files[:i], *files[i + 1:], args.output])
    if args.output is None:
        return
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise BadDestination(f"--output {args.output}: exists and is not a directory")
    if not out.parent.is_dir():
        raise BadDestination(f"--output {args.output}: its parent directory does not exist")
    named = re.compile("(" + "|".join(re.escape(sp.name) for sp in loaded) + r")_(\d{5,})\.yaml")
    real = Path(os.path.realpath(out))
    kept = {Path(os.path.realpath(f)): f for f in [*inputs, *files]}
    planted = [Path(e.path) for e in os.scandir(out) if named.fullmatch(e.name)] if out.is_dir() else []
    for path in [*kept, *planted]:
        found = named.fullmatch(path.name)
        target = Path(os.path.realpath(path))
        if found and int(found[2]) < args.num and (path.parent == real or path in planted) and target in kept:
            raise BadDestination(f"--output {args.output}: would write {path.name} over {kept[target]}, an input "
                                 "or output of this command; write another folder")


def _progress(name: str, asked: int) -> Callable[[int, int, float], None]:
    """A long run's progress on stderr: a line rewritten in place on a terminal, else a line every 10 s."""
    import time

    tty, last = sys.stderr.isatty(), [time.perf_counter()]

    def report(got: int, draws: int, seconds: float) -> None:
        if seconds < 2.0 or time.perf_counter() - last[0] < (0.5 if tty else 10.0):
            return
        last[0] = time.perf_counter()
        line = f"{name}: {got:,}/{asked:,} models from {draws:,} draws, {seconds:.0f} s"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        report.open = tty  # type: ignore[attr-defined]  # a line left without its newline
    return report


def _write_sampled(args: argparse.Namespace, results: list) -> None:
    """sample's --csv, --json, --svg and --output."""
    from . import space as spaces

    if args.csv:
        write_text(args.csv, spaces.csv_text(results))
        print(f"wrote {args.csv}")
    if args.json_file:
        write_text(args.json_file, json.dumps(spaces.json_data(results), indent=1) + "\n")
        print(f"wrote {args.json_file}")
    if args.svg:
        from . import edf

        curves = {r.space.name: {f: r.figure(f) for f in spaces.FIGURES} for r in results}
        title = "EDFs of " + ", ".join(f"{r.space.name}" for r in results) + f" (seed {args.seed})"
        write_text(args.svg, edf.svg(curves, title))
        print(f"wrote {args.svg}")
    if args.output:
        count = spaces.write_specs(results, args.output)
        print(f"wrote {count:,} specs to {args.output}")


def _print_sampled(r: Any, asked: int) -> None:
    """A space's line, its refusals and the spread of its complexity."""
    from .space import FIGURES

    rate = len(r.samples) / r.draws if r.draws else 0.0
    print(f"{r.space.name}: {_many(len(r.samples), 'model')} from {_many(r.draws, 'draw')} ({rate:.2%} accepted), "
          f"seed {r.seed}, {r.seconds:.1f} s")
    for why, count in list(r.rejected.items())[:4]:
        print(f"  refused {count:>9,}  {why}")
    if len(r.rejected) > 4:
        print(f"  refused {sum(list(r.rejected.values())[4:]):>9,}  for {_many(len(r.rejected) - 4, 'other reason')}")
    if not r.samples:
        return
    print(f"  {'':<12}{'min':>10}{'25%':>10}{'median':>10}{'75%':>10}{'max':>10}")
    for figure in FIGURES:
        values = sorted(r.figure(figure))
        cells = [values[min(len(values) - 1, int(q * len(values)))] for q in (0.0, 0.25, 0.5, 0.75)] + [values[-1]]
        print(f"  {figure:<12}" + "".join(f"{_si(v):>10}" for v in cells))


def _many(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:g}"


def cmd_diff(args: argparse.Namespace) -> int:
    """archkit diff A B: exit 0 when equal, 1 when different."""
    from . import design
    from .zoo import load as load_spec

    result = design.diff(load_spec(args.a), load_spec(args.b))
    print(json.dumps(result, indent=2) if args.json else design.render_diff(result), file=getattr(args, "stdout", None))
    return EXIT_OK if result["equal"] else EXIT_FAILURE


def cmd_explain(args: argparse.Namespace) -> int:
    """archkit explain SPEC FIELD."""
    from . import design

    print("\n".join(design.explain(args.spec, args.field, args.set)))
    return EXIT_OK


def _suggest(name: str, choices: list[str]) -> str:
    from .registry import suggest

    return suggest(name, choices, limit=0)


def cmd_draw(args: argparse.Namespace) -> int:
    """archkit draw."""
    from . import draw

    _destination(args)
    _svg_name(args.output, "--output")
    spec = _load(args, args.set)
    text = draw.render(spec)
    write_text(args.output, text)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """archkit validate: every file is checked, whatever the earlier ones did."""
    from .zoo import load as load_spec

    status = EXIT_OK
    for path in args.specs:
        try:
            spec = load_spec(path, args.set)
            count = _count_params(spec)  # block-level checks (groups, dilation, sizes) run here too
        except SpecError as exc:
            _report(exc, path)
            status = EXIT_USAGE
            continue
        except Exception as exc:  # noqa: BLE001 - one line for this file, then the next file
            print(f"{path}: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
            status = max(status, EXIT_FAILURE) if status != EXIT_USAGE else status
            continue
        print(f"OK {path} ({spec.name}, {count:,} parameters)")
        _notes(spec)
    return status


def _notes(spec: Any) -> None:
    """The plan's notes on what builds but is likely not what was meant, on stderr."""
    from .plan import plan

    for note in plan(spec).notes():
        print(f"archkit: note: {spec.name}: {note}", file=sys.stderr)


def _field_rows(model: Any) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        if name in ("type", "name"):
            continue
        bounds = []
        for meta in field.metadata:
            for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                if getattr(meta, attr, None) is not None:
                    bounds.append(f"{op}{getattr(meta, attr)}")
        tp = _type_text(field.annotation)
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((name, tp, default, " ".join(bounds), field.description or ""))
    return rows


def _type_text(annotation: Any) -> str:
    """A field's type as a user reads it: ``blur | avg | None``, ``list[int] | None``."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(map(str, args))
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_text(a) for a in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_text(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _find_types(name: str) -> list[Any]:
    """Every entry named ``name`` (a block and a generator may share one); unknown names get suggestions."""
    from .catalog import REGISTRIES
    from .registry import UnknownName, suggest

    found = [registry.get(name) for registry in REGISTRIES if name in registry]
    if found:
        return found
    for registry in REGISTRIES:
        if registry.explain(name):
            raise UnknownName(registry.explain(name))
    every = [n for registry in REGISTRIES for n in registry.names()]
    raise UnknownName(f"unknown block, layer, attention, stage or generator type {name!r}" + suggest(name, every, 0))


def _describe(entry: Any) -> None:
    from .params import BlockSpec, LayerSpec, AttentionSpec

    params = entry.obj.params if entry.kind in ("block", "stage", "generator") else entry.obj
    print(f"{entry.name} ({entry.kind}, {entry.origin}): {entry.description}")
    if entry.kind == "generator":
        print(f"spec key {entry.name}: generates stages:; numbers fit --vary takes: "
              + ", ".join(a.name for a in entry.obj.qualified_axes()))
    if entry.kind == "block":
        kinds = [k.value for k in entry.obj.shortcuts]
        print(f"expansion: {entry.expansion}")
        print(f"shortcut kinds: {', '.join(kinds)} (default {kinds[0]})")
        print(f"attention positions: {', '.join(entry.obj.attn_positions) or 'none'}"
              + (f" (default {entry.obj.attn_default})" if entry.obj.attn_default else ""))
    from .params import StageSpec

    envelope = {"block": BlockSpec, "attention": AttentionSpec, "stage": StageSpec}.get(entry.kind, LayerSpec)
    if entry.kind == "stage":
        print(f"keys every stage takes: {', '.join(k for k in StageSpec.model_fields if k != 'type')} "
              "(docs/specs.md)")
    rows = [r for r in _field_rows(params) if r[0] not in envelope.model_fields]
    if entry.kind == "block":
        rows += [("shortcut", " | ".join(kinds), "", "", "Shortcut kind when the block changes shape (the first "
                  "is the default; see docs/specs.md)."),
                 ("attn", "list", "", "", f"Attention modules, each {{type, position, <params>}}; positions here: "
                  f"{', '.join(entry.obj.attn_positions)}.")]
    elif entry.kind == "attention":
        rows += [("position", "mid | pre_add | post_add", "'pre_add'", "",
                  AttentionSpec.model_fields["position"].description or "")]
    if not rows:
        print("no parameters")
    for name, tp, default, bounds, desc in rows:
        print(f"  {name}: {tp}" + (f" = {default}" if default else "") + (f"  [{bounds}]" if bounds else ""))
        if desc:
            print(f"      {desc}")


def cmd_blocks(args: argparse.Namespace) -> int:
    """archkit blocks [NAME]."""
    from .blocks.base import USER_SHORTCUTS
    from .catalog import REGISTRIES

    if args.name:
        for i, entry in enumerate(_find_types(args.name)):
            if i:
                print()
            _describe(entry)
        return EXIT_OK
    rows = [(n, e.kind, e.origin, "" if e.expansion is None else str(e.expansion), e.description)
            for reg in REGISTRIES for n, e in reg.listing()]
    header = ("NAME", "KIND", "ORIGIN", "EXP", "DESCRIPTION")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header[:4])]
    for row in (header, *rows):
        line = "  ".join(v.ljust(widths[i]) for i, v in enumerate(row[:4])) + "  " + row[4]
        print(line)
    print(f"\nShortcut kinds (block key shortcut:): {', '.join(USER_SHORTCUTS)}; "
          "attention (block key attn:) goes at position pre_add, mid or post_add. "
          "'archkit blocks NAME' shows what a type accepts.")
    from . import zoo

    conflicts = [c for reg in REGISTRIES for c in reg.conflicts] + zoo.conflicts()
    if conflicts:
        print("\nName conflicts:")
        for text in conflicts:
            print(f"  {text}")
    broken = [b for reg in REGISTRIES for b in reg.broken]
    if broken:
        print("\nBroken plugins (skipped; everything else works):")
        for b in broken:
            print(f"  {b.name} ({b.group}) from {b.distribution} {b.version}: {b.error}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """archkit schema."""
    from .schema import json_schema

    _destination(args)
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        write_text(args.output, text)
        print(f"wrote {args.output} (the JSON Schema of archkit specs, {len(text):,} bytes)",
              file=sys.stderr)  # stderr: the output may be stdout itself (/dev/stdout)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _report(exc: SpecError, spec: str | None = None) -> None:
    """One line per problem; a problem found in a base file also names the user's file that inherits it."""
    path = spec
    if spec and not hub_ref(spec):
        with contextlib.suppress(SpecError, OSError, TypeError):
            from . import zoo

            path = str(zoo.resolve(spec))  # a packaged name: its own file is no base of anything
    for problem in exc.problems:
        line = str(problem)
        source = problem.mark.source if problem.mark else None
        if spec and source and not source.startswith("--set") and source != path and not source.endswith(")") \
                and not hub_ref(spec):
            with contextlib.suppress(OSError):
                if not os.path.exists(path) or not os.path.samefile(source, path):
                    line += f" (inherited by {spec})"
        print(line, file=sys.stderr)


def _guard(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    show = getattr(args, "traceback", False)
    try:
        return func(args)
    except SpecError as exc:
        if show:
            traceback.print_exc()
        _report(exc, getattr(args, "spec", None))
        return EXIT_USAGE
    except NothingToFuse as exc:
        print(f"archkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WeightsError as exc:
        from .weights import DownloadError

        if show:
            traceback.print_exc()
        print(f"archkit: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE if isinstance(exc, DownloadError) else EXIT_USAGE
    except BadDestination as exc:
        if show:
            traceback.print_exc()
        print(f"archkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CheckpointError, ExportError, SummaryError, OutputError) as exc:
        if show:
            traceback.print_exc()
        print(f"archkit: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("archkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # an output file that cannot be written: say which and why
        if show:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"archkit: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: one line, not a traceback
        if show:
            traceback.print_exc()
            return EXIT_FAILURE
        print(f"archkit: error: {type(exc).__name__}: {first_line(exc)} (run with --traceback for details)",
              file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv``; returns the exit code (0 ok, 1 failure, 2 invalid spec or usage)."""
    # torch warns at import when NumPy is absent; archkit does not need NumPy, so neither does its user
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own --help / --version / usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "no_plugins", False):
        from . import plugins

        plugins.set_enabled(False)
    with _escaped_output(machine=bool(getattr(args, "json", False))) as stdout:
        args.stdout = stdout  # where a command writes its result
        return _guard(args.func, args)


# what a spec file's text could do to a terminal: control characters (ESC sequences, bells, carriage
# returns) and the bidirectional overrides that reorder what is shown; newlines and tabs are archkit's own
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c not in (0x09, 0x0A)}
_UNSAFE.update({c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


class _Escaping:
    """A text stream that escapes what ``_UNSAFE`` names and passes everything else to ``stream``."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text.translate(_UNSAFE))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _escaped_output(machine: bool = False) -> Any:
    """While the command runs, nothing it prints (names, descriptions, paths from a spec) can send
    terminal escapes: every control character is printed as an escape sequence. Yields the stream for the
    command's result; with ``machine`` (--json) anything else printed to stdout (a plugin's chatter) goes
    to stderr, so the result parses."""
    out, err = sys.stdout, sys.stderr
    result = _Escaping(out)
    sys.stdout, sys.stderr = (_Escaping(err) if machine else result), _Escaping(err)
    try:
        yield result
    finally:
        sys.stdout, sys.stderr = out, err


if __name__ == "__main__":
    sys.exit(main())
