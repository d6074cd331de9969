import numpy as np
import pytest

from edgekit.profile.stats import measurement_warnings, median_ci, outlier_mask, percentile, summarize


def test_percentiles_match_numpy_type7():
    rng = np.random.default_rng(0)
    x = sorted(rng.lognormal(size=257).tolist())
    for q in (50, 90, 99, 0, 100):
        assert percentile(x, q) == pytest.approx(np.percentile(x, q, method="linear"))


def test_median_ci_covers_the_median_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small = sorted(rng.normal(10, 1, 30).tolist())
    big = sorted(rng.normal(10, 1, 3000).tolist())
    lo, hi = median_ci(small)
    assert lo <= percentile(small, 50) <= hi
    blo, bhi = median_ci(big)
    assert bhi - blo < (hi - lo) / 4


def test_median_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(400):
        lo, hi = median_ci(sorted(rng.exponential(1.0, 101).tolist()))
        hits += lo <= np.log(2) <= hi  # true median of Exp(1)
    assert 0.92 <= hits / 400 <= 0.99


def test_outliers_are_flagged_not_dropped():
    x = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98] * 10 + [5.0, 7.0]
    mask = outlier_mask(x)
    assert sum(mask) == 2 and mask[-1] and mask[-2]
    s = summarize(x)
    assert s.count == len(x) and s.max == 7.0 and s.outliers == 2
    assert any("outliers" in w for w in measurement_warnings(s, 1.0, [1.0] * 10))


def test_timer_resolution_jitter_is_not_an_outlier():
    x = [8.112] * 150 + [8.122] * 40 + [8.393] * 10  # 3% above the median at most
    assert sum(outlier_mask(x)) == 0


def test_slow_first_run_and_cold_warmup_are_pointed_out():
    s = summarize([1.0] * 50)
    warnings = measurement_warnings(s, first_run_ms=10.0, warmup_ms=[3.0] * 20)
    assert any("first run" in w for w in warnings) and any("--warmup" in w for w in warnings)
