"""``edgekit tune``: the fastest (or smallest) program within an accuracy budget, chosen by measurement.

The names below load on first use, so the CLI's start-up (which imports this package for its command) does not pay
for the search, the manifest types and the recipes.
"""

import importlib

_EXPORTS = {
    "Budget": "search",
    "TuneOptions": "search",
    "TuneResult": "search",
    "tune": "run",
    "tune_generation": "generation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
