"""The user's model's side of a generation build: the eval text's tokens, the limits the model sets (its context, its
sliding window), and what it answers — teacher-forced logits over the eval text, greedy tokens, and the answers
check's logits (:mod:`edgekit.token_fidelity`) — taken before the model is quantized in place."""

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

#: what verify reads without ``--eval``: plain English prose written for edgekit (no copyright, no training set)
SAMPLE_TEXT = (
    "The harbour town woke slowly on winter mornings. Fishing boats came back before the light, and the men who "
    "sailed them carried their catch up the stone steps to the market, where the stalls opened at seven. By eight "
    "the bakery had sold most of its bread, and the children were walking to school along the sea wall, counting "
    "the gulls and arguing about which of them was the largest. The schoolmaster, a patient man with a grey beard, "
    "taught arithmetic in the morning and history after lunch. He liked to begin each lesson with a question that "
    "had no easy answer: why do tides rise twice a day, how did people cross the sea before there were maps, what "
    "makes a town decide to build a lighthouse? The children did not always answer, but they listened, and some of "
    "them went home and asked their parents the same questions over dinner. In spring the town changed. Visitors "
    "arrived on the afternoon train with suitcases and cameras, the cafes put tables outside, and the harbour filled "
    "with small boats painted in bright colours. The fishermen complained about the noise, yet they sold more fish "
    "than at any other time of year, and the market stayed open until late in the evening. When autumn came the "
    "visitors left, the tables were carried back inside, and the town returned to its own rhythm, quiet and steady, "
    "measured by the boats, the bread and the bells of the old church on the hill."
)


def read_eval_tokens(
    source: str | Path | None, tokenizer: PreTrainedTokenizerBase, limit: int
) -> tuple[list[int], str]:
    """The eval text's token ids (at most ``limit``) and where they came from."""
    if source is None:
        text, what = SAMPLE_TEXT, "built-in sample text (pass --eval FILE.txt for your own)"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the eval text {path}: {exc}", "pass a UTF-8 .txt file") from None
        what = str(path)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise DataError(
            f"the eval text {what} holds {len(ids)} token(s): perplexity needs at least 2",
            "pass a .txt file with a few paragraphs of text like your users' prompts",
        )
    return ids[:limit], what + (f" (its first {limit} of {len(ids)} tokens)" if len(ids) > limit else "")


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


def windows(tokens: list[int], max_seq_len: int) -> list[list[int]]:
    """``tokens`` cut into windows of ``max_seq_len`` (the last may be shorter), each with a token to predict."""
    return [
        tokens[i : i + max_seq_len] for i in range(0, len(tokens), max_seq_len) if len(tokens[i : i + max_seq_len]) > 1
    ]


@dataclass(frozen=True)
class ReferenceResult:
    """What the user's model (fp32, as handed in) answers, taken before it is quantized in place: what verify compares
    the program with, and what the package keeps for the answers check."""

    logits: torch.Tensor  # teacher-forced, float32 [scored positions, vocab]: every window's, in order
    greedy: list[int]  # the tokens greedy decoding adds to ``prompt``
    prompt: list[int]  # the greedy check's prompt (the start of the eval text)
    check_tokens: list[int]  # the answers check's tokens (edgekit.token_fidelity.check_sequence)
    check_prompt: int  # ... how many of them are its prompt
    check_logits: np.ndarray  # ... and the model's logits at its steps, float32 [steps, vocab]


def model_references(model: PreTrainedModel, tokens: list[int], max_seq_len: int) -> ReferenceResult:
    """The user's model (fp32, as handed in): teacher-forced logits at every position, greedy tokens, and the answers
    check's tokens and logits (:func:`check_references`)."""
    import torch

    logits = []
    with torch.no_grad():
        for w in windows(tokens, max_seq_len):
            logits.append(model(torch.tensor([w]), use_cache=False).logits[0, :-1].float())
        prompt = tokens[: min(GREEDY_PROMPT_TOKENS, max_seq_len // 2)]  # a call's tokens: at most max_seq_len
        seq = list(prompt)
        for _ in range(min(GREEDY_NEW_TOKENS, max_seq_len - len(prompt))):
            seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    teacher_forced = torch.cat(logits)
    check_tokens, check_prompt, check_logits = check_references(tokens, max_seq_len, teacher_forced)
    return ReferenceResult(teacher_forced, seq[len(prompt) :], prompt, check_tokens, check_prompt, check_logits)


def check_references(tokens: list[int], max_seq_len: int, logits: torch.Tensor) -> tuple[list[int], int, np.ndarray]:
    """The answers check's tokens (the start of the eval text), its prompt length, and the user's model's logits at
    its steps: rows of the teacher-forced ``logits`` (the first window starts at token 0 and holds them all)."""
    from ...token_fidelity import check_sequence

    seq, prompt = check_sequence(tokens, max_seq_len)
    return seq, prompt, logits[prompt - 1 : len(seq) - 1].numpy()
