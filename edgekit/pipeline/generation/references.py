"""The user's model's side of a generation build: the eval text's tokens and llama.cpp's chunks of them, the limits the
model sets (its context, its sliding window), and what it answers — its logits at each chunk's scored positions
(:mod:`edgekit.perplexity_protocol`), greedy tokens, and the answers check's logits (:mod:`edgekit.token_fidelity`) —
taken before the model is quantized in place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import DataError, UsageError
from ...targets import EmbeddingQuant, QuantScheme, Target

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from ...causal import CausalLM

GREEDY_PROMPT_TOKENS = 16
GREEDY_NEW_TOKENS = 32

#: what verify reads without ``--eval``: plain English prose written for edgekit (no copyright, no training set), long
#: enough for llama.cpp's protocol at ``-c 512`` (4 chunks: 2,048 tokens; 3,211 with SmolLM2's tokenizer)
SAMPLE_TEXT_FILE = Path(__file__).with_name("sample_text.txt")


@dataclass(frozen=True)
class EvalText:
    """The eval text as verify reads it: its tokens (the greedy and answers checks start from them) and llama.cpp's
    chunks of them (:mod:`edgekit.perplexity_protocol`)."""

    ids: list[int]  # the text's tokens, no special tokens
    chunks: list[list[int]]  # n_ctx tokens each, a BOS first where the tokenizer adds one
    n_ctx: int
    source: str  # where the text came from, and how much of it is read


def read_eval_text(
    source: str | Path | None, tokenizer: PreTrainedTokenizerBase, max_context: int, eval_chunks: int | None = None
) -> EvalText:
    """The eval text's tokens, cut as ``llama-perplexity`` cuts them for a program whose cache holds ``max_context``
    tokens: ``eval_chunks`` whole chunks (``--chunks``), else :func:`~edgekit.perplexity_protocol.default_chunks` or as
    many as the text holds, never fewer than :data:`~edgekit.perplexity_protocol.MIN_CHUNKS`.

    Raises:
        UsageError: ``eval_chunks`` that is not an integer ≥ MIN_CHUNKS.
        DataError: an unreadable text, or one too short for the chunks.
    """
    from ...perplexity_protocol import MIN_CHUNKS, chunks, default_chunks, protocol_ctx

    n_ctx = protocol_ctx(max_context)
    if eval_chunks is not None and (
        not isinstance(eval_chunks, int) or isinstance(eval_chunks, bool) or eval_chunks < MIN_CHUNKS
    ):
        raise UsageError(
            f"--eval-chunks must be an integer ≥ {MIN_CHUNKS} (llama.cpp's protocol), got {eval_chunks!r}",
            f"e.g. --eval-chunks 8, or leave it out ({MIN_CHUNKS} or more, as the text allows)",
        )
    if source is None:
        text = SAMPLE_TEXT_FILE.read_text(encoding="utf-8")
        what = "the built-in sample text (--eval FILE.txt for your own)"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the eval text {path}: {exc}", "pass a UTF-8 .txt file") from None
        what = str(path)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = _added_bos(tokenizer)
    seq = ([bos] if bos is not None else []) + ids
    wanted = eval_chunks if eval_chunks is not None else MIN_CHUNKS
    if len(seq) < wanted * n_ctx:
        raise DataError(
            f"{what} holds {len(seq)} token(s); llama.cpp's protocol scores {wanted} chunks of {n_ctx} tokens (the "
            f"program's context, at most 512): {wanted * n_ctx} are needed",
            (
                f"pass a .txt file of at least {wanted * n_ctx} tokens of text like your users' prompts"
                if source is not None
                else "pass --eval FILE.txt with a longer held-out text"
            )
            + (
                f", or --eval-chunks {len(seq) // n_ctx} or fewer"
                if eval_chunks and len(seq) // n_ctx >= MIN_CHUNKS
                else ""
            ),
        )
    n = eval_chunks if eval_chunks is not None else min(default_chunks(n_ctx), len(seq) // n_ctx)
    cut = chunks(seq[: n * n_ctx], n_ctx, bos)
    read = n * n_ctx
    return EvalText(
        ids=ids,
        chunks=cut,
        n_ctx=n_ctx,
        source=what if read == len(seq) else f"{what}: its first {read} of {len(seq)} tokens",
    )


def _added_bos(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The BOS id when the tokenizer puts one first by itself (llama.cpp's ``add_bos``), else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    first = tokenizer("a")["input_ids"][:1]
    return int(bos) if first == [bos] else None


def check_shapes(model: PreTrainedModel, tgt: Target, max_seq_len: int) -> None:
    """A group size that divides every quantized width and a --max-seq-len the model's positions allow, or UsageError."""
    from torch import nn

    g = tgt.quantize.group_size
    if tgt.quantize.scheme is QuantScheme.INT8_DYNAMIC_INT4_WEIGHT or tgt.quantize.embeddings is EmbeddingQuant.INT4:
        widths = {m.in_features for m in model.modules() if isinstance(m, nn.Linear)}
        widths |= {m.weight.shape[0] for m in model.modules() if type(m).__name__ == "Conv1D"}  # GPT-2's projections
        bad = sorted(
            {w for w in widths if w % g}
            | {m.embedding_dim for m in model.modules() if isinstance(m, nn.Embedding) and m.embedding_dim % g}
        )
        if bad:
            raise UsageError(
                f"--group-size {g} does not divide the model's layer width(s) {', '.join(map(str, bad))}",
                "pick a group size that divides them (32, 64, 128 …)",
            )
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_seq_len > limit:
        raise UsageError(
            f"--max-seq-len {max_seq_len} is longer than the model's {limit} positions", f"use at most {limit}"
        )
    window = sliding_window(model.config)
    if window and max_seq_len > window:
        raise UsageError(
            f"--max-seq-len {max_seq_len} is longer than the {window}-token sliding window this model attends within, "
            "and the program's attention (llama::custom_sdpa) sees the whole cache: past it, it would not be your "
            "model",
            f"use --max-seq-len {window} or less",
        )


def model_context_len(config: PretrainedConfig) -> int | None:
    """The longest KV cache that is still the model: its positions, or its sliding window if shorter."""
    limits = [getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)]
    limits.append(sliding_window(config))
    limits = [int(n) for n in limits if isinstance(n, int) and n > 0]
    return min(limits) if limits else None


def sliding_window(config: PretrainedConfig) -> int | None:
    """The attention window of a model that uses one in any layer (Mistral; Qwen2/3 with use_sliding_window), else
    None."""
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None:
        return window if "sliding_attention" in types else None
    return window if getattr(config, "use_sliding_window", True) else None


@dataclass(frozen=True)
class SpecialIds:
    """The model's BOS id (None: it has none) and its EOS ids, as the manifest and the program's methods record them."""

    bos_id: int | None
    eos_ids: list[int]


def special_ids(lm: CausalLM) -> SpecialIds:
    """The model's BOS id and its EOS ids (the config's, else the tokenizer's), as the manifest records them."""
    tok, cfg = lm.tokenizer, lm.model.config
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else tok.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
    bos = cfg.bos_token_id if cfg.bos_token_id is not None else tok.bos_token_id
    return SpecialIds(None if bos is None else int(bos), eos_ids)


@dataclass(frozen=True)
class ReferenceResult:
    """What the user's model (fp32, as handed in) answers, taken before it is quantized in place: what verify compares
    the program with, and what the package keeps for the answers check."""

    scored: list[torch.Tensor]  # per protocol chunk, its logits at the scored positions, float32 [positions, vocab]
    greedy: list[int]  # the tokens greedy decoding adds to ``prompt``
    prompt: list[int]  # the greedy check's prompt (the start of the eval text)
    check_tokens: list[int]  # the answers check's tokens (edgekit.token_fidelity.check_sequence)
    check_prompt: int  # ... how many of them are its prompt
    check_logits: np.ndarray  # ... and the model's logits at its steps, float32 [steps, vocab]


def model_references(model: PreTrainedModel, text: EvalText, max_seq_len: int) -> ReferenceResult:
    """The user's model (fp32, as handed in): its logits at each chunk's scored positions (llama.cpp's protocol, a
    chunk in one forward), greedy tokens, and the answers check's tokens and logits."""
    import torch

    from ...perplexity_protocol import first_scored
    from ...token_fidelity import check_sequence

    tokens = text.ids
    with torch.no_grad():
        scored = [
            model(torch.tensor([c]), use_cache=False).logits[0, first_scored(len(c)) : -1].float().clone()
            for c in text.chunks
        ]
        prompt = tokens[: min(GREEDY_PROMPT_TOKENS, max_seq_len // 2)]  # a call's tokens: at most max_seq_len
        seq = list(prompt)
        for _ in range(min(GREEDY_NEW_TOKENS, max_seq_len - len(prompt))):
            seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
        check, n = check_sequence(tokens, max_seq_len)
        check_logits = model(torch.tensor([check]), use_cache=False).logits[0, n - 1 : len(check) - 1].float()
    return ReferenceResult(scored, seq[len(prompt) :], prompt, check, n, check_logits.numpy())
