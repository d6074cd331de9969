"""The manifest's ``generation`` section (:mod:`edgekit.manifest`): a generation program's facts (its family, cache,
tokenizer, recipe) and its fidelity against the user's model (llama.cpp's KL-divergence protocol: mean KLD, same top-1,
perplexity ratio; greedy tokens as a diagnostic; the answers check's reference)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._contract import Contract
from .perplexity_protocol import ProtocolFidelity
from .token_fidelity import TokenReference


@dataclass(frozen=True)
class GreedyCheck(Contract):
    """Greedy decoding from one prompt: the user's model and the program, token by token."""

    prompt_tokens: int
    new_tokens: int
    matching: int  # positions where both chose the same token
    prefix: int  # tokens before the first difference
    eager_text: str
    program_text: str
    prompt_ids: list[int] = field(default_factory=list)
    program_ids: list[int] = field(default_factory=list)  # what a profile checks first, here or on a device


@dataclass(frozen=True)
class GenerationSection(Contract):
    """A generation program's facts and its fidelity (``manifest.generation``)."""

    family: str  # the attention layout (llama, phi3, gpt2)
    architecture: str  # the transformers class
    max_seq_len: int  # tokens per forward call (a longer prompt is prefilled in chunks)
    max_context_len: int  # the KV cache: prompt and generated tokens together
    vocab_size: int
    bos_id: int | None
    eos_ids: list[int]
    cache: str  # how the KV cache is kept
    tokenizer_files: dict[str, str]  # file in the package → sha256
    # fp32 | 8da8w | 8da4w (group g, HQQ scales), output layer 8da8w | 8da4w (group g, the weights' own 4-bit grid
    # in n of m linears[, HQQ scales in the rest]), output layer 8da8w
    linears: str
    embeddings: str  # none | int8 | int4
    eval_data: str
    eval_tokens: int  # next-token predictions scored (llama.cpp's protocol: the second half of each chunk)
    perplexity_eager: float  # the user's model (fp32, as handed in), on those positions
    perplexity_program: float
    ppl_increase_pct: float
    next_token_agreement: float  # same top-1: share of scored positions where the program's top token is the model's
    greedy: GreedyCheck
    source: dict[str, str | int | list[str] | None] | None = None  # gguf: the file, its sha256 and quantization type
    notes: list[str] = field(default_factory=list)
    model_context_len: int | None = None  # the longest cache the model allows: its positions, or its sliding window
    # the answers check's tokens and the user's model's logits for them (packages before it: None, checked against
    # greedy.program_ids instead)
    reference: TokenReference | None = None
    # llama-perplexity --kl-divergence's figures against the user's model (packages before it: None; their figures
    # above were teacher-forced over every position of max_seq_len windows)
    fidelity: ProtocolFidelity | None = None
