"""The A/B tool: one build with every upstream patch on, against the same build with some switched off
(``EDGEKIT_UPSTREAM_OFF``, :mod:`edgekit.upstream`), each in a fresh process (what every ``edgekit build`` from the
command line is), interleaved and alternating which goes first, on this machine, in one run.

Reported per arm: the medians of the process's wall time and of each build stage, and whether the program is byte for
byte the same (a speed patch that changes the program fails the run). Results: a table and a typed JSON document
(machine, versions, commit, every sample) under ``benchmarks/results/``.

    .venv/bin/python benchmarks/ab.py --patch cia-walk-once --model toy_models:small_cnn --input 1x1x8x8 \\
        --target xnnpack-int8 --rounds 6 --name cia_walk_small_cnn
    .venv/bin/python benchmarks/ab.py --patch shapes-only-quant-ops --model gguf:SmolLM2.gguf \\
        --task text-generation --target xnnpack-llm-8da4w --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from edgekit.machine import commit_label  # noqa: E402


def build_once(args: argparse.Namespace, off: str, out: Path) -> dict:
    """One ``edgekit build`` in a fresh process with ``off`` switched off: its wall time and manifest figures."""
    cmd = [sys.executable, "-m", "edgekit", "build", args.model, "-t", args.target, "-o", str(out), "--force", "--json"]
    for spec in args.input or []:
        cmd += ["--input", spec]
    if args.calibration:
        cmd += ["--calibration", args.calibration]
    if args.task:
        cmd += ["--task", args.task]
    env = {**os.environ, "EDGEKIT_UPSTREAM_OFF": off, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'benchmarks'}"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"the build with {off or 'nothing'} off failed: {r.stderr.strip()[-400:]}")
    m = json.loads(r.stdout)
    data = m["program"].get("data") or {}
    return {"wall_s": wall, "stages_s": m["timings_s"], "sha256": m["program"]["sha256"] + data.get("sha256", "")}


def main() -> None:
    from edgekit import upstream
    from edgekit.machine import machine_facts

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patch", action="append", required=True, help="a patch to switch off (repeat for more arms)")
    ap.add_argument("--together", action="store_true", help="one arm with all the --patch names off together")
    ap.add_argument("--model", required=True)
    ap.add_argument("--target", default="xnnpack-int8")
    ap.add_argument("--input", action="append")
    ap.add_argument("--calibration")
    ap.add_argument("--task")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--name", help="result file stem (default: ab_<patches>)")
    args = ap.parse_args()
    for name in args.patch:
        upstream.patch(name)  # an unknown name: the list of patches
    arms = {"all on": ""}
    if args.together:
        arms[" + ".join(args.patch) + " off"] = ",".join(args.patch)
    else:
        arms |= {f"{n} off": n for n in args.patch}
    samples: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory(prefix="edgekit-ab-") as d:
        for r in range(
            args.rounds + 1
        ):  # the first round warms the caches (bytecode, the native runner) and is dropped
            order = list(arms) if r % 2 == 0 else list(reversed(arms))
            for arm in order:
                got = build_once(args, arms[arm], Path(d) / "pkg")
                if r:
                    samples[arm].append(got)
            print(f"round {r}/{args.rounds}", flush=True)
    stages = sorted({k for rows in samples.values() for x in rows for k in x["stages_s"]} - {"total"})
    f, commit = machine_facts(), commit_label(ROOT)
    lines = [
        f"# A/B of upstream patches: {args.model}, target {args.target}{', task ' + args.task if args.task else ''}; "
        f"each build a fresh `edgekit build` process, {args.rounds} interleaved rounds, medians",
        f"# {f['cpu_model']}, {os.cpu_count()} cores; torch {f['torch']}, executorch {f['executorch']}; edgekit "
        f"{commit}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{'arm':<44}{'process s':>10}" + "".join(f"{s:>10}" for s in stages) + "   same program",
    ]
    base = {x["sha256"] for x in samples["all on"]}
    failed = []
    for arm, rows in samples.items():
        same = {x["sha256"] for x in rows} == base and len(base) == 1
        medians = [statistics.median(x["stages_s"].get(key, 0.0) for x in rows) for key in stages]
        lines.append(
            f"{arm:<44}{statistics.median(x['wall_s'] for x in rows):>10.2f}"
            + "".join(f"{m:>10.2f}" for m in medians)
            + f"   {'yes' if same else 'NO'}"
        )
        if not same and any(upstream.patch(n).kind == "speed" for n in arms[arm].split(",") if n):
            failed.append(arm)
    stem = args.name or "ab_" + "_".join(n.replace("-", "_") for n in args.patch)
    out = ROOT / "benchmarks" / "results" / stem
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    document = {
        "schema_version": 1,
        "model": args.model,
        "target": args.target,
        "task": args.task,
        "rounds": args.rounds,
        "machine": f,
        "commit": commit,
        "arms": {a: {"off": arms[a], "samples": samples[a]} for a in arms},
    }
    out.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
    print("\n".join(lines))
    if failed:
        raise SystemExit(f"a speed patch changed the program: {', '.join(failed)}")


if __name__ == "__main__":
    main()
