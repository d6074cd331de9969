"""The measurer measured: edgekit profile's p50 vs a bare execute() loop on the same .pte and threads.

For each engine the reference is the bare loop in the same kind of process:
  * native engine  vs a bare C++ loop (benchmarks/bare_loop.cpp, compiled against the same libraries);
  * python engine  vs a bare Python loop over executorch.runtime's Method.execute() in this process.
Rounds are interleaved (A B A B ...) so drift hits both sides; the figure reported is the median over
rounds of each side's p50. Target: overhead <= 3% on a model of ~1 ms or more. On a trivial model
(Linear 4x4) the p50 itself is the per-call cost; the difference to the bare loop is the harness's share.

    .venv/bin/python benchmarks/harness_overhead.py [--rounds 5] [--runs 300]
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
sys.path.insert(0, str(HERE.parent))

import edgekit  # noqa: E402
from edgekit.runner.native import compile_command, find_compiler  # noqa: E402


def build_models(tmp: Path) -> dict[str, Path]:
    out = {}
    for name in ("residual_cnn", "trivial"):
        res = edgekit.build(f"{HERE / 'models.py'}:{name}", "xnnpack-fp32", out=tmp / name, force=True)
        out[name] = res.pte_path
    return out


def bare_cpp(tmp: Path) -> Path:
    exe = tmp / "bare_loop"
    cmd = compile_command(find_compiler(), exe)
    cmd[cmd.index(next(c for c in cmd if c.endswith("runner.cpp")))] = str(HERE / "bare_loop.cpp")
    subprocess.run(cmd, check=True)
    return exe


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def bare_python(pte: Path, warmup: int, runs: int, threads: int) -> float:
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(str(pte)).load_method("forward")
    import torch

    meta = method.metadata
    n_inputs = meta.num_inputs() if callable(meta.num_inputs) else meta.num_inputs
    inputs = [torch.zeros(list(meta.input_tensor_meta(i).sizes())) for i in range(n_inputs)]
    for _ in range(warmup):
        method.execute(inputs)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        method.execute(inputs)
        samples.append((time.perf_counter() - t) * 1e3)
    return p50(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models = build_models(tmp)
        exe = bare_cpp(tmp)
        rows = []
        for name, pte in models.items():
            sides: dict[str, list[float]] = {
                "bare C++": [],
                "edgekit native": [],
                "bare Python": [],
                "edgekit python": [],
            }
            for _ in range(args.rounds):
                out = subprocess.run(
                    [str(exe), str(pte), str(args.warmup), str(args.runs), str(args.threads)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                sides["bare C++"].append(p50(json.loads(out)))
                for engine in ("native", "python"):
                    prof = edgekit.profile(
                        pte, engine=engine, runs=args.runs, warmup=args.warmup, warmup_seconds=0.0, threads=args.threads
                    )
                    sides[f"edgekit {engine}"].append(prof.latency_ms.p50)
                sides["bare Python"].append(bare_python(pte, args.warmup, args.runs, args.threads))
            med = {k: statistics.median(v) for k, v in sides.items()}
            rows.append((name, med))
    from edgekit.machine import machine_facts

    facts = machine_facts()
    print(
        f"# harness overhead — {facts['cpu_model']}, {facts['cores_logical']} cores, executorch {facts['executorch']}, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds × {args.runs} runs; medians of p50 (ms)"
    )
    print(f"{'model':<14}{'bare C++':>11}{'native':>11}{'overhead':>10}{'bare Py':>11}{'python':>11}{'overhead':>10}")
    for name, m in rows:
        on = m["edgekit native"] / m["bare C++"] - 1
        op = m["edgekit python"] / m["bare Python"] - 1
        print(
            f"{name:<14}{m['bare C++']:>11.4f}{m['edgekit native']:>11.4f}{on:>+10.1%}{m['bare Python']:>11.4f}"
            f"{m['edgekit python']:>11.4f}{op:>+10.1%}"
        )
    trivial = dict(rows)["trivial"]
    print(
        f"per-call cost on the trivial model: native engine {trivial['edgekit native'] * 1e3:.2f} µs "
        f"(bare C++ {trivial['bare C++'] * 1e3:.2f} µs, difference {(trivial['edgekit native'] - trivial['bare C++']) * 1e3:+.2f} µs); "
        f"python engine {trivial['edgekit python'] * 1e3:.2f} µs (bare Python {trivial['bare Python'] * 1e3:.2f} µs, "
        f"difference {(trivial['edgekit python'] - trivial['bare Python']) * 1e3:+.2f} µs)"
    )
    big = dict(rows)["residual_cnn"]
    worst = max(abs(big["edgekit native"] / big["bare C++"] - 1), abs(big["edgekit python"] / big["bare Python"] - 1))
    print(f"target: overhead <= 3% on the ~1 ms+ model: {'MET' if worst <= 0.03 else 'NOT MET'} (worst {worst:.1%})")


if __name__ == "__main__":
    main()
