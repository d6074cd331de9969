"""`edgekit build` vs a bare ExecuTorch script doing the same work, side by side, on real-size models at 224.

The bare script: torch.export → prepare_pt2e / 32 calibration samples / convert_pt2e → torch.export →
to_edge_transform_and_lower(XnnpackPartitioner) → to_executorch → write. edgekit does that plus what the bare script
does not: verification against eager on 32 held-out samples, reference vectors, what `edgekit explain` needs
(the ETRecord's instruction → module map and per-module fidelity in PT2E's simulation; a third column builds with
`--no-explain`), the manifest (program metadata read back, deflated size), and the atomic package write. Each side runs in a fresh process (imports timed apart), alternating, and the
medians of the rounds are reported with each side's stage times.

    .venv/bin/python benchmarks/build_overhead.py [--rounds 3] [--models mobilenet_v2,resnet18]
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CALIB = 32

BARE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
from executorch.exir import to_edge_transform_and_lower
sys.path.insert(0, sys.argv[1])
from benchmarks import realsize
t = {"imports": time.perf_counter() - t0}
s = time.perf_counter()
model, example = realsize.MODELS[sys.argv[2]]()
calib = torch.from_numpy(np.load(sys.argv[3])["x"])
t["load"] = time.perf_counter() - s; s = time.perf_counter()
ep = torch.export.export(model, example)
t["export"] = time.perf_counter() - s; s = time.perf_counter()
q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
prepared = prepare_pt2e(ep.module(), q)
with torch.no_grad():
    for i in range(len(calib)):
        prepared(calib[i:i + 1])
converted = convert_pt2e(prepared)
ep = torch.export.export(converted, example)
t["quantize"] = time.perf_counter() - s; s = time.perf_counter()
et = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
t["lower"] = time.perf_counter() - s; s = time.perf_counter()
open(sys.argv[4], "wb").write(et.buffer)
t["package"] = time.perf_counter() - s
t["total"] = time.perf_counter() - t0 - t["imports"]
print(json.dumps(t))
"""

EDGEKIT = r"""
import json, sys, time
t0 = time.perf_counter()
import edgekit
from edgekit._noise import import_stack
import_stack()
imports = time.perf_counter() - t0
sys.path.insert(0, sys.argv[1])
res = edgekit.build(f"{sys.argv[1]}/benchmarks/realsize.py:{sys.argv[2]}", "xnnpack-int8", calibration=sys.argv[3],
                    out=sys.argv[4], force=True, verify_samples=32, explain=sys.argv[5] == "explain")
t = dict(res.manifest.timings_s)
t["imports"] = imports
t["total_wall"] = time.perf_counter() - t0 - imports
print(json.dumps(t))
"""


def run(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise SystemExit(f"failed: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="mobilenet_v2,resnet18")
    args = ap.parse_args()
    lines = [
        f"# build wall time: edgekit build -t xnnpack-int8 vs a bare ExecuTorch script, {CALIB} calibration samples, "
        f"1x3x224x224; median of {args.rounds} alternating rounds, fresh process each (imports apart)"
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        np.savez(tmp / "calib.npz", x=np.random.default_rng(1).standard_normal((CALIB, 3, 224, 224)).astype(np.float32))
        for name in args.models.split(","):
            bare, ek, plain = [], [], []
            for _ in range(args.rounds):
                bare.append(run(BARE, str(ROOT), name, str(tmp / "calib.npz"), str(tmp / "bare.pte")))
                ek.append(run(EDGEKIT, str(ROOT), name, str(tmp / "calib.npz"), str(tmp / "pkg"), "explain"))
                plain.append(run(EDGEKIT, str(ROOT), name, str(tmp / "calib.npz"), str(tmp / "pkg"), "no-explain"))
            med = {k: statistics.median(r[k] for r in bare) for k in bare[0]}
            mek = {k: statistics.median(r[k] for r in ek) for k in ek[0]}
            mpl = {k: statistics.median(r[k] for r in plain) for k in plain[0]}
            stages = ["load", "export", "quantize", "lower", "verify", "package"]
            lines.append(
                f"\n{name}: bare {med['total']:.1f} s vs edgekit {mek['total_wall']:.1f} s → "
                f"{mek['total_wall'] / med['total']:.2f}×; edgekit --no-explain {mpl['total_wall']:.1f} s → "
                f"{mpl['total_wall'] / med['total']:.2f}× (imports: bare {med['imports']:.1f} s, edgekit "
                f"{mek['imports']:.1f} s)"
            )
            lines.append(f"  {'stage':<10}{'bare s':>8}{'edgekit s':>11}{'--no-explain s':>16}")
            for st in stages:
                lines.append(f"  {st:<10}{med.get(st, 0.0):>8.2f}{mek.get(st, 0.0):>11.2f}{mpl.get(st, 0.0):>16.2f}")
            print("\n".join(lines[-9:]), flush=True)
    text = "\n".join(lines)
    (HERE / "results" / "build_overhead.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
