"""Builds with and without walking torch's CIA operator table once per set of registrations
(`edgekit.pipeline.stages.cia_ops_materialized_once`), interleaved in one warm process, on the test suite's small CNN
and on ResNet-18 @224 (int8, 32 random calibration samples): build seconds (medians) and the programs' sha256.

    .venv/bin/python benchmarks/cia_walk.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
OUT = ROOT / "benchmarks" / "results" / "cia_walk.txt"


def main() -> None:
    import numpy as np
    import torch

    import edgekit
    import edgekit.pipeline.stages as stages
    from edgekit.models import parse_input_spec

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    once = stages.cia_ops_materialized_once
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        np.savez(tmp / "calib.npz", x=np.random.default_rng(1).standard_normal((32, 3, 224, 224)).astype(np.float32))
        models = {
            "small CNN 1x1x8x8 (tests/toy_models.py)": dict(
                model="toy_models:small_cnn", inputs=[parse_input_spec("1x1x8x8")]
            ),
            "ResNet-18 1x3x224x224": dict(
                model=f"{ROOT}/benchmarks/realsize.py:resnet18", calibration=str(tmp / "calib.npz")
            ),
        }
        lines = [
            "# edgekit build -t xnnpack-int8, builds walking torch's CIA operator table once per set of registrations vs",
            f"# every time (torch's own), interleaved (each first in half the rounds) in one warm process, 1 thread; "
            f"medians of {args.rounds} rounds "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
            "",
            f"{'model':<42}{'torch s':>9}{'once s':>9}{'saved':>8}   same program",
        ]
        for name, kw in models.items():
            times, shas = {"torch": [], "once": []}, set()
            for r in range(args.rounds + 1):  # the first round warms the process up, and is not counted
                for way in ("torch", "once") if r % 2 else ("once", "torch"):  # each first in half the rounds
                    stages.cia_ops_materialized_once = once if way == "once" else contextlib.nullcontext
                    t = time.perf_counter()
                    res = edgekit.build(target="xnnpack-int8", out=tmp / "pkg", force=True, **kw)
                    if r:
                        times[way].append(time.perf_counter() - t)
                    shas.add(res.manifest.program.sha256)
            stages.cia_ops_materialized_once = once
            a, b = statistics.median(times["torch"]), statistics.median(times["once"])
            lines.append(f"{name:<42}{a:>9.2f}{b:>9.2f}{(a - b) / a:>8.0%}   {'yes' if len(shas) == 1 else 'NO'}")
            print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
