"""Why the 8da4w program's prefill gets slower with a second thread (llm_vs_llamacpp.txt: 801 → 565 tokens/s on
SmolLM2-135M here) while llama.cpp's speeds up: ExecuTorch's ETDump of a 128-token prefill at 1 and 2 threads, each
operator's median per prefill, side by side. Both thread counts run in one process, alternating rounds, on the package
`benchmarks/peers/llm_vs_llamacpp.py --work DIR` built.

    .venv/bin/python benchmarks/llm_prefill_threads.py DIR [--rounds 3] [--prefills 8]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_prefill_threads.txt"
PP = 128


def prefill_ops(pte: Path, threads: int, prefills: int) -> tuple[dict, float]:
    """(kind, operator) → median ms per prefill over ETDump, and the median wall ms of a prefill call."""
    import torch
    from executorch.extension.pybindings import portable_lib

    from edgekit.profile.ops import op_table

    portable_lib._unsafe_reset_threadpool(threads)
    ptd = pte.with_suffix(".ptd")  # the tied table, stored once beside the program (since 2026-12-07)
    m = portable_lib._load_for_executorch(
        str(pte), data_path=str(ptd) if ptd.is_file() else None, enable_etdump=True, debug_buffer_size=0
    )
    tokens, pos = torch.tensor([list(range(100, 100 + PP))]), torch.tensor([0])
    m.run_method("forward", (tokens, pos))  # warm-up: first-call costs (XNNPACK's weight packing)
    walls = []
    for _ in range(prefills):
        t0 = time.perf_counter()
        m.run_method("forward", (tokens, pos))
        walls.append((time.perf_counter() - t0) * 1000)
    with tempfile.TemporaryDirectory() as d:
        m.write_etdump_result_to_file(str(Path(d) / "prefill.etdp"))
        table = op_table(Path(d) / "prefill.etdp")
    by: dict = collections.defaultdict(float)
    for r in table["ops"]:
        if r["kind"] == "delegate_call" or r["name"] == "OPERATOR_CALL":
            continue  # wrappers: their time is the rows inside them
        by[(r["kind"], r["name"].split(" #")[0])] += r["p50_ms"]
    return dict(by), statistics.median(walls)


def main() -> None:
    import executorch.kernels.quantized  # noqa: F401  (the quantized embedding kernels the program calls)

    from edgekit.machine import machine_facts
    from edgekit.pipeline.decoder import load_custom_ops

    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prefills", type=int, default=8)
    args = ap.parse_args()
    load_custom_ops()
    pte = Path(args.work) / "xnnpack-llm-8da4w" / "model.pte"
    samples: dict[int, list] = {1: [], 2: []}
    for r in range(args.rounds):
        for threads in (1, 2) if r % 2 == 0 else (2, 1):
            samples[threads].append(prefill_ops(pte, threads, args.prefills))
            print(f"round {r + 1}, {threads} thread(s): {samples[threads][-1][1]:.1f} ms", flush=True)
    ops = {t: {k: statistics.median(s[0].get(k, 0.0) for s in v) for k in v[0][0]} for t, v in samples.items()}
    wall = {t: statistics.median(s[1] for s in v) for t, v in samples.items()}
    facts = machine_facts()
    rows = sorted(ops[1], key=lambda k: -max(ops[1][k], ops[2].get(k, 0.0)))
    lines = [
        f"# 8da4w SmolLM2-135M program, prefill of {PP} tokens in one call; ETDump per operator, median ms per prefill "
        f"({args.prefills} prefills per round, {args.rounds} alternating rounds, medians)",
        f"# {facts.get('cpu_model', '?')}, {facts.get('cores_logical', '?')} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"prefill call: {wall[1]:.1f} ms at 1 thread ({PP / wall[1] * 1000:.0f} tokens/s), {wall[2]:.1f} ms at 2 "
        f"({PP / wall[2] * 1000:.0f} tokens/s)",
        "",
        f"  {'operator':<58}{'where':>10}{'1 thread':>10}{'2 threads':>11}{'2 / 1':>8}",
    ]
    for kind, name in rows[:12]:
        a, b = ops[1][(kind, name)], ops[2].get((kind, name), 0.0)
        where = "XNNPACK" if kind == "delegate_op" else "portable"
        lines.append(f"  {name[:58]:<58}{where:>10}{a:>10.2f}{b:>11.2f}{b / a if a else 0:>7.2f}×")
    rest = rows[12:]
    a, b = sum(ops[1][k] for k in rest), sum(ops[2].get(k, 0.0) for k in rest)
    lines.append(f"  {'everything else':<58}{'':>10}{a:>10.2f}{b:>11.2f}{b / a if a else 0:>7.2f}×")
    t1, t2 = sum(ops[1].values()), sum(ops[2].values())
    lines.append(f"  {'all operators':<58}{'':>10}{t1:>10.2f}{t2:>11.2f}{t2 / t1:>7.2f}×")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
