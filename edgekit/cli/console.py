"""The terminal the CLI writes to (rich): consoles for stdout and stderr, tables that stay readable when piped, and
number formats. Shared by every renderer."""

from __future__ import annotations

from typing import Any

#: Wide enough that tables are not squeezed when output is piped or captured.
PIPE_WIDTH = 160
#: The narrowest a prose column (a reason, a description) gets when a table is squeezed.
PROSE_MIN_WIDTH = 24


def console(stderr: bool = True) -> Any:
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not con.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        con = Console(stderr=stderr, highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    return con


def table(
    title: str | None, columns: list[str], left: tuple[str, ...] = (), wrap: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    """A rich table; ``left`` columns are left-aligned, the rest numbers; only the ``wrap`` columns wrap (prose), so a
    narrow terminal squeezes the prose, never a figure or its header."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", **kwargs)
    for col in columns:
        t.add_column(
            col,
            justify="left" if col in left else "right",
            no_wrap=col not in wrap,
            min_width=PROSE_MIN_WIDTH if col in wrap and col.strip() else None,
        )
    return t


def warn(messages: Any) -> None:
    con = console()
    for w in dict.fromkeys(messages):
        con.print(f"[yellow]warning:[/] {w}")


def fmt(v: Any, unit: str = "", digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}g}{unit}"


def fmt_db(v: Any) -> str:
    return "exact" if v is None else f"{v:.1f} dB"
