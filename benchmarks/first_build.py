"""The first quantized build in a fresh process (what every `edgekit build -t xnnpack-int8` from the command line is),
with XNNPACKQuantizer's conv + BatchNorm patterns traced only where a batch norm is left to match (edgekit) and traced
for every graph (XNNPACKQuantizer's own way: `edgekit.pipeline.quantize._cached_patterns` off). Fresh process each,
alternating, imports apart; medians of the build's own seconds and its quantize stage, and the programs' sha256.

    .venv/bin/python benchmarks/first_build.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "first_build.txt"

CODE = r"""
import contextlib, json, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
import torch
torch.set_num_threads(1)
import edgekit
from edgekit._noise import import_stack
from edgekit.models import parse_input_spec
from edgekit.pipeline import quantize
import_stack()
if sys.argv[2] == "own":
    quantize._cached_patterns = contextlib.nullcontext
kw = json.loads(sys.argv[4])
if "inputs" in kw:
    kw["inputs"] = [parse_input_spec(s) for s in kw["inputs"]]
res = edgekit.build(sys.argv[3], "xnnpack-int8", out=sys.argv[5], force=True, **kw)
print(json.dumps({**res.manifest.timings_s, "sha": res.manifest.program.sha256}))
"""


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lines = [
        "# the first edgekit build -t xnnpack-int8 in a fresh process (1 thread): XNNPACKQuantizer's conv + BatchNorm "
        "patterns traced only",
        "# where a batch norm is left (edgekit) vs for every graph (its own way); alternating fresh processes, "
        f"medians of {args.rounds} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"{'model':<40}{'own s':>8}{'edgekit s':>11}{'quantize own':>14}{'edgekit':>9}   same program",
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        np.savez(tmp / "calib.npz", x=np.random.default_rng(1).standard_normal((32, 3, 224, 224)).astype(np.float32))
        models = {
            "small CNN 1x1x8x8 (tests/toy_models.py)": ("toy_models:small_cnn", {"inputs": ["1x1x8x8"]}),
            "ResNet-18 1x3x224x224": (
                f"{ROOT}/benchmarks/realsize.py:resnet18",
                {"calibration": str(tmp / "calib.npz")},
            ),
        }
        for name, (spec, kw) in models.items():
            got: dict = {"own": [], "edgekit": []}
            for r in range(args.rounds):
                for way in ("own", "edgekit") if r % 2 == 0 else ("edgekit", "own"):
                    p = subprocess.run(
                        [sys.executable, "-c", CODE, str(ROOT), way, spec, json.dumps(kw), str(tmp / "pkg")],
                        capture_output=True,
                        text=True,
                        timeout=1800,
                    )
                    if p.returncode:
                        raise SystemExit(p.stderr[-800:])
                    got[way].append(json.loads(p.stdout.strip().splitlines()[-1]))
            med = {w: {k: statistics.median(r[k] for r in got[w]) for k in ("total", "quantize")} for w in got}
            same = len({r["sha"] for w in got for r in got[w]}) == 1
            lines.append(
                f"{name:<40}{med['own']['total']:>8.2f}{med['edgekit']['total']:>11.2f}"
                f"{med['own']['quantize']:>14.2f}{med['edgekit']['quantize']:>9.2f}   {'yes' if same else 'NO'}"
            )
            print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
