"""Which export paths work for which shipped spec (and the example plugins' specs, when installed).

    python benchmarks/export_matrix.py        # a few minutes: every spec is materialized at 64x64

Prints one line per spec: torchscript / exported-program / onnx, ok or the one-line failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path

import archkit
from archkit.errors import SpecError
from archkit.export import example_input, export

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("torchscript", "exported-program", "onnx")


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    paths = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "plugins").glob("*/specs/*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            try:
                spec = archkit.load_spec(path, ["input.size=[64, 64]"])
                count = archkit.build_model(spec, device="meta")
                if sum(p.numel() for p in count.parameters()) > 1_000_000_000:
                    print(f"{spec.name}: skipped (over 1 B parameters; export needs real weights)")
                    continue
                model = archkit.build_model(spec).eval()
            except SpecError as exc:  # e.g. a plugin spec without its plugin installed
                print(f"{path.name}: skipped ({exc})")
                continue
            cells = []
            for fmt in FORMATS:
                start = time.perf_counter()
                try:
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        export(model, fmt, Path(tmp) / fmt, example_input(spec), dynamic_batch=fmt != "torchscript")
                    cells.append(f"{fmt} ok ({time.perf_counter() - start:.0f} s)")
                except Exception as exc:  # noqa: BLE001 - report and go on
                    cells.append(f"{fmt} FAILED: {str(exc).splitlines()[0][:100]}")
            print(f"{spec.name}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
