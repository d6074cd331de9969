"""Where a decode step's attention goes: ExecuTorch's `llama::custom_sdpa` alone, at SmolLM2-135M's shapes.

The side-by-side with llama.cpp (benchmarks/peers/llm_vs_llamacpp.py) finds custom_sdpa at ~30% of an 8da4w decode step.
This isolates it: a program of 30 layers of `llama::update_cache` (k and v) + `llama::custom_sdpa` over a `[1, 512, 3,
64]` fp32 cache with 9 query heads (SmolLM2-135M: grouped-query attention, head dim 64), nothing else, run by the same
runtime edgekit's generation worker uses (ExecuTorch's pybindings with the custom ops' kernels). For each cache fill it
reports microseconds per call: a step's time less that of the same step without the op (the cache writes and the
Python call around it), divided by 30; medians of `--rounds` interleaved rounds of 200 single-token steps. Also the
bytes of K and V one call must read (counted from the shapes) and the bandwidth that implies, at 1 and 2 threads; with
`perf` installed, the symbols a 1-thread run spends its samples in, attached after the cache fill (so the table says
*why*, not only how long).

    .venv/bin/python benchmarks/llm_sdpa.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS, HEADS, KV_HEADS, HEAD_DIM, CONTEXT = 30, 9, 3, 64, 512
FILLS = (64, 128, 192, 256, 384)
STEPS = 200


def export(path: Path, with_sdpa: bool = True) -> None:
    """The 30-layer step; ``with_sdpa=False``: the same cache writes without the attention (the baseline)."""
    import torch
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  (registers llama::*)

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i in range(LAYERS):
                self.register_buffer(f"k{i}", torch.zeros(1, CONTEXT, KV_HEADS, HEAD_DIM), persistent=False)
                self.register_buffer(f"v{i}", torch.zeros(1, CONTEXT, KV_HEADS, HEAD_DIM), persistent=False)

        def forward(self, q, k, v, pos):
            start = pos[0].item()
            torch._check_is_size(start)
            torch._check(start < CONTEXT)
            out = q
            for i in range(LAYERS):
                kc, vc = getattr(self, f"k{i}"), getattr(self, f"v{i}")
                torch.ops.llama.update_cache(k, kc, start)
                torch.ops.llama.update_cache(v, vc, start)
                if with_sdpa:
                    out = torch.ops.llama.custom_sdpa(out, kc, vc, start, None, 0.0, True)
            return out if with_sdpa else out * 1.0

    example = (*_step_inputs(), torch.tensor([5]))
    ep = torch.export.export(Attention(), example, strict=False)
    program = to_edge_transform_and_lower(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    path.write_bytes(program.to_executorch().buffer)


def _step_inputs():
    import torch

    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, 1, HEADS, HEAD_DIM, generator=g),
        torch.randn(1, 1, KV_HEADS, HEAD_DIM, generator=g),
        torch.randn(1, 1, KV_HEADS, HEAD_DIM, generator=g),
    )


def measure(pte: Path, threads: int, rounds: int, only: int | None = None, spin: float = 0.0) -> dict:
    """Microseconds per step (30 layers) at each fill."""
    import torch
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  (the kernels, for the runtime too)
    from executorch.extension.pybindings import portable_lib as pl

    torch.set_num_threads(1)  # as the generation worker: torch's own pool (MKL's BLAS) on one thread, always
    pl._unsafe_reset_threadpool(threads)  # the runtime's pool, which custom_sdpa splits its heads over
    m = pl._load_for_executorch(str(pte))
    q, k, v = _step_inputs()
    for pos in range(max(FILLS) + 1):  # fill the cache as a generation would
        m.forward((q, k, v, torch.tensor([pos])))
    if spin:  # for perf: one fill, for `spin` seconds, after saying it is ready (perf attaches then)
        Path(f"{pte}.ready").touch()
        end = time.time() + spin
        while time.time() < end:
            m.forward((q, k, v, torch.tensor([only])))
        return {}
    out = {}
    for fill in FILLS:
        per_round = []
        for _ in range(rounds):
            pos = torch.tensor([fill])
            t = time.perf_counter()
            for _ in range(STEPS):
                m.forward((q, k, v, pos))
            per_round.append((time.perf_counter() - t) / STEPS * 1e6)
        out[fill] = statistics.median(per_round)
    return out


def perf_symbols(pte: Path, fill: int) -> list[tuple[str, float]] | None:
    """The symbols a 1-thread run at ``fill`` spends its samples in (perf record), or None without perf."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data, ready = Path(tmp) / "perf.data", Path(f"{pte}.ready")
        ready.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, __file__, "--spin", str(fill), "--pte", str(pte)])
        while not ready.exists() and child.poll() is None:  # imports, load and cache fill are not sampled
            time.sleep(0.1)
        rec = subprocess.run(
            [perf, "record", "-q", "-p", str(child.pid), "-o", str(data), "--", "sleep", "4"], capture_output=True
        )
        child.wait()
        if rec.returncode != 0:
            return None
        rep = subprocess.run(
            [perf, "report", "-i", str(data), "--stdio", "--sort", "symbol", "--percent-limit", "2"],
            capture_output=True,
            text=True,
        )
    rows = []
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("%") and parts[1].startswith("["):
            rows.append((" ".join(w for w in parts[2:] if w != "-")[:70], float(parts[0].rstrip("%"))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--spin", type=int, help=argparse.SUPPRESS)  # perf's subject: run one fill for 6 s
    ap.add_argument("--pte", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "llm_sdpa.txt")
    a = ap.parse_args()
    if a.spin is not None:
        measure(a.pte, 1, 1, only=a.spin, spin=6.0)
        return
    import platform

    import executorch.version

    with tempfile.TemporaryDirectory() as tmp:
        pte, base = Path(tmp) / "sdpa.pte", Path(tmp) / "base.pte"
        export(pte)
        export(base, with_sdpa=False)
        times = {}
        for _round in range(a.rounds):  # interleaved: one round of each program and thread count at a time
            for threads in (1, 2):
                step, rest = measure(pte, threads, 1), measure(base, threads, 1)
                for fill in FILLS:  # the op's share of a step: the step less the same step without it
                    times.setdefault((threads, fill), []).append((step[fill] - rest[fill]) / LAYERS)
                    times.setdefault(("base", threads, fill), []).append(rest[fill])
        symbols = perf_symbols(pte, 256)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    shapes = f"{HEADS} query heads, {KV_HEADS} kv heads, head dim {HEAD_DIM}, fp32 cache of {CONTEXT}"
    lines = [
        f"# llama::custom_sdpa at SmolLM2-135M's shapes ({shapes}), {LAYERS} layers per step, one token per step",
        f"# {cpu}, {os.cpu_count()} cores, {platform.machine()}; executorch {executorch.version.__version__}",
        f"# µs/call: (step - the same step without custom_sdpa) / {LAYERS}, medians of {a.rounds} interleaved rounds of "
        f"{STEPS} steps; `python benchmarks/llm_sdpa.py --rounds {a.rounds}`",
        "# K+V KiB: what one call must read (K and V once each; GB/s counts that)",
        "",
        f"{'cache filled':>12}  {'K+V KiB':>7}  {'1 thread µs/call':>16}  {'GB/s':>5}  {'2 threads µs/call':>17}  "
        f"{'GB/s':>5}  {'step without it, 1 thr':>22}",
    ]
    for fill in FILLS:
        kib = 2 * (fill + 1) * KV_HEADS * HEAD_DIM * 4 / 1024  # the call at position `fill` attends over fill + 1
        one, two = (statistics.median(times[(t, fill)]) for t in (1, 2))
        rest = statistics.median(times[("base", 1, fill)])
        lines.append(
            f"{fill:>12}  {kib:>7.0f}  {one:>16.1f}  {kib * 1024 / one / 1e3:>5.1f}  {two:>17.1f}  "
            f"{kib * 1024 / two / 1e3:>5.1f}  {rest:>19.0f} µs"
        )
    lines.append("")
    if symbols is None:
        lines.append("perf: not installed (or not permitted): no symbol breakdown")
    else:
        lines.append(
            "where a 1-thread run of the step at 256 positions spends its time (perf record attached for 4 s after "
            "the cache fill; symbols with >= 2% of the samples; the Python loop that calls the program takes the "
            "interpreter's and the collector's share):"
        )
        lines += [f"  {share:5.1f}%  {sym}" for sym, share in symbols]
    text = "\n".join(lines) + "\n"
    tmp = a.out.with_name(f".{a.out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, a.out)
    print(text, end="")


if __name__ == "__main__":
    main()
