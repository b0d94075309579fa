"""YAML loading, base: inheritance, --set overrides, and errors that say file:line:column and field."""

from __future__ import annotations

import re

import pytest

import archkit
from archkit import SpecError
from conftest import SPECS


def _problems(path, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as info:
        archkit.build_model(archkit.load_spec(path, list(overrides)), device="meta")
    return [str(p) for p in info.value.problems]


def test_base_inheritance_is_a_deep_merge() -> None:
    spec = archkit.load_spec(SPECS / "resnext50_32x4d.yaml")
    assert spec.name == "resnext50_32x4d"
    assert [s.depth for s in spec.stages] == [3, 4, 6, 3]  # from resnet50.yaml
    assert {s.block.type for s in spec.stages} == {"resnext"}
    assert spec.stages[0].block.cardinality == 32 and spec.stages[0].block.base_width == 4


def test_overrides_apply_after_merge_and_before_validation() -> None:
    spec = archkit.load_spec(SPECS / "resnet50.yaml", ["stages.2.depth=23", "head.2.features=10", "seed=3"])
    assert [s.depth for s in spec.stages] == [3, 4, 23, 3]
    assert spec.seed == 3
    model = archkit.build_model(spec, device="meta")
    assert model.fc.out_features == 10 and len(model.layer3) == 23


def test_stage_block_overrides_the_default(write) -> None:
    path = write(f"base: {SPECS / 'resnet50.yaml'}\nname: mixed\nblock: {{type: resnext, cardinality: 8}}\n"
                 "stages:\n  - {planes: 64, depth: 1, block: {base_width: 8}}\n"
                 "  - {planes: 128, depth: 1, stride: 2, block: {type: bottleneck}}\n")
    spec = archkit.load_spec(path)
    assert (spec.stages[0].block.type, spec.stages[0].block.cardinality, spec.stages[0].block.base_width) == \
        ("resnext", 8, 8)
    assert spec.stages[1].block.type == "bottleneck" and spec.stages[1].block.groups == 1


def test_errors_name_file_line_column_and_field(write) -> None:
    path = write(
        f"base: {SPECS / 'resnet50.yaml'}\n"
        "name: broken\n"
        "stages:\n"
        "  - {planes: 64, depth: 0}\n"
        "  - {planes: 128, dpeth: 4}\n"
        "  - planes: 256\n"
        "    depth: true\n"
    )
    problems = _problems(path)
    assert problems == [
        f"{path}:4:18: stages[0].depth: must be >= 1 (got 0)",
        f"{path}:5:5: stages[1].depth: required field is missing",
        f"{path}:5:19: stages[1].dpeth: unknown field 'dpeth'; did you mean 'depth'? "
        "(choose from: block, blocks, depth, depth_multiplier, dilate, name, pattern, planes, stride, type)",
        f"{path}:7:5: stages[2].depth: expected an integer (got True)",
    ]


def test_error_in_a_base_file_points_into_the_base(write) -> None:
    write("name: parent\nstages:\n  - {planes: 64, depth: -1, block: {type: basic}}\n", "parent.yaml")
    child = write("base: parent.yaml\nname: child\n", "child.yaml")
    (problem,) = _problems(child)
    assert problem.startswith(f"{child.parent / 'parent.yaml'}:3:18: stages[0].depth: must be >= 1")


def test_override_errors_say_they_come_from_set() -> None:
    (problem,) = _problems(SPECS / "resnet50.yaml", ["stages.1.stride=0"])
    assert problem == "--set stages.1.stride=0: stages[1].stride: must be >= 1 (got 0)"
    (problem,) = _problems(SPECS / "resnet50.yaml", ["stages.9.depth=1"])
    assert "stages has 4 items" in problem
    (problem,) = _problems(SPECS / "resnet50.yaml", ["inits.zero_init_residual=true"])
    assert "unknown field 'inits'; did you mean 'init'?" in problem


def test_unknown_block_type_suggests(write) -> None:
    path = write(f"base: {SPECS / 'resnet50.yaml'}\nname: x\nblock: {{type: bottlenek}}\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3:") and "unknown block type 'bottlenek'; did you mean 'bottleneck'?" in problem


def test_block_constraints_fail_with_the_blocks_reason() -> None:
    (problem,) = _problems(SPECS / "resnet50.yaml", ["block.groups=2", "block.widths=[64, 65]"])
    assert "stages[0]" in problem and "groups 2 must divide the widths 64 and 65" in problem
    (problem,) = _problems(SPECS / "resnet50.yaml", ["stem.0.groups=5"])
    assert "stem[0]" in problem and "groups 5 does not divide 3 channels" in problem


def test_spatial_size_too_small_names_the_layer() -> None:
    (problem,) = _problems(SPECS / "resnet50.yaml", ["input.size=[2, 2]", "stem.3.kernel_size=5", "stem.3.padding=0"])
    assert "stem[3]" in problem and "too small" in problem


@pytest.mark.parametrize("text, fragment", [
    ("a: 1\na: 2\n", "duplicate key 'a' (first at line 1)"),
    ("!!python/object/apply:os.system ['echo hi']\n", "unsupported YAML tag '!!python/object/apply:os.system'"),
    ("name: !!python/name:os.system\n", "unsupported YAML tag"),
    ("- 1\n- 2\n", "must be a mapping at the top level, not a list"),
    ("", "empty spec file"),
    ("name: a\n---\nname: b\n", "exactly one YAML document"),
    ("name: [1, 2\n", "invalid YAML"),
    ("a: &a [*a, *a]\n", ""),  # a recursive alias: refused by depth, never expanded forever
    ("x: &a [1,1,1,1,1,1,1,1,1,1]\ny: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nz: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "w: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\nv: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nu: [*e,*e,*e,*e,*e,*e,*e,*e]\n",
     "alias bomb"),
])
def test_hostile_or_broken_yaml_gives_one_clear_error(write, text: str, fragment: str) -> None:
    path = write(text)
    with pytest.raises(SpecError) as info:
        archkit.load_spec(path)
    message = str(info.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_bad_files(tmp_path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        archkit.load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        archkit.load_spec(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        archkit.load_spec(tmp_path / "latin1.yaml")


def test_base_cycle_shows_the_chain(write) -> None:
    a = write("base: b.yaml\nname: a\n", "a.yaml")
    write("base: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(SpecError, match=r"base: cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        archkit.load_spec(a)


def test_numbers_yaml_gets_wrong_are_field_errors(write) -> None:
    base = f"base: {SPECS / 'resnet50.yaml'}\nname: n\n"
    for value, fragment in [("1e400", "expected an integer"), (".nan", "expected an integer"),
                            ("true", "expected an integer"), (str(2**64), "must be <=")]:
        (problem,) = _problems(write(base + f"seed: {value}\n"))
        assert "seed" in problem and fragment in problem, problem
    (problem,) = _problems(write(base + "width_multiplier: .inf\n"))
    assert "width_multiplier: must be a finite number" in problem


def test_build_model_accepts_a_dict_and_reports_field_paths() -> None:
    with pytest.raises(SpecError, match=r"<dict>: stages\[0\]\.planes: required field is missing"):
        archkit.build_model({"name": "x", "stages": [{"depth": 1, "block": {"type": "basic"}}]})


def test_absurdly_large_file_is_refused_without_reading_it(tmp_path) -> None:
    from archkit.loader import MAX_FILE_BYTES

    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SpecError, match=r"file is over 1,048,576 bytes, the most a spec may have"):
        archkit.load_spec(path)
    with pytest.raises(SpecError, match=r"/dev/zero: not a regular file"):  # endless devices are never read
        archkit.load_spec("/dev/zero")


def test_the_docs_spec_example_is_valid(write) -> None:
    readme = (SPECS.parent / "docs" / "specs.md").read_text(encoding="utf-8")
    marker = "# every field: specs/resnet50.yaml plus the optional keys (illustrative values)\n"
    example = readme.split(marker)[1].split("```")[0]
    spec = archkit.load_spec(write(example))
    model = archkit.build_model(spec, device="meta")
    assert spec.name == "resnet50" and model.layer4[0].conv2.groups == 2
    assert model.layer4[0].se is not None and spec.drop_path_rate == 0.05


def test_the_readme_variant_examples_are_valid(tmp_path) -> None:
    readme = (SPECS.parent / "README.md").read_text(encoding="utf-8")
    examples = [block.split("```")[0] for block in readme.split("```yaml\n")[1:]]
    assert len(examples) >= 4
    for i, text in enumerate(examples):
        path = tmp_path / f"variant{i}.yaml"
        path.write_text(re.sub(r"base: (\S+\.yaml)", rf"base: {SPECS}/\1", text), encoding="utf-8")  # names stay
        archkit.build_model(path, device="meta")


def test_independent_mistakes_are_reported_together(write) -> None:
    """Field errors, a block's own keys and cross-field checks in one run: five lines, not five runs."""
    path = write(f"base: {SPECS / 'resnet50.yaml'}\nname: five\nframes: 1\nfrozen_stages: 9\n"
                 "block: {type: bottleneck, grops: 2}\n"
                 "stages:\n  - {planes: 64, depth: -1}\n  - {planes: 128, depth: 4, stride: 2}\n"
                 "  - {planes: 256, depth: 6, stride: 2, block: {type: bottleneck, attn: [{type: se, position: "
                 "after_add}]}}\n  - {planes: 512, depth: 3, stride: 2}\n")
    problems = _problems(path)
    assert [p.split(": ")[1] for p in problems] == ["frames", "frozen_stages", "block.grops", "stages[0].depth",
                                                    "stages[2].block.attn[0].position"]
    assert "did you mean 'groups'?" in problems[2] and "did you mean 'post_add'?" in problems[4]
    assert all(p.startswith(f"{path}:") for p in problems)
