"""Latency statistics from raw samples, with the definitions stated so they can be reproduced.

* Percentiles: linear interpolation between closest ranks (Hyndman & Fan type 7; numpy's default and
  Excel's PERCENTILE.INC).
* 95% confidence interval of the median: distribution-free, from order statistics (the binomial
  argument; ranks n/2 ± 0.98·√n, Conover 1999). Needs no assumption about the latency distribution.
* Outliers: modified z-score 0.6745·|x − median| / MAD above 3.5 (Iglewicz & Hoaglin) and at least 5% away
  from the median. Reported, never dropped: every figure above is computed on all samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .._contract import Contract

PERCENTILE_METHOD = "linear interpolation between closest ranks (Hyndman-Fan type 7, numpy default)"
CI_METHOD = "distribution-free order-statistic interval of the median (ranks n/2 ± 0.98·sqrt(n))"
OUTLIER_METHOD = (
    "modified z-score 0.6745·|x − median|/MAD > 3.5 (Iglewicz-Hoaglin) and at least 5% from the median "
    "(so timer-resolution jitter on very stable runs is not called an outlier)"
)
OUTLIER_Z = 3.5
OUTLIER_MIN_RELATIVE = 0.05


@dataclass(frozen=True)
class LatencyStats(Contract):
    """Summary of timed runs, in milliseconds."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float
    ci95_median: tuple[float, float]
    outliers: int
    outlier_fraction: float
    percentile_method: str = PERCENTILE_METHOD
    ci_method: str = CI_METHOD
    outlier_method: str = OUTLIER_METHOD


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Type-7 percentile of already sorted values, ``q`` in [0, 100]."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("no samples")
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def median_ci(sorted_values: Sequence[float]) -> tuple[float, float]:
    """95% distribution-free confidence interval of the median (order statistics)."""
    n = len(sorted_values)
    if n < 6:  # too few samples for any 95% interval: say so by spanning everything
        return float(sorted_values[0]), float(sorted_values[-1])
    half = 0.98 * math.sqrt(n)
    lo = max(1, math.floor(n / 2 - half))
    hi = min(n, math.ceil(1 + n / 2 + half))
    return float(sorted_values[lo - 1]), float(sorted_values[hi - 1])


def outlier_mask(values: Sequence[float]) -> list[bool]:
    """True for samples whose modified z-score exceeds 3.5."""
    s = sorted(values)
    med = percentile(s, 50)
    mad = percentile(sorted(abs(v - med) for v in values), 50)
    if mad == 0:
        # Over half the samples are identical (timer resolution): fall back to the mean absolute deviation.
        mad = sum(abs(v - med) for v in values) / len(values) / 1.2533
    if mad == 0:
        return [False] * len(values)
    floor = OUTLIER_MIN_RELATIVE * abs(med)
    return [0.6745 * abs(v - med) / mad > OUTLIER_Z and abs(v - med) > floor for v in values]


def summarize(samples: Sequence[float]) -> LatencyStats:
    """Statistics of raw samples (ms). Raises ValueError on an empty list."""
    if not samples:
        raise ValueError("no samples")
    s = sorted(float(v) for v in samples)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in s) / (n - 1)) if n > 1 else 0.0
    mask = outlier_mask(samples)
    k = sum(mask)
    return LatencyStats(
        count=n,
        mean=mean,
        std=std,
        min=s[0],
        max=s[-1],
        p50=percentile(s, 50),
        p90=percentile(s, 90),
        p99=percentile(s, 99),
        ci95_median=median_ci(s),
        outliers=k,
        outlier_fraction=k / n,
    )


def measurement_warnings(stats: LatencyStats, first_run_ms: float, warmup_ms: Sequence[float]) -> list[str]:
    """What a careful engineer would point out about these numbers."""
    out = []
    if stats.outliers:
        out.append(
            f"{stats.outliers} of {stats.count} timed runs ({stats.outlier_fraction:.1%}) are outliers by median/MAD "
            f"(slowest {stats.max:.4g} ms vs p50 {stats.p50:.4g} ms); they are kept in every figure — "
            "another process or frequency scaling may have interfered"
        )
    if stats.p50 > 0 and first_run_ms > 3 * stats.p50:
        out.append(
            f"the first run took {first_run_ms / stats.p50:.1f}× the median ({first_run_ms:.4g} ms): "
            "one-time initialisation; it is excluded from the timed runs"
        )
    if warmup_ms and stats.p50 > 0:
        tail = sorted(warmup_ms[-max(1, len(warmup_ms) // 4) :])
        tail_med = tail[len(tail) // 2]
        if tail_med > 1.2 * stats.p50:
            out.append(
                f"the last warm-up runs were still {tail_med / stats.p50:.2f}× slower than the timed median: "
                "raise --warmup or --warmup-seconds"
            )
    if stats.count < 30:
        out.append(f"only {stats.count} timed runs: percentiles beyond p90 are not meaningful; raise --runs")
    return out
