"""`edgekit explain` on real-size models (benchmarks/realsize.py), checked against what else measures the same things:

* ResNet-18 @224 int8: the slowest module by name and source line, and its share of the run beside the share the op
  breakdown (`edgekit profile --ops`, a separate run, the devtools Inspector's operator table) gives the same XNNPACK
  operators (three interleaved rounds, the median ratio);
* MobileNetV2 @224 int8: the layer that adds the most noise, and the program's SQNR against the model handed in with
  and without that layer kept in fp32 (`[quantize] fp32_layers`);
* both: the memory plan's planned total beside the program's own planned bytes, and the HTML page (rendered in
  headless Chromium by benchmarks/render_report.py when it is installed).

    .venv/bin/python benchmarks/explain_realsize.py [--runs 50] [--html-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def data(tmp: Path) -> tuple[Path, Path]:
    import numpy as np

    rng = np.random.default_rng(1)  # as tune_vs_ort: 32 calibration images, 16 held-out ones
    np.savez(tmp / "calib.npz", x=rng.standard_normal((32, 3, 224, 224)).astype(np.float32))
    np.savez(tmp / "held.npz", x=rng.standard_normal((16, 3, 224, 224)).astype(np.float32))
    return tmp / "calib.npz", tmp / "held.npz"


def main() -> None:
    import edgekit
    from edgekit.explain import explain, fidelity_line, html_page, sort_rows
    from edgekit.machine import machine_facts
    from edgekit.targets import load_target

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--html-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explain_realsize.txt"))
    args = ap.parse_args()
    f = machine_facts()
    lines = [
        f"# edgekit explain on real-size models — {f['cpu_model']}, 1 thread; torch {f['torch']}, executorch "
        f"{f['executorch']}; {args.runs} traced runs (ETDump, native runner); int8 per-channel, 32 calibration "
        "images, 16 held-out ones"
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        calib, held = data(tmp)
        spec = f"{ROOT / 'benchmarks' / 'realsize.py'}"
        for name in ("resnet18", "mobilenet_v2"):
            res = edgekit.build(f"{spec}:{name}", "xnnpack-int8", out=tmp / name, calibration=calib, eval=held)
            # three interleaved rounds of (explain, op breakdown): shares from separate runs on a noisy 2-core host
            rounds = []
            for _ in range(3):
                ex = explain(res.out_dir, runs=args.runs, threads=1)
                prof = edgekit.profile(res.out_dir, ops=True, ops_runs=args.runs, threads=1, runs=50)
                rounds.append((ex, [op for op in prof.ops["ops"] if op["kind"] == "delegate_op"]))
            m = res.manifest
            lines += [
                "",
                f"## {name} int8 (p50 {ex.method_p50_ms:.3f} ms over {ex.runs} traced runs, "
                f"{ex.untraced_p50_ms:.3f} ms untraced; SQNR against the model handed in "
                f"{m.verify.sqnr_db:.2f} dB)",
            ]
            slow = ex.slowest(3)
            lines.append("slowest modules:")
            lines += [
                f"  {r.module} ({r.cls}) {r.p50_ms:.3f} ms, {r.share:.1%} of the run, at {r.source}; {r.where}"
                for r in slow
            ]
            # the op breakdown of the same program, from separate runs: the same operators' share of the run
            ratios = []
            for rex, xnn in rounds:
                row = next(r for r in rex.rows if r.module == slow[0].module)
                breakdown = _matching_share(rex, row, xnn)
                ratios.append(row.share / breakdown)
                lines.append(
                    f"  round {len(ratios)}: op breakdown (edgekit profile --ops, shares of the mean run) for "
                    f"{row.module}'s operator(s) ({', '.join(row.operators)}): {breakdown:.1%}; explain (shares of the "
                    f"p50 run): {row.share:.1%}; ratio {ratios[-1]:.3f}"
                )
            med = statistics.median(ratios)
            lines.append(
                f"median ratio explain / op breakdown for {slow[0].module}: {med:.3f} "
                f"({'within' if abs(med - 1) <= 0.10 else 'OUTSIDE'} 10%)"
            )
            worst = ex.least_faithful(3)
            lines.append("least faithful layers (PT2E's simulation: the output SQNR with only that layer quantized):")
            lines += [f"  {fidelity_line(r)} (cumulative at its output {r.sqnr_db:.1f} dB)" for r in worst]
            kept = edgekit.build(
                f"{spec}:{name}",
                load_target("xnnpack-int8").replace(quantize__fp32_layers=(worst[0].module,)),
                out=tmp / f"{name}-kept",
                calibration=calib,
                eval=held,
            )
            lines.append(
                f"keeping {worst[0].module} in fp32: program SQNR against the model handed in "
                f"{m.verify.sqnr_db:.2f} → {kept.manifest.verify.sqnr_db:.2f} dB"
            )
            lines += [f"explain's note: {n}" for n in ex.notes]
            mem = ex.memory
            lines.append(
                f"memory plan: arenas {mem.arenas_bytes} B, planned total {mem.planned_bytes} B; the program's "
                f"planned bytes (manifest, read from the .pte) {m.program.planned_memory.planned_bytes} B: "
                f"{'EQUAL' if mem.planned_bytes == m.program.planned_memory.planned_bytes else 'DIFFERENT'}; "
                f"largest live set {mem.peak_live_bytes} B at instruction {mem.peak_step} of {mem.steps}; "
                f"measured peak RSS {mem.measured_peak_rss_mb:.1f} MiB"
            )
            # what a user sees: the CLI's tables, slowest first and least faithful first
            env = {**os.environ, "COLUMNS": "150", "NO_COLOR": "1"}
            cli_out = []
            for sort in ("time", "sqnr"):
                cmd = [
                    "edgekit",
                    "explain",
                    f"build/{name}-int8",
                    "--sort",
                    sort,
                    "--top",
                    "6",
                    "--runs",
                    str(args.runs),
                ]
                r = subprocess.run(
                    [sys.executable, "-m", "edgekit", cmd[1], str(res.out_dir), *cmd[3:], "-q"],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if r.returncode:
                    raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
                cli_out += [f"$ {' '.join(cmd)}", r.stdout.rstrip(), ""]
            Path(args.html_dir, f"explain_cli_{name}.txt").write_text("\n".join(cli_out), encoding="utf-8")
            page = Path(args.html_dir) / f"explain_{name}.html"
            page.write_text(html_page(ex, sort_rows(ex, "time")), encoding="utf-8")
            print("\n".join(lines), flush=True)
            shot = Path(args.html_dir) / f"explain_{name}.png"
            r = subprocess.run(
                [sys.executable, str(HERE / "render_report.py"), str(page), "--screenshot", str(shot)],
                capture_output=True,
                text=True,
            )
            lines.append(
                f"HTML: {page.name}, headless Chromium: {(r.stdout.strip() or r.stderr.strip()).splitlines()[-1]}"
            )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(lines[-1])


def _matching_share(ex, row, xnn: list[dict]) -> float:
    """The op breakdown's share of the operators explain charged to ``row`` (by name and instance number)."""
    names = set()
    for part in row.where.split(";"):
        names.add(part.strip().removeprefix("XNNPACK: "))
    # explain rolls instances up per module; the op table keeps "#k": match the instances explain attributed
    total = 0.0
    for inst in row.operators:
        total += next((op["share"] for op in xnn if op["name"] == inst), 0.0)
    if total:
        return total
    # without instance names, the largest instance of that operator kind stands for it (a module's one operator)
    cands = [op for op in xnn if re.sub(r" #\d+$", "", op["name"]) in names]
    return max(op["share"] for op in cands) if cands else float("nan")


if __name__ == "__main__":
    main()
