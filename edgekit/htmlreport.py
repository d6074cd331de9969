"""What the HTML reports share (``bench report``, ``tune.html``): the style sheet, a matplotlib figure as PNG bytes, and a
table with escaped cells. Self-contained pages: no scripts, no external files."""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}.meta{color:#555;font-size:.9em}
tr.regressed td{background:#fdd}tr.improved td{background:#dfd}tr.noisy td{background:#ffefc6}
img{max-width:100%;border:1px solid #eee}.warn{color:#8a5a00}"""


def fig_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def html_table(head: list[str], rows: list[list[str]], verdict_col: int | None = None) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        cls = ""
        if verdict_col is not None:
            cls = f' class="{html.escape(row[verdict_col].split()[0])}"'
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
