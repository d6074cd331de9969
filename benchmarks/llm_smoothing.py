"""Would SmoothQuant-style scaling bring the quantized decoders' greedy tokens closer to the model handed in?

XNNPACK's int4 and int8 linears take int8 dynamic activations only (per token, asymmetric): no quantized linear with
fp32 activations is lowered by ExecuTorch's XNNPACK partitioner. The eager simulation (llm_recipes.txt) says those
activations alone cost 8da8w its greedy agreement (23/32 with 8-bit weights, 32/32 for the Q8_0 weights in fp32).
The usual remedy for activation outliers is SmoothQuant: divide each input channel of a linear by s and multiply the
weight's column by s, folding 1/s into what produced the input (the RMSNorm weight before q/k/v and gate/up, the rows
of up_proj before down_proj, the rows of v_proj before o_proj), exact in fp32; s = amax(x)^a / amax(w)^(1-a) from the
built-in sample text. With s constant over each group of 32 inputs the 4-bit grid a GGUF file's weights sit on is
kept (a group's steps and offsets just scale), so "grid" below is the shipped xnnpack-llm-8da4w recipe (grid kept,
8da8w output layer, int8 table) with smoothing in front. Greedy: 32 tokens after a 16-token prompt, equal to the model
handed in's position by position; H: the held-out text's prompt, S: the sample's.

    .venv/bin/python benchmarks/llm_smoothing.py
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "llm_smoothing.txt"
#: (recipe, SmoothQuant strengths a (None: no smoothing), inputs per smoothing scale)
RUNS = [("fp32", [None, 0.5], 32), ("8da8w", [None, 0.5, 0.8], 1), ("grid", [None, 0.5, 0.8, 1.0], 32)]


def input_ranges(model, x) -> dict:
    """The largest |input| of each channel of each linear over ``x``."""
    import torch
    from torch import nn

    stats, hooks = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):

            def hook(mod, inp, out, name=name):
                a = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0)
                stats[name] = torch.maximum(stats[name], a) if name in stats else a

            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(x, use_cache=False)
    for h in hooks:
        h.remove()
    return stats


def smooth(model, x, alpha: float, group: int) -> None:
    """Scale every decoder layer's linear inputs down by s and their weights' columns up by s (exact in fp32)."""
    import torch

    stats, cfg = input_ranges(model, x), model.config
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd, rep = cfg.hidden_size // nh, nh // nkv

    def scales(ax, aw):
        s = ax.clamp(min=1e-5) ** alpha / aw.clamp(min=1e-5) ** (1 - alpha)
        if group > 1:  # one scale per group of inputs: a 4-bit grid's steps and offsets scale with it
            s = s.reshape(-1, group).amax(1, keepdim=True).expand(-1, group).reshape(-1)
        return s / s.mean()

    def col_max(*weights):
        return torch.stack([w.abs().amax(0) for w in weights]).amax(0)

    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            at, mlp, p = layer.self_attn, layer.mlp, f"model.layers.{i}."
            s = scales(stats[p + "self_attn.q_proj"], col_max(at.q_proj.weight, at.k_proj.weight, at.v_proj.weight))
            layer.input_layernorm.weight.div_(s)
            for lin in (at.q_proj, at.k_proj, at.v_proj):
                lin.weight.mul_(s)
            s = scales(stats[p + "mlp.gate_proj"], col_max(mlp.gate_proj.weight, mlp.up_proj.weight))
            layer.post_attention_layernorm.weight.div_(s)
            for lin in (mlp.gate_proj, mlp.up_proj):
                lin.weight.mul_(s)
            s = scales(stats[p + "mlp.down_proj"], col_max(mlp.down_proj.weight))
            mlp.up_proj.weight.div_(s[:, None])
            mlp.down_proj.weight.mul_(s)
            # o_proj's input channel (head h, d) reads v_proj's row (h // rep, d): one scale per key-value row
            ax = stats[p + "self_attn.o_proj"].reshape(nkv, rep, hd).amax(1).reshape(-1)
            aw = at.o_proj.weight.abs().amax(0).reshape(nkv, rep, hd).amax(1).reshape(-1)
            s = scales(ax, aw)
            at.v_proj.weight.div_(s[:, None])
            at.o_proj.weight.mul_(s.reshape(nkv, 1, hd).expand(nkv, rep, hd).reshape(-1))


def main() -> None:
    import torch
    from torch import nn
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    from benchmarks.peers.llm_vs_llamacpp import heldout_text, smollm2_gguf
    from edgekit.causal import load_causal_lm
    from edgekit.pipeline.generation import GREEDY_NEW_TOKENS, GREEDY_PROMPT_TOKENS, SAMPLE_TEXT
    from edgekit.pipeline.grid import carry_int4_grids

    torch.set_num_threads(2)
    lm = load_causal_lm(f"gguf:{smollm2_gguf()}")
    with tempfile.TemporaryDirectory() as d:
        heldout = heldout_text(Path(d)).read_text()

    def tokens(text: str, n: int):
        return torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"][:n]])

    texts = {"held-out": tokens(heldout, 1024), "sample": tokens(SAMPLE_TEXT, 512)}

    def ppl(model, x) -> float:
        with torch.no_grad():
            logits = model(x, use_cache=False).logits[0, :-1]
        return math.exp(float(nn.functional.cross_entropy(logits.double(), x[0, 1:])))

    def greedy(model, x) -> list[int]:
        seq = x[0, :GREEDY_PROMPT_TOKENS].tolist()
        with torch.no_grad():
            for _ in range(GREEDY_NEW_TOKENS):
                seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
        return seq[GREEDY_PROMPT_TOKENS:]

    def figures(model) -> dict:
        return {k: (ppl(model, x), greedy(model, x)) for k, x in texts.items()}

    eager = figures(lm.model)
    int8 = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    table = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    lines, kept, linears = [], [], 0
    for recipe, alphas, group in RUNS:
        for alpha in alphas:
            model = copy.deepcopy(lm.model)  # the tied table untied: the output layer and the table quantized apart
            model.lm_head.weight = nn.Parameter(model.model.embed_tokens.weight.detach().clone(), requires_grad=False)
            if alpha is not None:
                smooth(model, texts["sample"], alpha, group)
            if recipe == "8da8w":
                quantize_(model, int8, lambda m, fqn: isinstance(m, nn.Linear))
            elif recipe == "grid":  # every linear but the output layer must still be on its grid after smoothing
                kept = carry_int4_grids(model, 32, {"lm_head"})
                linears = sum(type(m) is nn.Linear for m in lm.model.modules()) - 1
                assert len(kept) == linears, f"{len(kept)} of {linears} linears kept their grid"
                quantize_(model, int8, lambda m, fqn: isinstance(m, nn.Linear) and fqn == "lm_head")
                for e in model.modules():
                    if isinstance(e, nn.Embedding):
                        e.padding_idx = None
                quantize_(model, table, lambda m, fqn: isinstance(m, nn.Embedding))
            got = figures(model)
            name = f"{recipe}, " + (f"smoothed a={alpha}" if alpha is not None else "not smoothed")
            if recipe == "grid":
                name += f" ({len(kept)}/{linears})"
            row = f"{name:<34}"
            for k in texts:
                row += f"{got[k][0]:>9.2f}{got[k][0] / eager[k][0] - 1:>+8.1%}"
            same = [sum(a == b for a, b in zip(got[k][1], eager[k][1])) for k in texts]
            lines.append(row + f"   H {same[0]:>2}/32  S {same[1]:>2}/32")
            print(lines[-1], flush=True)
    OUT.write_text(
        "# SmoothQuant-style scaling before quantization, SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized), torchao's "
        "eager\n# simulation; held-out: "
        f"{texts['held-out'].shape[1]} tokens of Python 3.11 stdlib docstrings, sample: the build's built-in text\n"
        "# (also the calibration of s); grid: xnnpack-llm-8da4w's recipe (the file's 4-bit grid kept, s constant per "
        "group\n# of 32, 8da8w output layer, int8 table; (k/n): linears on their grid after smoothing); 8da8w: every linear, s per channel. greedy: tokens equal to "
        "the model\n# handed in's of 32 (H: after the held-out prompt, S: after the sample's)\n\n"
        f"{'variant':<34}{'held-out':>9}{'Δ':>8}{'sample':>9}{'Δ':>8}   greedy\n" + "\n".join(lines) + "\n"
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
