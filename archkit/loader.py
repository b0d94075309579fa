"""Safe YAML loading with positions kept: ``base:`` inheritance, ``--set`` overrides, hostile-input limits.

The loader knows files, not names: what ``base: resnet50`` means is the caller's ``resolve``
(``archkit.zoo.resolve`` finds packaged and plugin specs; the default takes every reference as a path).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from .errors import Mark, SpecError, first_line, format_path

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a spec is a few dozen lines; anything bigger is a mistake or an attack
MAX_NODES = 100_000  # values after alias expansion: refuses "billion laughs" documents early
MAX_DEPTH = 64  # a spec nests at most ~5 levels deep
MAX_CHAIN = 32  # base: files in one spec
MAX_TOTAL_BYTES = 4 << 20  # the whole base: chain: limits are per spec, not per file
MAX_PARAMS = 2_000_000_000  # materialized at most by default (8 GB of float32 weights: a third of 24 GiB)
MAX_PARAMS_ENV = "ARCHKIT_MAX_PARAMS"  # another limit, from the environment
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


# (reference, directory of the file naming it) -> spec file; at the top (no directory) it may return the
# spec's tree itself, for references that are not files (a shared folder's config.json)
Resolver = Callable[[str, "Path | None"], Any]


def paths_only(ref: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """Every reference is a file path (relative to the file that names it)."""
    path = Path(ref)
    return path if relative_to is None or path.is_absolute() else relative_to / path


class Budget:
    """What one spec may still consume across its whole ``base:`` chain (values, bytes, files)."""

    def __init__(self) -> None:
        self.nodes = MAX_NODES
        self.bytes = MAX_TOTAL_BYTES
        self.files = MAX_CHAIN
_SCALARS = (type(None), bool, int, float, str)
_MAP_TAG = "tag:yaml.org,2002:map"
# libyaml's parser where PyYAML was built with it (PyPI's wheels are): several times faster
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.1's safe loader that also reads ``1e-5``, ``1.5e3`` as numbers (YAML 1.2 and JSON do; 1.1
    wants a dot and a signed exponent)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))
_SEQ_TAG = "tag:yaml.org,2002:seq"


class MDict(dict):
    """A dict that remembers where each key came from (``marks``) and where it starts (``mark``)."""

    def __init__(self, *args: Any, mark: Mark | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mark = mark
        self.marks: dict[str, Mark] = {}


class MList(list):
    """A list that remembers where each item came from (``marks``) and where it starts (``mark``)."""

    def __init__(self, *args: Any, mark: Mark | None = None):
        super().__init__(*args)
        self.mark = mark
        self.marks: list[Mark | None] = [None] * len(self)


def _tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _mark(source: str, yaml_mark: Any) -> Mark:
    if yaml_mark is None:
        return Mark(source)
    return Mark(source, yaml_mark.line + 1, yaml_mark.column + 1)


class _Converter:
    """Turns a composed YAML node graph into MDict/MList/scalars, refusing what a spec never needs."""

    def __init__(self, loader: Any, source: str, line_known: bool, budget: Budget | None = None):
        self.loader = loader
        self.source = source
        self.line_known = line_known
        self.budget = budget or Budget()
        self.merged_marks: set = set()

    def mark(self, node: yaml.Node) -> Mark:
        return _mark(self.source, node.start_mark) if self.line_known else Mark(self.source)

    def convert(self, node: yaml.Node, depth: int = 0) -> Any:
        self.budget.nodes -= 1
        if self.budget.nodes < 0:
            raise SpecError(f"spec expands to more than {MAX_NODES:,} values (alias bomb?)", self.mark(node))
        if depth > MAX_DEPTH:
            raise SpecError(f"nested more than {MAX_DEPTH} levels deep", self.mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise SpecError(f"unsupported YAML tag {_tag(node.tag)!r}", self.mark(node))
            out = MList(mark=self.mark(node))
            for item in node.value:
                out.append(self.convert(item, depth + 1))
                out.marks.append(self.mark(item))
            return out
        if node.tag != _MAP_TAG:
            raise SpecError(f"unsupported YAML tag {_tag(node.tag)!r}", self.mark(node))
        own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor); merged pairs come first
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, self.source) from None
        merged = len(node.value) - own
        out = MDict(mark=self.mark(node))
        for i, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("mapping keys must be plain strings", self.mark(key_node))
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise SpecError(f"mapping keys must be strings, got {key!r}", self.mark(key_node))
            if key in out and (i < merged or out.marks[key] in self.merged_marks):
                pass  # a merge key's value, overridden by a later merge or by the mapping's own key (YAML spec)
            elif key in out:
                first = out.marks[key]
                where = f" (first at line {first.line})" if first.line else ""
                raise SpecError(f"duplicate key {key!r}{where}", self.mark(key_node))
            out.marks[key] = self.mark(key_node)
            if i < merged:
                self.merged_marks.add(out.marks[key])
            out[key] = self.convert(value_node, depth + 1)
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag not in type(self.loader).yaml_constructors:
            raise SpecError(f"unsupported YAML tag {_tag(node.tag)!r}", self.mark(node))
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, self.source) from None
        except ValueError as exc:  # e.g. an integer of 5,000 digits (Python's int() limit)
            raise SpecError(f"unreadable value: {first_line(exc, 120)}", self.mark(node)) from None
        if not isinstance(value, _SCALARS):
            raise SpecError(f"unsupported YAML value of type {type(value).__name__} ({_tag(node.tag)})", self.mark(node))
        return value


def _yaml_error(exc: yaml.YAMLError, source: str, text: str | None = None) -> SpecError:
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        code = ord(char) if isinstance(char, str) else char
        what = f"control character U+{code:04X}" if isinstance(code, int) else "a control character"
        if text is not None and 0 <= exc.position <= len(text):
            before = text[: exc.position]
            line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
            return SpecError(f"invalid YAML: {what} is not allowed in a spec", Mark(source, line, column))
        return SpecError(f"invalid YAML: {what} is not allowed in a spec (at character {exc.position})", Mark(source))
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or first_line(exc)
    if "'\\t'" in problem or "tab character" in problem:
        problem += " (YAML indents with spaces, never tabs)"
    context = getattr(exc, "context", None)
    return SpecError(f"invalid YAML: {context + ', ' if context else ''}{problem}", _mark(source, mark))


def parse(text: str, source: str, *, line_known: bool = True, budget: Budget | None = None) -> Any:
    """Parse one YAML document of plain data into MDict/MList/scalars; raise SpecError on anything else."""
    try:
        loader = _Loader(text)  # the reader refuses control characters (NUL, BEL) right here
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise SpecError(f"nested more than {MAX_DEPTH} levels deep", Mark(source)) from None
        except yaml.YAMLError as exc:
            if "expected a single document" in str(exc):
                raise SpecError("a spec file holds exactly one YAML document (found '---' starting another)",
                                _mark(source, getattr(exc, "problem_mark", None))) from None
            raise _yaml_error(exc, source, text) from None
        if node is None:
            return None
        return _Converter(loader, source, line_known, budget).convert(node)
    finally:
        loader.dispose()


def read_text(path: Path, budget: Budget | None = None) -> str:
    """Read a spec file as UTF-8 text, with one-line errors for every way that can fail."""
    source = str(path)
    budget = budget or Budget()
    try:
        if path.is_dir():
            raise SpecError("is a directory, not a spec file", Mark(source))
        if path.exists() and not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise SpecError("not a regular file", Mark(source))
        with open(path, "rb") as fh:  # bounded: a file growing while read must not fill memory
            data = fh.read(MAX_FILE_BYTES + 1)
        if data.startswith(_CHECKPOINT_MAGIC) or data[8:9] == b"{" and b'"dtype"' in data[:4096]:
            raise SpecError("this is a weights or checkpoint file, not a spec: pass it with --weights FILE "
                            "(or archkit.load_checkpoint)", Mark(source))
        if len(data) > MAX_FILE_BYTES:
            raise SpecError(f"file is over {MAX_FILE_BYTES:,} bytes, the most a spec may have", Mark(source))
        budget.bytes -= len(data)
        if budget.bytes < 0:
            raise SpecError(f"the spec and its base: files exceed {MAX_TOTAL_BYTES:,} bytes together", Mark(source))
    except FileNotFoundError:
        raise SpecError("no such file", Mark(source)) from None
    except PermissionError:
        raise SpecError("permission denied", Mark(source)) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror or exc}", Mark(source)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (bad byte at offset {exc.start})", Mark(source)) from None


def chain(path: str | os.PathLike, resolve: Resolver = paths_only, budget: Budget | None = None) -> list[tuple[Path, MDict]]:
    """The files of a spec's ``base:`` chain, the spec's own first, each as written (``base:`` taken out),
    with the limits on values, bytes and files held for the whole chain."""
    budget = budget or Budget()
    out: list[tuple[Path, MDict]] = []
    seen: list[Path] = []
    path = Path(path)
    while True:
        resolved = path.resolve()
        if resolved in seen:
            cycle = " -> ".join(str(p) for p in (*seen, resolved))
            raise SpecError(f"base: cycle: {cycle}", Mark(str(path)))
        seen.append(resolved)
        budget.files -= 1
        if budget.files < 0:
            raise SpecError(f"more than {MAX_CHAIN} files in the base: chain", Mark(str(path)))
        tree = _parsed(path, budget)
        if tree is None:
            raise SpecError("empty spec file", Mark(str(path)))
        if not isinstance(tree, MDict):
            raise SpecError(f"a spec must be a mapping at the top level, not a {_kind(tree)}", Mark(str(path), 1, 1))
        out.append((path, tree))
        if "base" not in tree:
            return out
        base = tree.pop("base")
        base_mark = tree.marks.pop("base")
        if not isinstance(base, str) or not base:
            raise SpecError(f"must be a spec name or a file path (got {base!r})", base_mark, "base")
        try:
            base_path = resolve(base, path.parent)
        except SpecError as exc:
            raise SpecError(exc.problems[0].message, base_mark, "base") from None
        if not isinstance(base_path, Path):
            raise SpecError("must be a spec name or a file path", base_mark, "base")
        if not base_path.exists():
            raise SpecError(f"base file {str(base_path)!r} does not exist", base_mark, "base")
        path = base_path


def load_file(path: str | os.PathLike, budget: Budget | None = None, resolve: Resolver = paths_only) -> MDict:
    """Load a spec file and everything it inherits through ``base:``, merged, with positions."""
    files = chain(path, resolve, budget)
    tree = files[-1][1]
    for _, child in reversed(files[:-1]):
        tree = inherit(tree, child)
    return tree


MAX_DESCRIPTION = 10_000  # ModelSpec.description's bound


def inherit(base: MDict, child: MDict) -> MDict:
    """``child`` merged over its ``base:``: the base's declared weights stay with the base's architecture, and
    its description, unless the child has its own, becomes "A variant of BASE (its description)"."""
    base.pop("weights", None)
    if "description" not in child and isinstance(base.get("name"), str):  # the base's words describe the base
        said = base.get("description")
        text = f"A variant of {base['name']}"
        base["description"] = text + (f" ({said})" if isinstance(said, str) and said and
                                      len(text) + len(said) + 3 <= MAX_DESCRIPTION else "")
    return merge(base, child)


_PARSED: dict[tuple, tuple[Any, int, int]] = {}  # (path, mtime, size, inode) -> tree, values, bytes


def _parsed(path: Path, budget: Budget) -> Any:
    """``parse(read_text(path))``, kept per process for unchanged regular files (a zoo's base chains
    share their files); a copy each time, so callers may change it; the budget is charged as if parsed."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        return parse(read_text(path, budget), str(path), budget=budget)
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    found = _PARSED.get(key)
    if found is None:
        before_nodes, before_bytes = budget.nodes, budget.bytes
        tree = parse(read_text(path, budget), str(path), budget=budget)
        if len(_PARSED) > 512:
            _PARSED.clear()
        _PARSED[key] = found = (tree, before_nodes - budget.nodes, before_bytes - budget.bytes)
        return _copy(tree)
    tree, nodes, size = found
    budget.nodes -= nodes
    budget.bytes -= size
    if budget.nodes < 0:
        raise SpecError(f"spec expands to more than {MAX_NODES:,} values (alias bomb?)", Mark(str(path)))
    if budget.bytes < 0:
        raise SpecError(f"the spec and its base: files exceed {MAX_TOTAL_BYTES:,} bytes together", Mark(str(path)))
    return _copy(tree)


def _copy(node: Any) -> Any:
    """A deep copy of a marked tree (marks are immutable and shared)."""
    if isinstance(node, MDict):
        out = MDict(mark=node.mark)
        for key, value in node.items():
            out[key] = _copy(value)
        out.marks = dict(node.marks)
        return out
    if isinstance(node, MList):
        out_list = MList([_copy(v) for v in node], mark=node.mark)
        out_list.marks = list(node.marks)
        return out_list
    return node


def _kind(value: Any) -> str:
    return {MList: "list", list: "list", str: "string"}.get(type(value), type(value).__name__)


def merge(base: Any, over: Any) -> Any:
    """Deep-merge ``over`` onto ``base``: mappings merge key by key, everything else is replaced.

    A mapping whose ``type`` changes is replaced whole: another block or layer type takes other params.
    """
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    if "type" in over and "type" in base and over["type"] != base["type"]:
        return over
    out = MDict(mark=getattr(over, "mark", None))
    base_marks = getattr(base, "marks", {})
    over_marks = getattr(over, "marks", {})
    for key, value in base.items():
        out[key] = value
        out.marks[key] = base_marks.get(key)
    for key, value in over.items():
        out[key] = merge(base[key], value) if key in base else value
        if key == "layout" and key in base:
            out[key] = keep_preset(base[key], out[key])
        out.marks[key] = over_marks.get(key)
    return out


def keep_preset(old: Any, new: Any) -> Any:
    """A ``layout:`` mapping over a preset's name (``timm``) starts from that preset unless it says ``like:``."""
    if isinstance(old, str) and isinstance(new, dict) and "like" not in new:
        kept = MDict({"like": old, **new}, mark=getattr(new, "mark", None))
        kept.marks = {"like": getattr(new, "mark", None), **getattr(new, "marks", {})}
        return kept
    return new


class Override(str):
    """A ``KEY=VALUE`` override that another option stands for (``--scale xl`` is ``scale=xl``): its messages
    name the option the user typed."""

    label: str

    def __new__(cls, text: str, label: str) -> "Override":
        made = super().__new__(cls, text)
        made.label = label
        return made


def apply_override(tree: MDict, text: str) -> None:
    """Apply one ``--set dotted.key=value`` override in place; the value is parsed as YAML."""
    label = getattr(text, "label", None) or f"--set {text}"
    mark = Mark(label if len(label) <= 104 else label[:101] + "...")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("--set expects KEY=VALUE, e.g. stages.2.depth=23", mark)
    value = parse(raw, mark.source, line_known=False) if raw.strip() else None
    set_value(tree, key.strip(), value, mark)


def set_value(tree: MDict, key: str, value: Any, mark: Mark) -> None:
    """Set the dotted field ``key`` (list items by index) to ``value`` in place, creating mappings on the way."""
    parts = key.split(".")
    if len(parts) > MAX_DEPTH:
        raise SpecError(f"a field path of {len(parts)} parts; specs nest at most {MAX_DEPTH} deep", mark)
    node: Any = tree

    def where() -> str:  # the path walked so far, for a message (made only when one is needed)
        return format_path(tuple(_index(p, node) for p in parts[:depth])) or "the spec"

    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = _index(part, node)
            if not isinstance(index, int):
                raise SpecError(f"{where()} is a list; use an index 0..{len(node) - 1}, not {part!r}", mark)
            if not 0 <= index < len(node):
                raise SpecError(f"{where()} has {len(node)} items; index {index} is out of range", mark)
            if last:
                node[index] = value
                if isinstance(node, MList):
                    node.marks[index] = mark
            node = node[index]
        elif isinstance(node, dict):
            if depth == 0 and part == "layout":  # a scheme set over a preset's name starts from that preset
                if last:
                    value = keep_preset(node.get(part), value)
                elif isinstance(node.get(part), str):
                    node[part] = keep_preset(node[part], MDict(mark=mark))
            if last:
                node[part] = value
                if isinstance(node, MDict):
                    node.marks[part] = mark
            elif part not in node or node[part] is None:
                node[part] = MDict(mark=mark)
                if isinstance(node, MDict):
                    node.marks[part] = mark
            node = node[part]
        else:
            raise SpecError(f"{where()} is a {_kind(node)}, it has no field {part!r}", mark)


def set_classes_and_channels(tree: MDict, num_classes: int | None, in_chans: int | None) -> None:
    """timm's ``num_classes`` / ``in_chans``: the head's last linear layer and the input channels.

    ``num_classes=0`` removes that layer (pooled features out), as timm does; a head without a classifier
    (timm's ``*_gap`` models) gains one at its end, ``fc`` (on a head whose output is not flat, validation
    says so in one located line).
    """
    for name, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (name == "in_chans")):
            raise SpecError(f"{name} must be an integer >= {int(name == 'in_chans')}, got {value!r}", Mark(name))
    if in_chans is not None:
        set_value(tree, "input.channels", in_chans, Mark(f"in_chans={in_chans}"))
    if num_classes is None:
        return
    head = tree.get("head")
    indices = [i for i, layer in enumerate(head or []) if isinstance(layer, dict) and _classifier(layer.get("type"))]
    if not indices and num_classes == 0:
        return
    if not indices and head and isinstance(head, list):
        mark = Mark(f"num_classes={num_classes}")
        head.append(MDict({"name": "fc", "type": "linear", "features": num_classes}, mark=mark))
        if isinstance(head, MList):
            head.marks.append(mark)
        return
    if not indices:
        raise SpecError("this spec's head has no linear classifier to resize", Mark("num_classes"))
    if num_classes == 0 and head[indices[-1]].get("type") == "linear":
        del head[indices[-1]]
        if isinstance(head, MList):
            del head.marks[indices[-1]]
    else:
        set_value(tree, f"head.{indices[-1]}.features", num_classes, Mark(f"num_classes={num_classes}"))


def _classifier(type_name: Any) -> bool:
    """Whether a head layer of ``type_name`` ends in the classifier (its ``features`` are the classes):
    ``linear``, ``attention_pool`` (whose projection 0 removes) or a plugin type that says so."""
    from .catalog import LAYERS

    if not isinstance(type_name, str):
        return False
    try:
        return LAYERS.get(type_name).obj.classifier
    except (KeyError, ValueError):  # an unknown type: validation names it
        return False


def _index(part: str, node: Any) -> Any:
    digits = part[1:] if part.startswith("-") else part
    return int(part) if isinstance(node, list) and digits.isascii() and digits.isdecimal() else part


def load(path: str | os.PathLike, overrides: Iterable[str] = (), *, num_classes: int | None = None,
         in_chans: int | None = None, resolve: Resolver = paths_only) -> MDict:
    """Load a spec (a file, or what ``resolve`` makes of a name: a file, or a tree it read itself, as a
    shared folder's), resolve ``base:``, apply ``--set`` overrides; positions kept."""
    found = resolve(path, None)
    tree = found if isinstance(found, MDict) else load_file(found, resolve=resolve)
    for text in overrides:
        apply_override(tree, text)
    set_classes_and_channels(tree, num_classes, in_chans)
    return tree


def from_mapping(data: dict, source: str = "<dict>", mark: Mark | None = None) -> MDict:
    """Wrap a plain dict (from Python code) so it flows through the same validation as a file (every value
    at ``mark`` when given: where the values came from)."""
    at = mark or Mark(source)

    def wrap(value: Any) -> Any:
        if isinstance(value, dict):
            out = MDict(mark=at)
            for k, v in value.items():
                out[k] = wrap(v)
                out.marks[k] = at
            return out
        if isinstance(value, (list, tuple)):
            out_list = MList([wrap(v) for v in value], mark=at)
            out_list.marks = [at] * len(out_list)
            return out_list
        return value
    return wrap(data)


def load_mapping(data: dict, resolve: Resolver = paths_only, source: str = "<dict>") -> MDict:
    """A plain dict as a spec tree, its ``base:`` (a name, a path or a folder, as in a file) merged under it."""
    tree = from_mapping(data, source)
    if "base" not in tree:
        return tree
    base, mark = tree.pop("base"), tree.marks.pop("base")
    if not isinstance(base, str) or not base:
        raise SpecError(f"must be a spec name or a file path (got {base!r})", mark, "base")
    try:
        found = resolve(base, None)
    except SpecError as exc:
        raise SpecError(exc.problems[0].message, mark, "base") from None
    return inherit(found if isinstance(found, MDict) else load_file(found, resolve=resolve), tree)


def flatten(tree: Any) -> tuple[Any, dict[tuple, Mark]]:
    """Split a marked tree into plain data and a map from field path to position."""
    marks: dict[tuple, Mark] = {}

    def walk(value: Any, path: tuple) -> Any:
        if isinstance(value, dict):
            own = getattr(value, "marks", {})
            out = {}
            for key, item in value.items():
                if own.get(key) is not None:
                    marks[(*path, key)] = own[key]
                out[key] = walk(item, (*path, key))
            return out
        if isinstance(value, list):
            own_list = getattr(value, "marks", [])
            out_list = []
            for i, item in enumerate(value):
                if i < len(own_list) and own_list[i] is not None:
                    marks[(*path, i)] = own_list[i]
                out_list.append(walk(item, (*path, i)))
            return out_list
        return value

    if getattr(tree, "mark", None) is not None:
        marks[()] = tree.mark
    return walk(tree, ()), marks


def resolve_stage_blocks(tree: MDict) -> MDict:
    """Merge the top-level ``stage`` defaults under each stage, the top-level ``block`` defaults under
    each stage's own ``block``, and each stage's ``blocks:`` items over that (returns a new tree)."""
    tree = _resolve_stage_defaults(tree)
    default = tree.get("block")
    stages = tree.get("stages")
    if not isinstance(stages, list) or not (isinstance(default, dict) or any(
            isinstance(s, dict) and ("blocks" in s or "pattern" in s) for s in stages)):
        return tree
    out = MDict(tree, mark=tree.mark)
    out.marks = dict(tree.marks)
    new_stages = MList(mark=getattr(stages, "mark", None))
    new_stages.marks = list(getattr(stages, "marks", [None] * len(stages)))
    for stage in stages:
        if isinstance(default, dict) and isinstance(stage, dict) and (
                stage.get("block") is None or isinstance(stage.get("block"), dict)):
            own = stage.get("block") or {}
            new = MDict(stage, mark=getattr(stage, "mark", None))
            new.marks = dict(getattr(stage, "marks", {}))
            new["block"] = merge(default, own)
            if "block" not in stage or stage["block"] is None:
                new.marks["block"] = tree.marks.get("block")
            stage = new
        new_stages.append(_resolve_listed_blocks(stage))
    out["stages"] = new_stages
    return out


def _resolve_stage_defaults(tree: MDict) -> MDict:
    """Each stage merged over the top-level ``stage`` mapping (keys every stage shares: a stage type and
    its settings, as timm's CspStagesCfg broadcasts them)."""
    default, stages = tree.get("stage"), tree.get("stages")
    if not isinstance(default, dict) or not isinstance(stages, list):
        return tree
    out = MDict(tree, mark=tree.mark)
    out.marks = dict(tree.marks)
    # a stage that lists its blocks overrides a default pattern (both in one stage are refused)
    bare = {k: v for k, v in default.items() if k != "pattern"}
    merged = MList([merge(bare if isinstance(stage, dict) and stage.get("blocks") is not None else default, stage)
                    if isinstance(stage, dict) else stage for stage in stages],
                   mark=getattr(stages, "mark", None))
    merged.marks = list(getattr(stages, "marks", [None] * len(stages)))
    out["stages"] = merged
    return out


def _resolve_listed_blocks(stage: Any) -> Any:
    """A stage's ``blocks:`` and ``pattern:`` items merged over its (resolved) ``block``."""
    if not isinstance(stage, dict) or not isinstance(stage.get("block"), dict):
        return stage
    new = MDict(stage, mark=getattr(stage, "mark", None))
    new.marks = dict(getattr(stage, "marks", {}))
    for key in ("blocks", "pattern"):
        items = stage.get(key)
        if not isinstance(items, list):
            continue
        listed = MList(mark=getattr(items, "mark", None))
        listed.marks = list(getattr(items, "marks", [None] * len(items)))
        for item in items:
            listed.append(merge(stage["block"], item) if isinstance(item, dict) else item)
        new[key] = listed
    return new
