"""A generation program against the model handed in, the way ``llama-perplexity --kl-divergence`` measures a quantized
model against its base: the figures llama.cpp's users compare recipes and runtimes by. Reading this module needs numpy
only.

**The protocol** (llama.cpp ``tools/perplexity``): the eval text's tokens (after a BOS when the tokenizer adds one) are
cut into chunks of ``n_ctx`` tokens — only whole chunks, at least :data:`MIN_CHUNKS` — each evaluated from an empty
cache; where the tokenizer adds a BOS, each chunk's first token is the BOS. Only the second half of each chunk is
scored: the logits at positions ``n_ctx/2 … n_ctx−2``, each predicting the next token (``n_ctx − 1 − n_ctx/2``
predictions per chunk), so every scored prediction has at least half a context behind it. ``n_ctx`` is
``min(512, the program's context)`` (the published reference points use ``-c 512``).

**The figures**, per scored position, in float64: KL(base ‖ program) in nats; whether both put the same token first;
each one's negative log-likelihood of the true next token; Δp, the program's probability of that token minus the
base's. Reported as llama.cpp reports them: mean KLD ± its standard error, median, 99th percentile and maximum; same
top-1 ± its standard error; PPL(base), PPL(program) and PPL(program)/PPL(base) ± its standard error (from the
per-position difference of log-likelihoods, which is what llama.cpp's covariance form computes); mean Δp and RMS Δp.

One difference, stated: llama.cpp sums KL only over base tokens with log p > −16 (it stores the base's log
probabilities in 16 bits); this sums every token (the omitted mass is below e⁻¹⁶ per token).

Published reference points (tools/perplexity README, PR #6936; wikitext-2, ``-c 512``): Llama-3-8B Q8_0 mean KLD 0.0014,
same top-1 97.7%; Q4_K_M 0.031, 91.9%; Q4_0 0.072.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._contract import Contract

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

#: llama-perplexity's context for the published figures (``-c 512``); a program with a shorter cache uses its own
N_CTX = 512
#: chunks at least: a text shorter than this many chunks is refused (4 × 255 scored predictions at ``-c 512``)
MIN_CHUNKS = 4


#: scored predictions a build aims for (4 chunks at ``-c 512``): a program with a short cache scores more, shorter chunks
#: (as many as the text holds), so that its figures are not read off a dozen positions
TARGET_POSITIONS = MIN_CHUNKS * (N_CTX - 1 - N_CTX // 2)


def default_chunks(n_ctx: int) -> int:
    """The chunks a build scores unless told: at least :data:`MIN_CHUNKS`, enough for :data:`TARGET_POSITIONS`."""
    per_chunk = max(1, n_ctx - 1 - n_ctx // 2)
    return max(MIN_CHUNKS, math.ceil(TARGET_POSITIONS / per_chunk))


def protocol_ctx(max_context: int) -> int:
    """The chunk length for a program whose cache holds ``max_context`` tokens."""
    return min(N_CTX, int(max_context))


def tokens_needed(n_ctx: int, chunks: int = MIN_CHUNKS) -> int:
    return n_ctx * chunks


def first_scored(n_ctx: int) -> int:
    """The first scored position of a chunk (its logits predict the token after it)."""
    return n_ctx // 2


def chunks(tokens: list[int], n_ctx: int, bos_id: int | None = None) -> list[list[int]]:
    """``tokens`` (the text's, a BOS first where the tokenizer adds one) cut into whole chunks of ``n_ctx``, each
    chunk's first token the BOS when ``bos_id`` is given (llama.cpp's ``add_bos``)."""
    out = [list(tokens[i : i + n_ctx]) for i in range(0, len(tokens) - n_ctx + 1, n_ctx)]
    if bos_id is not None:
        for c in out:
            c[0] = bos_id
    return out


def scored_targets(chunk: list[int]) -> list[int]:
    """The tokens a chunk's scored logits predict."""
    return list(chunk[first_scored(len(chunk)) + 1 :])


@dataclass(frozen=True)
class ProtocolFidelity(Contract):
    """``llama-perplexity --kl-divergence``'s statistics: a program's next-token distributions against the base's
    (the model handed in), over the scored positions."""

    n_ctx: int
    chunks: int
    positions: int  # scored predictions: chunks × (n_ctx − 1 − n_ctx/2)
    kld_mean: float  # nats: mean KL(base ‖ program)
    kld_se: float  # its standard error
    kld_median: float
    kld_p99: float
    kld_max: float
    same_top1: float  # share of positions where both put the same token first (llama.cpp's "same top p")
    same_top1_se: float
    ppl_base: float
    ppl: float
    ppl_ratio: float  # PPL(program) / PPL(base)
    ppl_ratio_se: float
    delta_p_mean: float  # mean of p_program(true token) − p_base(true token), as a share (×100: llama.cpp's %)
    delta_p_se: float
    delta_p_rms: float
    protocol: str = (
        "llama-perplexity --kl-divergence: whole chunks of n_ctx tokens from an empty cache, second half scored"
    )

    @property
    def ppl_increase_pct(self) -> float:
        return (self.ppl_ratio - 1) * 100

    def summary(self) -> str:
        """One line, in llama.cpp's words."""
        return (
            f"mean KLD {self.kld_mean:.4g} ± {self.kld_se:.2g} nats (99% {self.kld_p99:.3g}), same top-1 "
            f"{100 * self.same_top1:.1f} ± {100 * self.same_top1_se:.1f}%, PPL ratio {self.ppl_ratio:.4f} ± "
            f"{self.ppl_ratio_se:.4f} ({self.chunks} × {self.n_ctx} tokens, {self.positions} scored)"
        )


class ProtocolMeter:
    """Accumulates a chunk at a time (so no chunk's logits outlive it), then :meth:`result`."""

    def __init__(self, n_ctx: int):
        self.n_ctx = n_ctx
        self.chunks = 0
        self._kld: list[np.ndarray] = []
        self._same: list[np.ndarray] = []
        self._nll_base: list[np.ndarray] = []
        self._nll: list[np.ndarray] = []

    def add(self, base: ArrayLike, other: ArrayLike, targets: list[int]) -> None:
        """One chunk: the base's and the program's logits at its scored positions (``[positions, vocab]``) and the
        tokens they predict.

        Raises:
            ValueError: shapes that do not match, or logits that are not finite.
        """
        import numpy as np

        from .token_fidelity import kl_of_log_probs, log_softmax

        base, other = np.asarray(base), np.asarray(other)
        if base.shape != other.shape or base.ndim != 2 or base.shape[0] != len(targets):
            raise ValueError(f"logits of shapes {base.shape} and {other.shape} for {len(targets)} targets")
        if not (np.isfinite(base).all() and np.isfinite(other).all()):
            raise ValueError("logits that are not finite (NaN or inf) have no KL divergence")
        lb, lo = log_softmax(base), log_softmax(other)  # once: the divergence and the likelihoods both read them
        rows, t = np.arange(len(targets)), np.asarray(targets)
        self._kld.append(kl_of_log_probs(lb, lo))
        self._same.append(base.argmax(-1) == other.argmax(-1))
        self._nll_base.append(-lb[rows, t])
        self._nll.append(-lo[rows, t])
        self.chunks += 1

    def result(self) -> ProtocolFidelity:
        """Raises: ValueError with nothing added."""
        import numpy as np

        if not self._kld:
            raise ValueError("no chunk was scored")
        kld = np.concatenate(self._kld)
        same = np.concatenate(self._same).astype(np.float64)
        nb, nq = np.concatenate(self._nll_base), np.concatenate(self._nll)
        n = len(kld)
        d = nq - nb  # ln(PPL(Q)/PPL(base)) per position
        dp = np.exp(-nq) - np.exp(-nb)
        ratio = math.exp(float(d.mean()))
        p = float(same.mean())
        return ProtocolFidelity(
            n_ctx=self.n_ctx,
            chunks=self.chunks,
            positions=n,
            kld_mean=float(kld.mean()),
            kld_se=_se(kld),
            kld_median=float(np.median(kld)),
            kld_p99=float(np.percentile(kld, 99)),
            kld_max=float(kld.max()),
            same_top1=p,
            same_top1_se=math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0,
            ppl_base=math.exp(float(nb.mean())),
            ppl=math.exp(float(nq.mean())),
            ppl_ratio=ratio,
            ppl_ratio_se=ratio * _se(d),
            delta_p_mean=float(dp.mean()),
            delta_p_se=_se(dp),
            delta_p_rms=float(np.sqrt((dp**2).mean())),
        )


def _se(x: np.ndarray) -> float:
    """The standard error of ``x``'s mean (llama.cpp's: √(var / (n − 1)))."""
    n = len(x)
    return float(math.sqrt(max(float(x.var()), 0.0) / (n - 1))) if n > 1 else 0.0
