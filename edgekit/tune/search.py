"""``tune()``: build and measure recipes, keep the fastest (or smallest) program within the accuracy budget.

Order: the plain precisions (fp32, int8 per-channel, per-tensor, dynamic) → mixed precision when static int8 misses
the budget → structured pruning at a few ratios on the best precision so far → the two best re-measured in
interleaved rounds. Builds go through the executor (local pool or Dask) into the content-addressed build cache, and
each measurement is cached beside them, so an interrupted tune resumes where it stopped.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from .. import paths
from ..errors import BudgetError, UsageError
from ..manifest_tune import CandidateStatus, TuneCandidate
from ..targets import BudgetConfig, QuantScheme
from .recipes import PRUNE_RATIOS, Recipe, base_recipes, native_fp16

if TYPE_CHECKING:
    from ..builds import BuildCache, Built
    from ..manifest import Manifest

OBJECTIVES = ("p50", "size", "peak_rss")
ALPHA = 0.01


#: tune's budget is a target's budget (its fidelity part: ``max_accuracy_drop`` or ``min_sqnr_db``); one type for both
Budget = BudgetConfig


@dataclass(frozen=True)
class MeasureResult:
    """A candidate's latency as tune measured it: what ranks it, cached in the build cache (:meth:`to_dict`) per
    build, machine and settings."""

    p50: float  # ms (a generation program's: a decode step's)
    p90: float | None
    peak_rss_mb: float | None
    samples: list[float]  # what a re-measurement is compared with
    decode_tokens_per_s: float | None = None  # generation programs: the objective
    prefill_tokens_per_s: float | None = None

    def to_dict(self) -> dict[str, float | list[float] | None]:
        """As the cache stores it (the generation figures only for generation programs)."""
        out: dict[str, float | list[float] | None] = {"p50": self.p50, "p90": self.p90, "peak_rss_mb": self.peak_rss_mb}
        if self.decode_tokens_per_s is not None:
            out["decode_tokens_per_s"] = self.decode_tokens_per_s
            out["prefill_tokens_per_s"] = self.prefill_tokens_per_s
        out["samples"] = list(self.samples)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MeasureResult:
        """A cached measurement (the caller checked that it has its p50 and its samples)."""

        def number(value: object) -> float | None:
            return float(value) if isinstance(value, (int, float)) else None

        samples = data.get("samples")
        return cls(
            number(data.get("p50")) or 0.0,
            number(data.get("p90")),
            number(data.get("peak_rss_mb")),
            [float(x) for x in samples if isinstance(x, (int, float))] if isinstance(samples, list) else [],
            number(data.get("decode_tokens_per_s")),
            number(data.get("prefill_tokens_per_s")),
        )


@dataclass
class Tried:
    """One recipe's journey: built (or not), measured (or not), in or over budget."""

    recipe: Recipe
    status: CandidateStatus = CandidateStatus.PENDING
    reason: str = ""
    folder: Path | None = None
    manifest: Manifest | None = None
    build_s: float | None = None
    cached: bool = False
    profile: MeasureResult | None = None  # None: not measured

    def take(self, built: Built | str) -> None:
        """A finished build from the queue: its package (``Built``), or its error text."""
        if isinstance(built, str):
            self.status, self.reason = CandidateStatus.FAILED, built
            return
        self.folder, self.manifest, self.build_s, self.cached = (
            built.folder,
            built.manifest,
            built.seconds,
            built.cached,
        )

    @property
    def drop(self) -> float | None:
        acc = self.manifest.verify.accuracy if self.manifest else None
        return acc.drop if acc else None

    @property
    def sqnr(self) -> float | None:
        """SQNR of the program against the user's model (a pruned candidate's too: ``verify`` is always against it)."""
        return self.manifest.verify.sqnr_db if self.manifest else None

    @property
    def lowering_sqnr(self) -> float | None:
        low = self.manifest.verify.lowering if self.manifest else None
        return low.sqnr_db if low else None

    def record(self) -> TuneCandidate:
        m = self.manifest
        return TuneCandidate(
            name=self.recipe.name,
            recipe=self.recipe.to_dict(),
            status=self.status,
            reason=self.reason,
            size_bytes=m.program.size_bytes if m else None,
            p50_ms=self.profile.p50 if self.profile else None,
            p90_ms=self.profile.p90 if self.profile else None,
            peak_rss_mb=self.profile.peak_rss_mb if self.profile else None,
            accuracy_drop=self.drop,
            sqnr_db=self.sqnr,
            cosine_min=m.verify.cosine_min if m else None,
            build_s=self.build_s,
            cached=self.cached,
            lowering_sqnr_db=self.lowering_sqnr,
        )


@dataclass(frozen=True)
class TuneResult:
    """The chosen package: where it is, its manifest (with the ``tune`` section) and the search's notes."""

    out_dir: Path
    manifest: Manifest
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuneOptions:
    objective: str = "p50"
    threads: int = 1
    runs: int = 100
    rounds: int = 3
    time_budget_s: float | None = None
    cache: str | Path = paths.BUILD_CACHE
    executor: str | None = None
    prune_ratios: tuple[float, ...] = PRUNE_RATIOS
    finetune_epochs: int = 3
    precisions: tuple[
        QuantScheme, ...
    ] = ()  # the plain precisions to try; () = all of them (fp16 where the CPU has it)


def check_request(
    calibration: str | Path | None, eval_data: str | Path | None, budget: Budget, objective: str
) -> Budget:
    """The budget to use; refuses what tuning cannot do meaningfully.

    Raises:
        UsageError: no calibration data, an accuracy budget without --eval, or an unknown objective.
    """
    if calibration is None:
        raise UsageError(
            "edgekit tune needs --calibration DATA: int8 ranges from random inputs say nothing about "
            "your data, so every comparison would be meaningless",
            "pass a few dozen real input samples (.npz/.npy/.pt, a folder, or sentences for hf: models)",
        )
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if budget.max_accuracy_drop is not None and budget.min_sqnr_db is not None:
        raise UsageError("give --max-accuracy-drop or --min-sqnr, not both")
    if budget.max_accuracy_drop is not None and eval_data is None:
        raise UsageError("--max-accuracy-drop needs labelled --eval data", "pass --eval with labels, or use --min-sqnr")
    if budget.max_accuracy_drop is None and budget.min_sqnr_db is None:
        return Budget(min_sqnr_db=30.0)
    return budget


def measure(t: Tried, opts: TuneOptions, store: BuildCache, key: str) -> None:
    """Profile a built candidate with the native harness (cached in the build cache per build, machine and settings)."""
    from ..profile import profile

    cached = store.measurement(key)
    if isinstance(cached, dict) and isinstance(cached.get("samples"), list) and cached.get("p50") is not None:
        t.profile = MeasureResult.from_dict(cached)
        return
    r = profile(t.folder, runs=opts.runs, threads=opts.threads, warmup=10, warmup_seconds=0.1)
    t.profile = MeasureResult(r.latency_ms.p50, r.latency_ms.p90, r.memory.peak_rss_mb, list(r.samples_ms))
    store.put_measurement(key, t.profile.to_dict())


def rank_key(t: Tried, objective: str) -> tuple[float | None, float | None]:
    size = t.manifest.program.size_bytes
    p50 = t.profile.p50 if t.profile else 0.0
    if objective == "size":
        return (size, p50)
    if objective == "peak_rss":
        return (t.profile.peak_rss_mb if t.profile else 0.0, size)
    return (p50, size)


#: precisions whose objective is within this fraction of the best one count as tied when choosing what to prune
PRUNE_BASE_TIE = 0.03


def prune_base(within: list[Tried], objective: str) -> Tried:
    """The precision to prune (``within``: the candidates within the budget, best first): the best quantized one by
    the objective, except that among those within 3% of it the most faithful wins. Pruning spends accuracy, and a
    near-tie in speed is noise: on the digits CNN int8 per-tensor and per-channel both run in 0.0082 ms, and only the
    per-channel one keeps a 0.5 prune ratio within a 0.005 accuracy budget."""
    quantized = [t for t in within if t.recipe.scheme is not QuantScheme.NONE] or within
    bar = rank_key(quantized[0], objective)[0] * (1 + PRUNE_BASE_TIE)
    near = [t for t in quantized if rank_key(t, objective)[0] <= bar]
    return max(
        near, key=lambda t: (-(t.drop or 0.0), t.sqnr if t.sqnr is not None else -math.inf, -rank_key(t, objective)[0])
    )


def decide(
    best: Tried, second: Tried | None, opts: TuneOptions, remeasure: Callable[[Tried], list[float]]
) -> tuple[Tried, str, float | None]:
    """Chosen, why, and the Mann-Whitney p-value when two programs' latencies were compared.

    For ``p50``: both are re-measured in interleaved rounds; the faster one there wins only when Mann-Whitney
    (two-sided) says the two differ at α = 0.01, else the smaller program wins the tie."""
    if second is None:
        return best, "the only candidate within the budget", None
    if opts.objective != "p50":
        unit = "bytes" if opts.objective == "size" else "MiB peak RSS"
        return best, f"lowest {opts.objective} ({rank_key(best, opts.objective)[0]:g} {unit})", None
    from scipy.stats import mannwhitneyu

    a, b = [], []
    for _ in range(opts.rounds):  # interleaved: drift hits both alike
        a += remeasure(best)
        b += remeasure(second)
    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    ma, mb = statistics.median(a), statistics.median(b)
    if p < ALPHA:  # a real difference: the faster one in the re-measurement wins, whichever ranked first
        fast, slow, mf, ms = (best, second, ma, mb) if ma <= mb else (second, best, mb, ma)
        return (
            fast,
            (
                f"faster than {slow.recipe.name}: p50 {mf:.4g} vs {ms:.4g} ms over {opts.rounds} interleaved rounds "
                f"(Mann-Whitney p = {p:.2g} < {ALPHA})"
            ),
            p,
        )
    small = min((best, second), key=lambda t: t.manifest.program.size_bytes)
    other = second if small is best else best
    return (
        small,
        (
            f"no significant latency difference from {other.recipe.name} (p50 {ma:.4g} vs {mb:.4g} ms, "
            f"Mann-Whitney p = {p:.2g} ≥ {ALPHA}): the smaller program wins"
        ),
        p,
    )


def no_candidate_error(tried: list[Tried], budget: Budget) -> BudgetError:
    built = [t for t in tried if t.manifest is not None]
    misses = [(budget.fidelity_miss(t.drop, t.sqnr), t) for t in built]
    misses = [(m, t) for m, t in misses if m is not None]
    if not misses:
        return BudgetError("no candidate could be built and verified", "see the table above for each one's error")
    m, t = min(misses, key=lambda x: x[0])
    have = (
        f"accuracy drop {t.drop:.4g}" if budget.max_accuracy_drop is not None else f"SQNR {t.sqnr:.1f} dB"
    ) + " against your model"
    return BudgetError(
        f"no candidate meets {budget.describe_fidelity()}: the closest, {t.recipe.name}, has {have} (misses by {m:.3g})",
        "relax the budget, give --finetune data for pruning, or improve calibration",
    )


def plan_precisions(
    cpu: tuple[bool, str] | None = None, only: tuple[QuantScheme, ...] = ()
) -> tuple[list[Recipe], list[TuneCandidate]]:
    """The plain precisions to build, and the ones skipped with why: fp16 only where the CPU has fp16 arithmetic
    (``cpu``: what :func:`native_fp16` says, detected when None), or when ``only`` (the user's --precisions) names it."""
    if only:
        return [Recipe(q) for q in dict.fromkeys(only)], []
    ok, why = cpu or native_fp16()
    if ok:
        return base_recipes() + [Recipe(QuantScheme.FP16)], []
    return base_recipes(), [
        TuneCandidate(
            name="fp16",
            recipe={"scheme": "fp16"},
            status=CandidateStatus.SKIPPED,
            reason=f"{why}: XNNPACK would emulate fp16 in fp32, slower than fp32",
        )
    ]


def prune_recipes(
    best: Recipe, ratios: tuple[float, ...], has_finetune: bool, prunable: tuple[bool, str]
) -> tuple[list[Recipe], list[str]]:
    """Prune ratios on the best precision; without fine-tuning data only the mildest (accuracy collapses beyond)."""
    if not prunable[0]:
        return [], [prunable[1]]
    notes = []
    if not has_finetune and len(ratios) > 1:
        notes.append(
            f"no --finetune data: only the mildest prune ratio ({min(ratios):g}) is tried (without recovery "
            "fine-tuning larger ratios collapse accuracy)"
        )
        ratios = (min(ratios),)
    return [Recipe(best.scheme, best.fp32_layers, r, best.embeddings) for r in ratios], notes


def elapsed_over(t0: float, opts: TuneOptions) -> bool:
    return opts.time_budget_s is not None and time.monotonic() - t0 > opts.time_budget_s
