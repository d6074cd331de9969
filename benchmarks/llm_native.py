"""A generation program in both of edgekit's engines, side by side on this machine: the Python worker (ExecuTorch's
runtime with ExecuTorch's own llama:: kernels, which link libtorch) and the native runner (C++, no Python; the same
runtime libraries, XNNPACK and quantized kernels, with edgekit's llama::update_cache / custom_sdpa from
edgekit/runner/llm_ops.cpp: what `--device` runs on a board). The same program, prompt and greedy steps; rounds
interleaved (engine and thread count alternate within each round), medians over every round.

    .venv/bin/python benchmarks/llm_native.py PACKAGE [ROUNDS]

PACKAGE: a generation package, e.g. the SmolLM2-135M 8da4w one `benchmarks/peers/llm_vs_llamacpp.py --work DIR` builds.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_native.txt"
PROMPT, GEN = 128, 128


def main() -> None:
    from edgekit import read_manifest
    from edgekit.profile.generation import profile_generation

    pkg = Path(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    m = read_manifest(pkg)
    runs: dict[tuple[str, int], list] = {}
    for r in range(rounds):
        for threads in (1, 2):
            for engine in ("python", "native") if r % 2 == 0 else ("native", "python"):
                t0 = time.perf_counter()
                p = profile_generation(
                    pkg, prompt_len=PROMPT, gen_len=GEN, runs=1, warmup=1, threads=threads, engine=engine
                )
                runs.setdefault((engine, threads), []).append(p)
                print(f"round {r + 1}: {engine} {threads} thread(s): decode {p.decode_tokens_per_s:.1f} t/s, "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    g = m.generation
    lines = [
        f"# {m.model.spec.rsplit('/', 1)[-1]}, {m.target['name']} ({g.linears}; {g.embeddings} embedding table), "
        f"{m.program.size_bytes / 2**20:.1f} MiB program, sha256 {m.program.sha256[:12]}; prompt {PROMPT} tokens, "
        f"{GEN} generated; {rounds} interleaved rounds, medians; {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"{'engine':<8}{'threads':>8}{'prefill t/s':>13}{'decode t/s':>12}{'token ms p90':>14}{'load ms':>9}"
        f"{'baseline MiB':>14}{'peak MiB':>10}{'check':>8}",
    ]
    decode = {}
    for threads in (1, 2):
        for engine in ("python", "native"):
            ps = runs[(engine, threads)]
            steps = [s for p in ps for s in p.decode_samples_ms]
            pre = statistics.median(s for p in ps for s in p.prefill_samples_ms)
            decode[(engine, threads)] = 1000 / statistics.median(steps)
            p90 = statistics.quantiles(steps, n=10)[-1]
            checks = {f"{p.check.matching}/{p.check.tokens}" for p in ps}
            lines.append(
                f"{engine:<8}{threads:>8}{PROMPT / (pre / 1000):>13.1f}{decode[(engine, threads)]:>12.1f}{p90:>14.2f}"
                f"{statistics.median(p.load_ms for p in ps):>9.1f}{ps[0].baseline_rss_mb:>14.1f}"
                f"{max(p.peak_rss_mb for p in ps):>10.1f}{'/'.join(sorted(checks)):>8}"
            )
    lines.append("")
    for threads in (1, 2):
        lines.append(
            f"decode, native / python at {threads} thread(s): "
            f"{decode[('native', threads)] / decode[('python', threads)]:.2f}×"
        )
    lines.append(
        "(check: top tokens equal to the build's over its greedy steps; python: ExecuTorch's llama:: kernels, native: "
        "edgekit's llm_ops.cpp; peak RSS of the measured process)"
    )
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
