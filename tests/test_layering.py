"""The package's shape: no import cycle, no module importing the facade, spec tools without torch, and
stage identity from the plan (never from a layer's name)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import torch

import archkit
from archkit import summary

PACKAGE = Path(archkit.__file__).resolve().parent


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any level: a lazy import is a dependency too)."""
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                for alias in node.names:
                    dep = f"{target}.{alias.name}" if f"{target}.{alias.name}" in mods else target
                    if dep in mods and dep != name:
                        graph[name].add(dep)
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods and a.name != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, if any (depth-first search)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_import_graph_has_no_cycle_and_nothing_imports_the_facade() -> None:
    graph = _import_graph()
    assert len(graph) > 30 and "archkit.graph" in graph["archkit.layers"]  # the walk finds real edges
    assert _cycle(graph) == []
    assert sorted(m for m, deps in graph.items() if "archkit" in deps) == []


def test_no_cycle_between_packages() -> None:
    """Counting a subpackage as one unit (archkit.nn, archkit.blocks, archkit.attention, ...), no cycle either:
    archkit.nn holds torch primitives and imports nothing of archkit above them (issue 32)."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, deps in _import_graph().items():
        packages.setdefault(unit(module), set()).update(unit(d) for d in deps if unit(d) != unit(module))
    assert {"archkit.nn", "archkit.blocks", "archkit.attention", "archkit.stages"} <= set(packages)
    assert _cycle(packages) == []
    assert packages["archkit.nn"] == set()


def test_model_spec_fields_are_typed() -> None:
    from archkit.params import BlockSpec, LayerSpec
    from archkit.specs import ModelSpec, StageSpec

    fields = ModelSpec.model_fields
    assert "StageSpec" in str(fields["stages"].annotation)
    assert "BlockSpec" in str(fields["block"].annotation) and "LayerSpec" in str(fields["norm"].annotation)
    spec = archkit.load_spec("resnet50")
    assert isinstance(spec.stages[0], StageSpec) and isinstance(spec.block, BlockSpec) and spec.stages[0].type == "resnet"
    assert isinstance(spec.norm, LayerSpec) and spec.block.groups == 1  # the typed params of its block type


BLOCKER = "raise ImportError('torch is blocked for this test')\n"
COMMANDS = [
    ["validate", "resnet50"],
    ["build", "resnet152", "--summary"],
    ["build", "seresnext50_32x4d", "--summary", "--depth", "3", "--json"],
    ["list", "resne*"],
    ["blocks"],
    ["blocks", "bottleneck"],
    ["schema"],
    ["diff", "resnet50", "resnet50d"],
    ["explain", "resnet50d", "block.shortcut"],
    ["fit", "resnet50", "--macs", "2G"],
    ["sample", "anynetx_e", "regnetx", "-n", "2", "--jobs", "2", "--svg", "{tmp}/edf.svg", "--csv", "{tmp}/s.csv"],
    ["draw", "resnet50", "--output", "{tmp}/r50.svg"],
    ["build", "se_resnet50", "--summary"],  # a description-form plugin block
    ["build", "simam_resnet50", "--summary"],  # a module-form plugin attention type that declares its cost
]
RUNNER = """
import contextlib, io, json, sys
from archkit.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        codes.append((main(argv), out.getvalue()[-300:], err.getvalue()[-300:]))
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


def test_spec_tools_never_import_torch(tmp_path: Path) -> None:
    """With a torch that refuses to import first on the path, every spec command still works."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(BLOCKER)
    commands = [[a.format(tmp=tmp_path) for a in argv] for argv in COMMANDS]
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False
    for argv, (code, out, err) in zip(commands, report["codes"]):
        expected = 1 if argv[0] == "diff" else 0  # diff: 1 = the specs differ
        assert code == expected, (argv, err)
    assert "25,557,032" in report["codes"][0][1] and "60,192,808" in report["codes"][1][1]
    assert "28,088,024" in report["codes"][12][1]  # the plugin's SE-ResNet-50: timm's seresnet50 count
    assert "wrote" in report["codes"][10][1] and (tmp_path / "edf.svg").is_file()  # sample, two processes


def test_a_stem_layer_named_like_a_stage_is_still_stem(tmp_path: Path) -> None:
    """Stage identity comes from the plan: a stem layer called layer0 is not run as a stage, and
    frozen_stages counts what is really frozen."""
    spec = archkit.load_spec("resnet18", ["stem.0.name=layer0", "frozen_stages=1", "input.size=[64, 64]"])
    model = archkit.build_model(spec)
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary.measure(spec).trainable_params == real == 11_689_512 - 9_408 - 128 - 147_968
    backbone = archkit.build_model(spec, features_only=True)
    backbone.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    features = backbone(x)
    sum(f.sum() for f in features).backward()
    assert [tuple(f.shape[1:]) for f in features] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


def test_no_function_is_longer_than_60_lines() -> None:
    """Small functions (issue 32): each under 60 lines, docstring included."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 >= 60:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long, long
