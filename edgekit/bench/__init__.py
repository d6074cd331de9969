"""Regression benchmarks: suites, stored runs, statistical comparison, reports.

The names below load on first use, so the CLI's start-up (which imports this package for its command group) does
not pay for numpy and scipy.
"""

import importlib

_EXPORTS = {
    "METRICS": "compare",
    "Comparison": "compare",
    "Verdict": "compare",
    "compare_runs": "compare",
    "compare_samples": "compare",
    "parse_fail_on": "compare",
    "BenchRun": "document",
    "list_baselines": "store",
    "list_runs": "store",
    "load_run": "store",
    "resolve": "store",
    "save_run": "store",
    "Suite": "suite",
    "load_suite": "suite",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
