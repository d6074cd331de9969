"""What a comparison of two benchmark runs is made of (:mod:`edgekit.bench.compare`): one metric of one item, baseline
against the new run, as ``bench compare`` shows it and writes it with ``--json``."""

from __future__ import annotations

from typing import NotRequired, TypedDict


class MetricComparison(TypedDict):
    """One metric of one item, baseline against the new run (``compare_samples``, ``compare_value``)."""

    base: float
    new: float
    ratio: float | None  # new / base (None: a difference metric, see change)
    change: NotRequired[float]  # single values: new - base (ratio metrics: ratio - 1)
    ci95: tuple[float, float] | None  # samples: the bootstrap 95% interval of the ratio
    p_value: float | None  # samples: Mann-Whitney's
    significant: bool | None  # samples: whether the test says the change is real
    test: str  # the rule applied, in words
    verdict: str  # a Verdict's value
    threshold: float


class ComparisonRow(MetricComparison):
    """A row of :class:`edgekit.bench.compare.Comparison`: an item's metric compared, with the item named."""

    key: str
    model: str
    target: str
    threads: int
    metric: str
    gated: bool  # whether --fail-on gates this metric
    noise_pct: NotRequired[float | None]  # samples: the larger machine drift of the two runs (noise floor)
