"""Why `edgekit tune` skips fp16 on a CPU without fp16 arithmetic: MobileNetV2 @224 as fp16, fp32 and int8 programs,
profiled side by side (native engine, interleaved rounds, medians of p50) on this machine.

XNNPACK runs an fp16 program on any CPU; without native fp16 arithmetic (x86-64 without AVX512-FP16, Arm without
asimdhp) it converts to fp32 around every operator. This measures what that costs here.

    .venv/bin/python benchmarks/fp16_x86.py [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import edgekit  # noqa: E402
from edgekit.machine import machine_facts  # noqa: E402


def main() -> None:
    from edgekit.tune.recipes import native_fp16

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "fp16_x86.txt"))
    args = ap.parse_args()
    f = machine_facts()
    has, why = native_fp16()
    spec = f"{HERE / 'realsize.py'}:mobilenet_v2"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rng = np.random.default_rng(1)
        np.savez(tmp / "calib.npz", x=rng.standard_normal((32, 3, 224, 224)).astype(np.float32))
        builds = {}
        for target in ("xnnpack-fp32", "xnnpack-fp16", "xnnpack-int8"):
            extra = {"calibration": tmp / "calib.npz"} if target == "xnnpack-int8" else {}
            builds[target] = edgekit.build(spec, target, out=tmp / target, **extra)
        p50s: dict[str, list[float]] = {t: [] for t in builds}
        for _ in range(args.rounds):
            for t, res in builds.items():
                prof = edgekit.profile(res.out_dir, runs=args.runs, threads=args.threads)
                p50s[t].append(prof.latency_ms.p50)
    med = {t: statistics.median(v) for t, v in p50s.items()}
    lines = [
        f"# fp16 on this CPU — {f['cpu_model']}, {why} (native fp16: {has}); MobileNetV2 1.0 @224, native engine, "
        f"{args.threads} thread(s), {args.runs} runs, median p50 of {args.rounds} interleaved rounds",
        "",
        f"{'program':<14}{'p50 ms':>9}  {'vs fp32':>8}  {'SQNR vs your model':>19}  per round",
    ]
    for t, res in builds.items():
        sq = res.manifest.verify.sqnr_db
        lines.append(
            f"{t:<14}{med[t]:>9.3f}  {med[t] / med['xnnpack-fp32']:>7.2f}×  "
            f"{'exact' if sq is None else f'{sq:.1f} dB':>19}  {', '.join(f'{v:.3f}' for v in p50s[t])}"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
