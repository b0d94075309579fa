"""Design-space tools: fit to a budget (checked by building the result), diff (exit codes as diff's),
explain (file and line of the value, what it overrode)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import archkit
from archkit.oracle import measure_meta
from archkit import summary
from archkit.cli import main


def test_fit_reaches_the_budget_deterministically(tmp_path, capsys) -> None:
    outputs = []
    for i in range(2):
        out = tmp_path / f"fit{i}.yaml"
        assert main(["fit", "resnet50", "--macs", "2G", "--output", str(out)]) == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]  # the same command gives the same spec
    fitted = archkit.load_spec(tmp_path / "fit0.yaml")
    macs = measure_meta(fitted).macs  # the result checked on the meta-device oracle
    assert 0.97 * 2e9 <= macs <= 2e9
    assert "base: resnet50" in outputs[0] and len(outputs[0].splitlines()) <= 7  # + width_divisor: 8 (--divisor)


def test_fit_with_a_parameter_budget_and_an_impossible_one(capsys) -> None:
    assert main(["fit", "resnet18", "--macs", "1G", "--params-max", "4M"]) == 0
    out = capsys.readouterr().out
    chosen = out.split("chosen: ")[1]
    width = float(chosen.split("width ")[1].split(",")[0])
    depth = float(chosen.split("depth ")[1].split(":")[0])
    spec = archkit.load_spec("resnet18", [f"width_multiplier={width}", f"depth_multiplier={depth}"])
    assert summary.measure(spec).total_params <= 4e6
    assert main(["fit", "resnet50", "--macs", "1M"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "meets the budget; the closest" in err


def test_fit_varies_regnet_numbers_and_torchvision_agrees(tmp_path, capsys) -> None:
    from torchvision.models.regnet import BlockParams, RegNet

    outputs = []
    for i in range(2):
        out = tmp_path / f"regnet{i}.yaml"
        assert main(["fit", "regnet_x_400mf", "--macs", "800M", "--params-max", "8M", "--vary", "w_0,w_a",
                     "--output", str(out)]) == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]
    assert "\nregnet:\n" in outputs[0] and "\n  w_0: " in outputs[0] and "width_multiplier" not in outputs[0]
    fitted = archkit.load_spec(tmp_path / "regnet0.yaml")
    oracle = measure_meta(fitted)
    assert 0.97 * 800e6 <= oracle.macs <= 800e6 and oracle.total_params <= 8e6
    numbers = archkit.loader.load(tmp_path / "regnet0.yaml", resolve=archkit.zoo.resolve)["regnet"]
    assert (numbers["w_0"], numbers["w_a"]) != (24, 24.48)  # the numbers moved, not a multiplier
    reference = RegNet(BlockParams.from_init_params(**numbers))  # torchvision generates the same network
    assert oracle.total_params == sum(p.numel() for p in reference.parameters())
    assert main(["fit", "regnet_x_400mf", "--macs", "800M", "--vary", "w_q"]) == 2
    assert "cannot vary 'w_q'; did you mean 'w_m'" in capsys.readouterr().err
    assert main(["fit", "resnet50", "--macs", "2G", "--vary", "w_a"]) == 2
    assert "this spec has no regnet: numbers" in capsys.readouterr().err


def test_diff_names_the_block_change_and_stage_deltas(capsys) -> None:
    assert main(["diff", "resnet50", "resnext50_32x4d"]) == 1
    out = capsys.readouterr().out
    assert "block: bottleneck -> resnext" in out and "params: 215,808 -> 205,824 (-9,984)" in out
    assert "total params: 25,557,032 -> 25,028,904 (-528,128)" in out
    assert main(["diff", "resnet50", "resnet50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["equal"] is True


def test_explain_names_file_line_and_what_was_overridden(capsys) -> None:
    assert main(["explain", "resnext50_32x4d", "block.cardinality"]) == 0
    out = capsys.readouterr().out
    source = (Path(archkit.__file__).parent / "zoo" / "resnext50_32x4d.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if text.startswith("block:"))
    assert out.startswith("block.cardinality = 32") and f"resnext50_32x4d.yaml:{line}:" in out
    assert main(["explain", "resnet18", "stages.1.depth", "--set", "stages.1.depth=5"]) == 0
    out = capsys.readouterr().out
    assert "stages.1.depth = 5" in out and "set at --set stages.1.depth=5" in out
    assert "overrides" in out and "resnet18.yaml" in out
    assert main(["explain", "resnext50_32x4d", "block.cardinalty"]) == 2
    assert "did you mean 'cardinality'" in capsys.readouterr().err


def test_explain_regnet_numbers_and_the_stages_they_generate(tmp_path, capsys) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("base: regnet_x_400mf\nname: child\nregnet:\n  w_a: 30.0\n")
    assert main(["explain", str(child), "regnet.w_a"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("regnet.w_a = 30.0") and "child.yaml:4:3" in out and "(24.48)" in out
    assert main(["explain", "regnet_x_400mf", "stages.1.planes"]) == 0
    out = capsys.readouterr().out
    source = (Path(archkit.__file__).parent / "zoo" / "regnet_x_400mf.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if text.startswith("regnet:"))
    assert f"regnet_x_400mf.yaml:{line}:1 (generated by its regnet: numbers)" in out and "default" not in out


def test_named_scales_are_chosen_explicitly(tmp_path, capsys) -> None:
    path = tmp_path / "family.yaml"
    path.write_text("base: resnext50_32x4d\nname: fam\nscales:\n  n: {width: 0.3, depth: 0.34, resolution: 160}\n"
                    "  m: {width: 1.0, depth: 1.0}\n")
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "declares scales (n, m); choose one with --scale" in err
    assert main(["build", str(path), "--scale", "x"]) == 2
    assert "unknown scale 'x'" in capsys.readouterr().err
    n = archkit.load_spec(path, ["scale=n"])
    assert n.input.size == [160, 160]
    from archkit.plan import plan

    p = plan(n)
    assert all(b.planes % 8 == 0 for b in p.blocks)  # widths kept multiples of 8
    assert [s.depth for s in p.stages] == [2, 2, 3, 2]
    model = archkit.build_model(n)  # grouped widths stay valid (cardinality 32 divides every width)
    assert measure_meta(n).total_params == sum(q.numel() for q in model.parameters())
    again = archkit.as_spec(n, num_classes=10)  # revalidating a resolved spec must not scale it twice
    assert [b.planes for b in plan(again).blocks] == [b.planes for b in p.blocks]
    m = archkit.create_model(path, scale="m", device="meta")
    assert sum(q.numel() for q in m.parameters()) == 25_028_904  # the family's m is resnext50_32x4d


def test_fit_plot_draws_candidates_budget_and_choice(tmp_path, capsys) -> None:
    import shutil
    import subprocess
    import xml.etree.ElementTree as ET

    svg = tmp_path / "fit.svg"
    assert main(["fit", "resnet50", "--macs", "2G", "--params-max", "14M", "--plot", str(svg)]) == 0
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    circles = root.findall(f"{ns}circle")
    assert sum(c.get("class") == "chosen" for c in circles) == 1
    assert sum(c.get("class") == "candidate" for c in circles) >= 20
    assert "budget 2 GMACs" in svg.read_text()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:  # rendered as a person would see it (Debian's chromium, when installed)
        png = tmp_path / "fit.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                        "--window-size=780,540", svg.as_uri()], capture_output=True, timeout=120)
        assert png.exists() and png.stat().st_size > 5_000
        from PIL import Image

        image = Image.open(png).convert("RGB")
        pixels = [image.getpixel((x, y)) for y in range(0, image.height, 2) for x in range(0, image.width, 2)]
        green = sum(1 for r, g, b in pixels if abs(r - 46) < 30 and abs(g - 125) < 30 and abs(b - 50) < 30)
        red = sum(1 for r, g, b in pixels if r > 170 and g < 90 and b < 90)
        assert green > 8 and red > 8  # the chosen mark and the budget lines are on screen (every 4th pixel)


def test_diff_sees_a_change_in_any_block_of_a_stage(tmp_path) -> None:
    """A stage whose second block changes (a pattern entry) differs, even where the first is the same."""
    from archkit.design import diff

    a = archkit.as_spec("mobileone_s0")
    b = archkit.as_spec("mobileone_s0", values={"stages.0.pattern": [{"depthwise": True}, {"kernel_size": 1,
                                                                                          "branches": 1}]})
    result = diff(a, b)
    assert not result["equal"]
    changed = result["stages"][0]
    assert changed["a"]["block"] != changed["b"]["block"] and "repeated" in changed["b"]["block"]


def test_fit_samples_a_grid_too_large_to_walk(tmp_path, capsys) -> None:
    """Five RegNet numbers (840 combinations x bisection): sampled and refined, deterministic, within the
    budget, and torchvision's RegNet builds the same network from the written numbers."""
    from torchvision.models.regnet import BlockParams, RegNet

    vary = "w_0,w_a,w_m,group_width,regnet.depth"
    texts = []
    for i in range(2):
        out = tmp_path / f"r{i}.yaml"
        assert main(["fit", "regnet_x_400mf", "--macs", "800M", "--params-max", "8M", "--vary", vary,
                     "--output", str(out)]) == 0
        texts.append(out.read_text())
    printed = capsys.readouterr().out
    assert "(sampled: 840 combinations" in printed
    assert texts[0] == texts[1]
    fitted = archkit.load_spec(tmp_path / "r0.yaml")
    oracle = measure_meta(fitted)
    assert 0.97 * 800e6 <= oracle.macs <= 800e6 and oracle.total_params <= 8e6
    numbers = archkit.loader.load(tmp_path / "r0.yaml", resolve=archkit.zoo.resolve)["regnet"]
    reference = RegNet(BlockParams.from_init_params(**numbers))
    assert oracle.total_params == sum(p.numel() for p in reference.parameters())


def test_fit_widens_the_divisor_where_widths_break_groups(tmp_path, capsys) -> None:
    """regnetz_b16's blocks group 16 channels: at divisor 8 most widths break them; fit says so and lands
    within 3% of the budget on multiples of 16."""
    out = tmp_path / "z.yaml"
    assert main(["fit", "regnetz_b16", "--macs", "800M", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "refused: stages[N].block: bottle block: group_size N does not divide the inner width N" in printed
    fitted = archkit.load_spec(out)
    assert fitted.width_divisor in (16, 32, 64)
    assert 0.97 * 800e6 <= measure_meta(fitted).macs <= 800e6
    assert main(["fit", "regnetz_b16", "--macs", "10M"]) == 2  # none fits: the closest, and the refusals
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the closest:" in err[0] and "candidates refused" in err[0]
    plot = tmp_path / "none.svg"  # nothing fits and nothing is near: still a plot (it once raised on max([]))
    assert main(["fit", "regnetz_b16", "--macs", "1M", "--plot", str(plot)]) == 2
    assert "the closest:" in capsys.readouterr().err and ET.parse(plot).getroot().tag.endswith("svg")
    one = tmp_path / "one.yaml"  # widening from --divisor 1 reaches the group size too
    assert main(["fit", "regnetz_b16", "--macs", "800M", "--divisor", "1", "--output", str(one)]) == 0
    capsys.readouterr()
    assert 0.97 * 800e6 <= measure_meta(archkit.load_spec(one)).macs <= 800e6


def test_fit_widens_the_divisor_to_group_widths_that_are_no_power_of_two(tmp_path, capsys) -> None:
    """timm's regnety_016 groups 24 channels: no power of two times 8 is a multiple of 24."""
    out = tmp_path / "y.yaml"
    assert main(["fit", "regnety_016", "--macs", "1G", "--output", str(out)]) == 0
    assert "divisor 24" in capsys.readouterr().out
    fitted = archkit.load_spec(out)
    assert fitted.width_divisor % 24 == 0 and 0.97 * 1e9 <= measure_meta(fitted).macs <= 1e9


def test_fit_closest_respects_the_parameter_cap(capsys) -> None:
    assert main(["fit", "resnet18", "--macs", "1M", "--params-max", "1M"]) == 2
    err = capsys.readouterr().err
    params = int(err.split(" GMACs, ")[1].split(" parameters")[0].replace(",", ""))
    assert params <= 1_000_000, err
    assert main(["fit", "resnet18", "--macs", "1G", "--vary", ""]) == 2
    assert "--vary: names no number" in capsys.readouterr().err
