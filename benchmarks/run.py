"""archkit against its references, side by side in one run; prints medians and ratios (archkit / reference).

    pip install -e ".[bench]"          # torchinfo, torchvision
    python benchmarks/run.py           # everything (several minutes on 2 cores)
    python benchmarks/run.py --quick   # fewer repeats

Not a test: this machine is noisy, so ratios are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ARCHKIT = [sys.executable, "-m", "archkit"]
TORCHINFO_152 = ("import torch, torchvision, torchinfo; "
                 "torchinfo.summary(torchvision.models.resnet152(), (1, 3, 224, 224), verbose=0)")

rows: list[tuple[str, float, float, str, str]] = []


def report(what: str, ours: float, ref: float, unit: str, target: str) -> None:
    rows.append((what, ours, ref, unit, target))
    print(f"  {what:<58} {ours:9.3f} {ref:9.3f} {unit:<4} ratio {ours / ref:5.2f}  (target {target})", flush=True)


def run_process(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def processes(cmds: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median peak memory per command, interleaved so drift hits all alike."""
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for key, cmd in cmds.items():
            runs[key].append(run_process(cmd))
    return {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_build(repeat: int) -> None:
    import torch
    import torchvision.models as tvm

    import archkit

    print("Build (materialize weights, in-process, from the spec file, median seconds)")
    for name in ("resnet50", "wide_resnet101_2"):
        path = str(SPECS / f"{name}.yaml")
        torch.manual_seed(0)
        ours, ref = [], []
        for _ in range(repeat):  # interleaved
            ours.append(timed(lambda: archkit.build_model(path), 1))
            ref.append(timed(lambda: getattr(tvm, name)(), 1))
        report(f"build_model('specs/{name}.yaml')", statistics.median(ours), statistics.median(ref), "s", "<= 0.7")


def bench_build_memory(repeat: int) -> None:
    print("Build wide_resnet101_2 as a whole process (peak MiB)")
    res = processes({
        "archkit": [sys.executable, "-c", f"import archkit; archkit.build_model({str(SPECS / 'wide_resnet101_2.yaml')!r})"],
        "torchvision": [sys.executable, "-c", "import torchvision; torchvision.models.wide_resnet101_2()"],
    }, repeat)
    report("peak memory, build wide_resnet101_2", res["archkit"][1], res["torchvision"][1], "MiB", "<= 1.05")


def bench_estimate(repeat: int) -> None:
    import archkit
    from archkit import design, summary

    print("Analytic evaluations of resnet50-like specs (what `archkit fit` loops over), in-process")
    spec = archkit.load_spec(str(SPECS / "resnet50.yaml"))
    rates = []
    for _ in range(repeat):  # ten widths, as a search revisits them
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 0.5:
            summary.estimate(spec, width_multiplier=0.5 + (n % 10) / 10)
            n += 1
        rates.append(n / (time.perf_counter() - start))
    rate = statistics.median(rates)
    rows.append(("analytic evaluations per second (10 widths)", rate, 20000.0, "/s", ">= 20000"))
    print(f"  {'evaluations per second, 10 widths revisited':<58} {rate:9.0f}                (target >= 20000)",
          flush=True)
    budgets = [1.0e9 + 0.37e9 * k for k in range(repeat)]  # each search a budget of its own
    fits = []
    for budget in budgets:
        start = time.perf_counter()
        _, seen = design.fit(spec, budget)
        fits.append(len(seen) / (time.perf_counter() - start))
    print(f"  {'fit resnet50 --macs B, a new budget each time':<58} {statistics.median(fits):9.0f} candidates/s "
          f"(first search {fits[0]:.0f}/s: every width new)", flush=True)


def bench_run(repeat: int) -> None:
    import torch
    import torchvision.models as tvm

    import archkit

    print("Run (resnet50, batch 8, 224x224, CPU, same weights, median seconds)")
    ref = tvm.resnet50()
    ours = archkit.build_model(SPECS / "resnet50.yaml")
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(8, 3, 224, 224)
    for mode in ("eval", "train"):
        for m in (ours, ref):
            m.train(mode == "train")
        if mode == "eval":
            def step(m):
                with torch.inference_mode():
                    m(x)
            label = "forward (eval, inference_mode)"
        else:
            def step(m):
                m.zero_grad(set_to_none=True)
                m(x).sum().backward()
            label = "forward + backward (train)"
        step(ours), step(ref)  # warm-up
        a, b = [], []
        for _ in range(repeat):
            a.append(timed(lambda: step(ours), 1))
            b.append(timed(lambda: step(ref), 1))
        report(label, statistics.median(a), statistics.median(b), "s", "1.00 +/- 0.03")


def bench_summary(repeat: int) -> None:
    print("Summary of resnet152 as a whole process (median wall seconds / peak MiB)")
    res = processes({
        "archkit": [*ARCHKIT, "build", str(SPECS / "resnet152.yaml"), "--summary"],
        "torchinfo": [sys.executable, "-c", TORCHINFO_152],
        "torch": [sys.executable, "-c", "import torch"],
    }, repeat)
    report("archkit build resnet152 --summary vs torchinfo.summary", res["archkit"][0], res["torchinfo"][0], "s",
           "<= 0.45")
    report("  same, vs bare `import torch`", res["archkit"][0], res["torch"][0], "s", "<= 1.15")
    report("  peak memory vs bare `import torch` (MiB)", res["archkit"][1], res["torch"][1], "MiB",
           "<= +150 MiB")
    print(f"    -> {res['archkit'][1] - res['torch'][1]:+.0f} MiB above `import torch`; "
          f"torchinfo {res['torchinfo'][1]:.0f} MiB")


def bench_scale(repeat: int) -> None:
    print("Scale: summary of a 9.8-billion-parameter spec vs resnet18 (whole process)")
    res = processes({
        "big": [*ARCHKIT, "build", str(SPECS / "resnet152_x13.yaml"), "--summary"],
        "small": [*ARCHKIT, "build", str(SPECS / "resnet18.yaml"), "--summary"],
    }, repeat)
    report("time, resnet152_x13 (9.8 B params) vs resnet18", res["big"][0], res["small"][0], "s", "<= 1.5")
    report("peak memory, same", res["big"][1], res["small"][1], "MiB", "<= 1.5")
    print("    torchinfo would allocate the weights: 9,824,529,448 x 4 B = 39.3 GB (this machine: 24 GiB)")


def bench_spec_tools(repeat: int) -> None:
    print("Spec tools (no torch) vs bare `import torch`, whole processes (median wall seconds / peak MiB)")
    res = processes({
        "summary": [*ARCHKIT, "build", str(SPECS / "resnet152.yaml"), "--summary"],
        "validate": [*ARCHKIT, "validate", "resnet50"],
        "list": [*ARCHKIT, "list"],
        "fit": [*ARCHKIT, "fit", "resnet50", "--macs", "2G"],
        "torch": [sys.executable, "-c", "import torch"],
    }, repeat)
    report("archkit build resnet152 --summary", res["summary"][0], res["torch"][0], "s", "<= 0.2")
    report("archkit validate resnet50", res["validate"][0], res["torch"][0], "s", "<= 0.2")
    report("archkit list (the whole zoo)", res["list"][0], res["torch"][0], "s", "<= 0.4")
    report("archkit fit resnet50 --macs 2G", res["fit"][0], res["torch"][0], "s", "(for scale)")
    print(f"    -> peak memory of the summary: {res['summary'][1]:.0f} MiB (target <= 60 MiB); "
          f"`import torch` alone: {res['torch'][1]:.0f} MiB", flush=True)
    rows.append(("summary peak memory", res["summary"][1], 60.0, "MiB", "<= 60 MiB"))


def bench_startup(repeat: int) -> None:
    print("Start-up vs bare `import torch` (median wall seconds)")
    res = processes({
        "help": [*ARCHKIT, "--help"],
        "blocks": [*ARCHKIT, "blocks"],
        "validate": [*ARCHKIT, "validate", *map(str, sorted(SPECS.glob("*.yaml")))],
        "torch": [sys.executable, "-c", "import torch"],
    }, repeat)
    for key, label in (("help", "archkit --help"), ("blocks", "archkit blocks"),
                       ("validate", "archkit validate specs/*.yaml (all shipped)")):
        report(label, res[key][0], res["torch"][0], "s", "<= 1.15")


CKPT = ("import torch, archkit; m = archkit.build_model('resnet50'); m.set_grad_checkpointing({on}); "
        "x = torch.randn(32, 3, 224, 224); m(x).sum().backward()")


def bench_checkpointing(repeat: int) -> None:
    print("Gradient checkpointing: resnet50, batch 32, 224x224, one forward+backward (whole process, peak MiB)")
    res = processes({"on": [sys.executable, "-c", CKPT.format(on=True)],
                     "off": [sys.executable, "-c", CKPT.format(on=False)]}, repeat)
    report("peak memory with / without checkpointing", res["on"][1], res["off"][1], "MiB", "< 1 (saves memory)")
    report("time with / without checkpointing", res["on"][0], res["off"][0], "s", "(recomputes: > 1)")


def bench_fused(repeat: int) -> None:
    import torch

    import archkit

    print("Conv-BN fusion: resnet50 inference, batch 8, 224x224, CPU (median seconds)")
    model = archkit.build_model("resnet50").eval()
    fused = archkit.fuse(model)
    x = torch.randn(8, 3, 224, 224)

    def step(m):
        with torch.inference_mode():
            m(x)

    step(model), step(fused)
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(lambda: step(fused), 1))
        b.append(timed(lambda: step(model), 1))
    report("fused / unfused forward", statistics.median(a), statistics.median(b), "s", "< 1")


# Whole-process sections first: a child's peak RSS (ru_maxrss) includes what it inherited at fork, so
# they run while this process is still small (no torch imported, no model built).
SECTIONS = {"tools": bench_spec_tools, "summary": bench_summary, "scale": bench_scale, "startup": bench_startup,
            "memory": bench_build_memory, "checkpointing": bench_checkpointing, "build": bench_build, "run": bench_run,
            "estimate": bench_estimate, "fused": bench_fused}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7 (11 for in-process runs)")
    args = parser.parse_args()
    from importlib.metadata import version

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {version('torch')}")
    for name in [s for s in SECTIONS if s in (args.sections or SECTIONS)]:
        quick = {"checkpointing": 3}.get(name, 3)
        SECTIONS[name](quick if args.quick else (11 if name in ("build", "run", "estimate", "fused") else
                                                 3 if name == "checkpointing" else 7))
    print("\nratio = archkit / reference; medians over interleaved repeats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
