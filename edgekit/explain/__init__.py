"""``edgekit explain``: a program's time, fidelity and memory plan in the user's own module names.

:func:`explain` profiles a package once with an ETDump and joins it with what the build recorded in
``explain.json`` (:mod:`edgekit.pipeline.explain`); :func:`html_page` draws the result.
"""

from .html import html_page
from .model import SORTS, Explanation, ModuleRow, db_cell, fidelity_line, sort_rows, summary
from .report import explain, explain_etdump

__all__ = [
    "SORTS",
    "Explanation",
    "ModuleRow",
    "db_cell",
    "explain",
    "explain_etdump",
    "fidelity_line",
    "html_page",
    "sort_rows",
    "summary",
]
