"""Compare two benchmark runs and decide, metric by metric, what changed.

Latency (p50, p90) is compared on the raw samples. A change is **regressed** (or **improved**) only when it
is both statistically significant and larger than the metric's threshold:

* significance of a p50 change: Mann-Whitney U, two-sided, p < ``alpha`` (0.002 by default), and the
  bootstrap interval of the ratio on the same side of 1 as the change; when either side has fewer than 20
  samples, non-overlapping 95% bootstrap confidence intervals of the two medians instead;
* significance of a p90 change: the 99% bootstrap interval of the p90 ratio excludes 1 (Mann-Whitney tests
  a shift of location, not of the tail: p50 can improve significantly while p90 only looks worse);
* size of the change: the ratio new/base of the statistic beyond ``1 ± threshold``.

Beside each latency verdict stands the noise floor of the two runs (the larger drift of the reference workload the
runner times before and after its timed runs); a regression or improvement smaller than that drift is flagged.

A change beyond the threshold that is not significant is **noisy** (a warning, never a failure); a
significant change within the threshold is **unchanged**. The ratio's 95% confidence interval comes from a
seeded bootstrap (2,000 resamples of each side).

Size, peak RSS delta, accuracy and SQNR have one value per run and compare deterministically: size and
memory by ratio against their thresholds (memory also needs an absolute change of at least 1 MiB),
accuracy by the drop in points, SQNR by the drop in dB.

Text-generation items keep the decode steps as their samples (latency = ms per generated token, so p50 gates decode
tokens/s) and add time to first token (one prefill per round, compared as samples: with few rounds only a change
beyond the rounds' spread counts) and the program's perplexity on the eval text (a ratio: it rises when the program
drifts from the model).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import BenchError, RegressionError, UsageError
from ..machine import COMPARABLE_KEYS
from .document import BenchItem, BenchRun, MachineFacts
from .rows import ComparisonRow, MetricComparison

ALPHA = 0.002
FEW_SAMPLES = 20
BOOTSTRAP = 2000


class Verdict(str, enum.Enum):
    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    NOISY = "noisy"


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # "samples" | "ratio" | "points" | "db" | "nats" (a rise is worse)
    default_threshold: float
    description: str


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("latency_p50", "samples", 0.10, "median latency (ratio new/base)"),
        MetricDef("latency_p90", "samples", 0.15, "90th-percentile latency (ratio new/base)"),
        MetricDef("peak_rss", "ratio", 0.10, "peak RSS above baseline of the worker (ratio; and ≥ 1 MiB)"),
        MetricDef("size", "ratio", 0.02, "program size, .pte + .ptd (ratio)"),
        MetricDef("accuracy", "points", 0.01, "top-1 accuracy of the program (drop in points; 1% = 1 point)"),
        MetricDef("sqnr", "db", 3.0, "SQNR of the program vs eager (drop in dB)"),
        MetricDef("ttft", "samples", 0.15, "text generation: time to first token, one prefill per round (ratio)"),
        MetricDef("perplexity", "ratio", 0.01, "text generation: the program's perplexity on the eval text (ratio)"),
        MetricDef("kld", "nats", 0.01, "text generation: mean KL divergence from your model (rise in nats)"),
        MetricDef("top1", "points", 0.01, "text generation: same top-1 as your model (drop in points)"),
    )
}
RSS_FLOOR_MB = 1.0


def parse_fail_on(specs: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``latency_p50:10%`` / ``accuracy:0.5%`` / ``sqnr:3`` → {metric: threshold}.

    Percentages are ratios for latency/size/memory/perplexity and points for accuracy and top-1; SQNR takes dB, KLD
    nats.

    Raises:
        UsageError: unknown metric (the valid ones are listed) or a malformed threshold.
    """
    out = {}
    for spec in specs:
        name, sep, value = spec.partition(":")
        name = name.strip()
        if name not in METRICS:
            raise UsageError(f"unknown metric {name!r} in --fail-on {spec!r}", "valid metrics: " + ", ".join(METRICS))
        if not sep:
            out[name] = METRICS[name].default_threshold
            continue
        if METRICS[name].kind == "nats" and value.strip().endswith("%"):
            raise UsageError(f"--fail-on {spec!r}: {name} is in nats, not a percentage", f"e.g. {name}:0.01")
        text = value.strip().lower().removesuffix("db")
        try:
            number = float(text.removesuffix("%"))
        except ValueError:
            raise UsageError(
                f"--fail-on {spec!r}: {value!r} is not a number", "e.g. latency_p50:10% or sqnr:3"
            ) from None
        if not math.isfinite(number) or number < 0:
            raise UsageError(f"--fail-on {spec!r}: the threshold must be a finite number >= 0", "e.g. latency_p50:10%")
        out[name] = number if METRICS[name].kind in ("db", "nats") else number / 100.0
    return out


def _stat(x: np.ndarray, metric: str) -> float:
    return float(np.percentile(x, 90 if metric == "latency_p90" else 50))


def _boot(x: np.ndarray, metric: str, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(x), (BOOTSTRAP, len(x)))
    return np.percentile(x[idx], 90 if metric == "latency_p90" else 50, axis=1)


def compare_samples(
    base: list[float],
    new: list[float],
    *,
    metric: str = "latency_p50",
    threshold: float = 0.10,
    alpha: float = ALPHA,
    seed: int = 0,
) -> MetricComparison:
    """Compare two latency sample sets; see the module docstring for the rule."""
    from scipy.stats import mannwhitneyu

    b, n = np.asarray(base, float), np.asarray(new, float)
    if len(b) == 0 or len(n) == 0:
        raise BenchError("cannot compare an empty sample set")
    ratio = _stat(n, metric) / _stat(b, metric)
    rng = np.random.default_rng(seed)
    bb, nb = _boot(b, metric, rng), _boot(n, metric, rng)
    ratios = nb / bb
    ci = (float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5)))
    p = float(mannwhitneyu(n, b, alternative="two-sided").pvalue)
    if metric == "latency_p90":
        lo99, hi99 = np.percentile(ratios, [0.5, 99.5])
        significant = bool(lo99 > 1 or hi99 < 1)
        test = "99% bootstrap interval of the p90 ratio excludes 1"
    elif min(len(b), len(n)) < FEW_SAMPLES:
        lo_b, hi_b = np.percentile(bb, [2.5, 97.5])
        lo_n, hi_n = np.percentile(nb, [2.5, 97.5])
        significant = bool(lo_n > hi_b or hi_n < lo_b)
        test = "non-overlapping bootstrap 95% CIs of the median (few samples)"
    else:
        same_side = (ci[0] > 1) if ratio > 1 else (ci[1] < 1)
        significant = p < alpha and same_side
        test = f"Mann-Whitney U, two-sided, p < {alpha}, bootstrap CI on the side of the change"
    beyond = abs(ratio - 1) > threshold
    if significant and beyond:
        verdict = Verdict.REGRESSED if ratio > 1 else Verdict.IMPROVED
    elif beyond:
        verdict = Verdict.NOISY
    else:
        verdict = Verdict.UNCHANGED
    return {
        "base": _stat(b, metric),
        "new": _stat(n, metric),
        "ratio": ratio,
        "ci95": ci,
        "p_value": p,
        "significant": significant,
        "test": test,
        "verdict": verdict.value,
        "threshold": threshold,
    }


def compare_value(base: float | None, new: float | None, *, metric: str, threshold: float) -> MetricComparison | None:
    """Deterministic comparison of a single value per run (None when either side lacks it)."""
    if base is None or new is None:
        return None
    kind = METRICS[metric].kind
    if kind == "ratio":
        ratio = new / base if base else (1.0 if new == base else float("inf"))
        change = ratio - 1
        big_enough = metric != "peak_rss" or abs(new - base) >= RSS_FLOOR_MB
        worse, better = change > threshold and big_enough, change < -threshold and big_enough
    elif kind == "nats":  # lower is better, compare the difference
        change = new - base
        ratio = None
        worse, better = change > threshold, change < -threshold
    else:  # points / db: higher is better, compare the difference
        change = new - base
        ratio = None
        worse, better = change < -threshold, change > threshold
    verdict = Verdict.REGRESSED if worse else Verdict.IMPROVED if better else Verdict.UNCHANGED
    return {
        "base": base,
        "new": new,
        "ratio": ratio,
        "change": change,
        "ci95": None,
        "p_value": None,
        "significant": None,
        "test": "deterministic threshold",
        "verdict": verdict.value,
        "threshold": threshold,
    }


def machine_differences(a: MachineFacts, b: MachineFacts) -> dict[str, tuple[object, object]]:
    return {k: (a.get(k), b.get(k)) for k in COMPARABLE_KEYS if a.get(k) != b.get(k)}


@dataclass
class Comparison:
    rows: list[ComparisonRow]
    regressions: list[ComparisonRow]
    warnings: list[str]
    missing_in_run: list[str]
    missing_in_baseline: list[str]
    machine_mismatch: dict[str, tuple[object, object]]  # fact → (baseline's, run's)
    baseline: str
    run: str
    gated: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def raise_for_regressions(self) -> None:
        """Raise :class:`RegressionError` naming the first regressions (significant and beyond their threshold)."""
        if self.regressions:
            raise RegressionError(
                f"{len(self.regressions)} regression(s): "
                + "; ".join(
                    f"{r['key']} {r['metric']} "
                    + (f"{r['ratio']:.2f}×" if r.get("ratio") is not None else f"{r['change']:+.3g}")
                    for r in self.regressions[:5]
                ),
                "see the comparison table above; rerun to rule out noise",
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "baseline": self.baseline,
            "run": self.run,
            "gated_metrics": self.gated,
            "rows": self.rows,
            "regressions": self.regressions,
            "warnings": self.warnings,
            "missing_in_run": self.missing_in_run,
            "missing_in_baseline": self.missing_in_baseline,
            "machine_mismatch": {k: list(v) for k, v in self.machine_mismatch.items()},
            "exit_code": self.exit_code,
        }


def _value(result: BenchItem, metric: str) -> float | None:
    if metric == "peak_rss":
        return result.memory.get("peak_delta_mb")
    if metric == "size":
        return result.build.size_bytes
    if metric == "accuracy":
        return result.build.accuracy
    if metric == "sqnr":
        return result.build.sqnr_db
    if metric == "perplexity":
        return result.build.perplexity
    if metric == "kld":
        return result.build.kld_mean
    if metric == "top1":
        return result.build.same_top1
    raise KeyError(metric)


def _samples(b: BenchItem, n: BenchItem, metric: str) -> tuple[list[float], list[float]] | None:
    """The two sample sets a samples metric compares (None when either item has none: ttft of a non-generation)."""
    if metric != "ttft":
        return b.samples_ms, n.samples_ms
    got = [(i.generation or {}).get("ttft_samples_ms") for i in (b, n)]
    return (got[0], got[1]) if all(got) else None


def _noise_pct(*items: BenchItem) -> float | None:
    """The larger noise-floor drift of two measurements (None when either run predates the noise floor)."""
    drifts = [abs(i.noise["drift_pct"]) for i in items if i.noise and "drift_pct" in i.noise]
    return round(max(drifts), 2) if len(drifts) == len(items) else None


def compare_runs(
    baseline: BenchRun,
    run: BenchRun,
    *,
    fail_on: dict[str, float] | None = None,
    allow_machine_mismatch: bool = False,
    alpha: float = ALPHA,
) -> Comparison:
    """Compare every (model, target, threads) present in both runs.

    Args:
        fail_on: {metric: threshold} that gate (exit 1 on regression); default: every metric at its default.
        allow_machine_mismatch: compare runs from different machines (the result says so loudly).

    Raises:
        BenchError: the machines differ and mismatch is not allowed, or the runs share no item.
    """
    diffs = machine_differences(baseline.machine, run.machine)
    if diffs and not allow_machine_mismatch:
        what = "; ".join(f"{k}: {a} vs {b}" for k, (a, b) in diffs.items())
        raise BenchError(
            f"the runs come from different machines ({what})",
            "compare runs from one machine, or pass --allow-machine-mismatch to compare anyway",
        )
    gated = dict(fail_on) if fail_on else {m: d.default_threshold for m, d in METRICS.items()}
    thresholds = {m: gated.get(m, d.default_threshold) for m, d in METRICS.items()}
    base_by = {r.key: r for r in baseline.results}
    run_by = {r.key: r for r in run.results}
    common = [k for k in run_by if k in base_by]
    missing_in_run = sorted(set(base_by) - set(run_by))
    missing_in_base = sorted(set(run_by) - set(base_by))
    if not common:
        raise BenchError(
            "the runs share no model × target × threads item",
            f"baseline has {', '.join(sorted(base_by)) or 'nothing'}; run has {', '.join(sorted(run_by)) or 'nothing'}",
        )
    warnings = []
    if diffs:
        warnings.append(
            "MACHINES DIFFER — figures are not comparable: "
            + "; ".join(f"{k}: {a} vs {b}" for k, (a, b) in diffs.items())
        )
    if missing_in_run:
        warnings.append("only in the baseline (not compared): " + ", ".join(missing_in_run))
    if missing_in_base:
        warnings.append("only in the new run (not compared): " + ", ".join(missing_in_base))
    for key in ("os", "python", "torch", "executorch", "edgekit"):
        a, b = baseline.machine.get(key), run.machine.get(key)
        if a != b:
            warnings.append(f"{key} changed: {a} → {b}")
    moved = [f"{k} ({base_by[k].engine} → {run_by[k].engine})" for k in common if base_by[k].engine != run_by[k].engine]
    if moved:  # another measuring process: latency and memory move with it, not with the program
        warnings.append(f"ENGINES DIFFER — latency and memory not comparable for {', '.join(moved)} (pin [run] engine)")
    rows: list[ComparisonRow] = []
    regressions: list[ComparisonRow] = []
    for key in common:
        b, n = base_by[key], run_by[key]
        for metric, mdef in METRICS.items():
            if mdef.kind == "samples":
                pair = _samples(b, n, metric)
                if pair is None:
                    continue
                res = compare_samples(*pair, metric=metric, threshold=thresholds[metric], alpha=alpha)
            else:
                res = compare_value(_value(b, metric), _value(n, metric), metric=metric, threshold=thresholds[metric])
                if res is None:
                    continue
            row: ComparisonRow = {
                "key": key,
                "model": n.model,
                "target": n.target,
                "threads": n.threads,
                "metric": metric,
                "gated": metric in gated,
                **res,
            }
            if mdef.kind == "samples":
                row["noise_pct"] = _noise_pct(b, n)
                if (
                    row["noise_pct"] is not None
                    and row["verdict"] in (Verdict.REGRESSED.value, Verdict.IMPROVED.value)
                    and abs(row["ratio"] - 1) * 100 < row["noise_pct"]
                ):
                    warnings.append(
                        f"{key} {metric}: {row['verdict']} by {abs(row['ratio'] - 1):.1%}, but the machine itself "
                        f"drifted up to {row['noise_pct']:.1f}% during these runs (noise floor): check it on a "
                        "quieter machine"
                    )
            rows.append(row)
            if row["verdict"] == Verdict.REGRESSED.value and row["gated"]:
                regressions.append(row)
            elif row["verdict"] == Verdict.NOISY.value:
                warnings.append(
                    f"{key} {metric}: {row['ratio']:.2f}× but not significant (95% CI of the ratio "
                    f"{row['ci95'][0]:.2f}–{row['ci95'][1]:.2f}; criterion not met: {row['test']}); noise, not a failure — "
                    "rerun with more runs to settle it"
                )
    return Comparison(
        rows,
        regressions,
        warnings,
        missing_in_run,
        missing_in_base,
        diffs,
        baseline.path or "baseline",
        run.path or "run",
        gated,
    )
