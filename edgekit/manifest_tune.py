"""The manifest's ``tune`` section (:mod:`edgekit.manifest`): every recipe ``edgekit tune`` tried, what it measured,
its fate, and why the chosen one won."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._contract import Contract


class CandidateStatus(enum.StrEnum):
    """The fate of a candidate `edgekit tune` tried."""

    PENDING = "pending"  # not judged yet
    CHOSEN = "chosen"
    WITHIN = "beaten"  # within the budget, and beaten by the chosen one
    OVER = "over"  # outside the budget (the reason says by how much)
    FAILED = "failed"  # the build or the measurement failed (the reason is its error)
    SKIPPED = "skipped"  # not built (the reason says why: no fp16 arithmetic, the time budget ran out)


@dataclass(frozen=True)
class TuneCandidate(Contract):
    """One recipe `edgekit tune` tried, with what was measured and its fate."""

    name: str
    recipe: dict[str, str | int | float | list[str] | None]  # scheme, fp32_layers, prune ratio (decoders: linears …)
    status: CandidateStatus
    reason: str
    size_bytes: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    peak_rss_mb: float | None = None
    accuracy_drop: float | None = None  # this and the two below: the program against the user's model (the budget's)
    sqnr_db: float | None = None
    cosine_min: float | None = None
    build_s: float | None = None
    cached: bool = False
    lowering_sqnr_db: float | None = (
        None  # pruned candidates: the program against the pruned model (did lowering work?)
    )
    perplexity: float | None = None  # generation candidates: the program's over the eval text (llama.cpp's protocol)
    ppl_increase_pct: float | None = None  # ... over the user's model's (the budget's figure)
    decode_tokens_per_s: float | None = None  # ... the objective (p50_ms is then a decode step's)
    kld_mean: float | None = None  # generation candidates: mean KL(your model ‖ program), llama.cpp's protocol
    same_top1: float | None = None  # ... and the share of positions with your model's top token


@dataclass(frozen=True)
class TuneSection(Contract):
    objective: str  # p50 | size | peak_rss
    budget: dict[str, float]  # max_accuracy_drop or min_sqnr_db (older packages: min_sqnr)
    threads: int
    candidates: list[TuneCandidate]
    decision: str  # why the chosen one won, in one sentence
    fidelity: str | None = (
        None  # the chosen program's budget figures and what they were measured against (the user's model)
    )
    mann_whitney_p: float | None = None  # the two best programs' re-measured latency samples (two-sided), when compared
