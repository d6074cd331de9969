"""Regression benchmarks: suites, stored runs, statistical comparison, reports."""

from .compare import METRICS, Comparison, Verdict, compare_runs, compare_samples, parse_fail_on
from .document import BenchRun
from .store import list_baselines, list_runs, load_run, resolve, save_run
from .suite import Suite, load_suite

__all__ = ["METRICS", "BenchRun", "Comparison", "Suite", "Verdict", "compare_runs", "compare_samples", "list_baselines", "list_runs",
           "load_run", "load_suite", "parse_fail_on", "resolve", "save_run"]
