"""A decoder-only language model as a generation program: ExecuTorch's text-runner convention with a static KV cache.

``forward(tokens: int64[1, T], input_pos: int64[1]) -> logits: float32[1, V]`` — one method serves prefill (T tokens
at once, from position ``input_pos``) and decode (T = 1); the logits are the last position's. The key/value cache
lives inside the program as mutable buffers (``[1, C, Hkv, D]`` per layer) written by ExecuTorch's ``llama::update_cache``
and read by ``llama::custom_sdpa`` (causal, grouped-query attention inside the op): the cache is updated in place,
where an ``index_copy_`` cache copies whole buffers every step and attends over the full context under a mask.

The wrapper reuses the Hugging Face model's own modules (projections, MLPs, norms, rotary embedding), so the weights
and every numeric choice stay the model's; only attention and the cache are replaced. Families: the Llama layout
(Llama, SmolLM, Mistral, Qwen2, Qwen3: separate q/k/v projections, rotary, RMSNorm), Phi-3 (fused qkv) and GPT-2
(learned positions, fused ``c_attn``, LayerNorm).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..causal import FAMILIES

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def load_custom_ops() -> None:
    """Register ExecuTorch's ``llama::`` ops (their export-time kernels and their runtime kernels, one library)."""
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401


def _linears_from_conv1d(model: torch.nn.Module) -> None:
    """GPT-2's projections are transformers' ``Conv1D`` (``x @ W + b``, W stored in × out): the same map as an
    ``nn.Linear`` with W transposed. Swapped in place, so quantization (which takes ``nn.Linear``) reaches them."""
    from torch import nn

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "Conv1D":
                n_in, n_out = child.weight.shape
                lin = nn.Linear(n_in, n_out, bias=child.bias is not None)
                lin.weight = nn.Parameter(child.weight.detach().t().contiguous(), requires_grad=False)
                if child.bias is not None:
                    lin.bias = nn.Parameter(child.bias.detach().clone(), requires_grad=False)
                setattr(parent, name, lin)


def make_decoder(hf_model: PreTrainedModel, max_context_len: int) -> torch.nn.Module:
    """The text-runner-convention module around ``hf_model`` (a ``...ForCausalLM``), its cache ``max_context_len``."""
    import torch
    from torch import nn

    load_custom_ops()
    cfg = hf_model.config
    family = FAMILIES[cfg.model_type]
    if family == "gpt2":
        _linears_from_conv1d(hf_model)

    class StaticKVDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.family = family
            self.C = max_context_len
            if family == "gpt2":
                base = hf_model.transformer
                self.H = self.Hkv = cfg.n_head
                self.D = cfg.n_embd // cfg.n_head
                self.embed_tokens, self.wpe, self.layers, self.norm = base.wte, base.wpe, base.h, base.ln_f
            else:
                base = hf_model.model
                self.H = cfg.num_attention_heads
                self.Hkv = getattr(cfg, "num_key_value_heads", None) or self.H
                self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
                self.embed_tokens, self.layers, self.norm = base.embed_tokens, base.layers, base.norm
                self.rotary_emb = base.rotary_emb
                self._rotate = sys.modules[type(self.layers[0].self_attn).__module__].apply_rotary_pos_emb
            self.lm_head = hf_model.lm_head
            if family != "gpt2":
                # RMSNorm's mean as a linear layer of 1/n weights, and rotate_half as a ±1 permutation matrix: XNNPACK
                # takes both, where its mean wants 4-D inputs and the half-slices have dynamic shapes, so each
                # norm and each rotation used to end a delegated partition (SmolLM2-135M: 123 partitions → fewer,
                # and lowering time goes with the partition count)
                width = cfg.hidden_size
                self.register_buffer("mean_hidden", torch.full((1, width), 1.0 / width), persistent=False)
                self.register_buffer("mean_head", torch.full((1, self.D), 1.0 / self.D), persistent=False)
                half = self.D // 2
                rot = torch.zeros(self.D, self.D)
                rot[torch.arange(half), torch.arange(half) + half] = -1.0
                rot[torch.arange(half) + half, torch.arange(half)] = 1.0
                self.register_buffer("rotate_half", rot, persistent=False)
            for i in range(len(self.layers)):
                self.register_buffer(f"k_cache_{i}", torch.zeros(1, self.C, self.Hkv, self.D), persistent=False)
                self.register_buffer(f"v_cache_{i}", torch.zeros(1, self.C, self.Hkv, self.D), persistent=False)

        def _norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
            """``norm(x)``; an RMSNorm computed with its mean as a linear layer (the same formula and weights)."""
            eps = getattr(norm, "variance_epsilon", None)
            if eps is None or not type(norm).__name__.endswith("RMSNorm") or x.dtype != torch.float32:
                return norm(x)
            mean = self.mean_hidden if x.shape[-1] == self.mean_hidden.shape[-1] else self.mean_head
            return norm.weight * (x * torch.rsqrt(torch.nn.functional.linear(x * x, mean) + eps))

        def _rope(
            self, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """Rotary embedding on ``[1, T, H, D]`` (cos/sin ``[1, T, 1, D]``), rotate_half as a matrix product."""
            if self.family != "llama" or cos.shape[-1] != self.D:
                return self._rotate(q, k, cos.squeeze(2), sin.squeeze(2), unsqueeze_dim=2)
            linear = torch.nn.functional.linear
            return q * cos + linear(q, self.rotate_half) * sin, k * cos + linear(k, self.rotate_half) * sin

        def _qkv(self, layer: nn.Module, x: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if self.family == "gpt2":
                q, k, v = layer.attn.c_attn(x).split(self.H * self.D, dim=2)
            elif self.family == "phi3":
                a = layer.self_attn
                qkv = a.qkv_proj(x)
                q, k, v = qkv.split([self.H * self.D, self.Hkv * self.D, self.Hkv * self.D], dim=2)
            else:
                a = layer.self_attn
                q, k, v = a.q_proj(x), a.k_proj(x), a.v_proj(x)
            # -1, not the symbolic T: XNNPACK takes a reshape with one inferred dimension, not a symbolic one, so these
            # views stay inside the delegated partitions instead of ending them
            q, k, v = q.view(1, -1, self.H, self.D), k.view(1, -1, self.Hkv, self.D), v.view(1, -1, self.Hkv, self.D)
            if self.family == "llama" and hasattr(layer.self_attn, "q_norm"):  # Qwen3: RMSNorm on q and k per head
                q, k = self._norm(layer.self_attn.q_norm, q), self._norm(layer.self_attn.k_norm, k)
            return q, k, v

        def _attention(
            self,
            i: int,
            layer: nn.Module,
            x: torch.Tensor,
            rope: tuple[torch.Tensor, torch.Tensor] | None,
            start_pos: int,
            T: int,
        ) -> torch.Tensor:
            q, k, v = self._qkv(layer, x, T)
            if rope is not None:
                q, k = self._rope(q, k, *rope)  # [1, T, H, D]: seq at dim 1, as the ops want
            kc, vc = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
            torch.ops.llama.update_cache(k, kc, start_pos)
            torch.ops.llama.update_cache(v, vc, start_pos)
            y = torch.ops.llama.custom_sdpa(q, kc, vc, start_pos, None, 0.0, True).reshape(1, -1, self.H * self.D)
            out = layer.attn.c_proj if self.family == "gpt2" else layer.self_attn.o_proj
            return out(y)

        def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
            T = tokens.shape[1]
            start_pos = input_pos[0].item()
            torch._check_is_size(start_pos)
            torch._check(start_pos + T <= self.C)
            positions = (torch.arange(T) + start_pos).unsqueeze(0)
            h = self.embed_tokens(tokens)
            rope = None
            if self.family == "gpt2":
                h = h + self.wpe(positions)
            else:
                cos, sin = self.rotary_emb(h, positions)
                rope = (cos.unsqueeze(2), sin.unsqueeze(2))  # once, not in every layer
            for i, layer in enumerate(self.layers):
                if self.family == "gpt2":
                    h = h + self._attention(i, layer, layer.ln_1(h), None, start_pos, T)
                    h = h + layer.mlp(layer.ln_2(h))
                else:
                    h = h + self._attention(i, layer, self._norm(layer.input_layernorm, h), rope, start_pos, T)
                    h = h + layer.mlp(self._norm(layer.post_attention_layernorm, h))
            return self.lm_head(self._norm(self.norm, h[:, -1, :]))

    return StaticKVDecoder().eval()
