"""Per-operator time from an ETDump, read with ExecuTorch's devtools Inspector.

Events of the ``Execute`` block are either top-level (an operator on portable kernels, or a
``DELEGATE_CALL``) or delegate-internal (XNNPACK's own operators, inside a delegate call). Shares are of
the mean run time, i.e. the sum of top-level events; a delegate-internal op's share is of the same total.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ..errors import ProfileError, first_line
from .stats import percentile

if TYPE_CHECKING:
    from executorch.devtools.inspector import Event


def timed_events(etdump_path: str | Path) -> list[Event]:
    """The events of an ETDump's ``Execute`` blocks that carry timings (ExecuTorch's Inspector, read quietly): what
    ``--ops`` tabulates and ``edgekit explain`` joins to the model's modules."""
    from .._noise import quiet

    with quiet():
        from executorch.devtools import Inspector

        inspector = Inspector(etdump_path=str(etdump_path))
    return [
        ev
        for block in inspector.event_blocks
        if block.name == "Execute"
        for ev in block.events
        if ev.perf_data is not None and ev.perf_data.raw
    ]


class OpRow(TypedDict):
    """One operator or delegate call of :func:`op_table`."""

    name: str
    kind: str  # operator | delegate_call | delegate_op
    backend: str | None  # the delegate's, for delegated ops
    mean_ms: float
    p50_ms: float
    calls_per_run: float
    share: float  # of the mean run time


class OpTable(TypedDict):
    """:func:`op_table`: a profile's ``ops``."""

    runs: int
    total_ms: float
    ops: list[OpRow]
    note: str


def op_table(etdump_path: str | Path, top: int | None = None) -> OpTable:
    """Operators and delegate calls by mean time per run, with their share of the run.

    Returns:
        ``{"runs": n, "total_ms": mean run time from top-level events, "ops": [...]}``, each op with
        ``name, kind (operator|delegate_call|delegate_op), backend, calls_per_run, mean_ms, p50_ms, share``; p50 is the
        type-7 percentile the latency figures use.
    """
    try:
        events_with_times = timed_events(etdump_path)
    except Exception as exc:
        raise ProfileError(f"reading the ETDump failed: {first_line(exc, 200)}", "profile without --ops") from exc
    events: list[tuple[str, str, str | None, int, float, float]] = []  # name, kind, backend, samples, mean, p50
    runs = 0
    for ev in events_with_times:
        raw = list(ev.perf_data.raw)
        runs = max(runs, len(raw))
        if ev.name == "Method::execute":
            kind = "method"
        elif ev.name == "DELEGATE_CALL":
            kind = "delegate_call"
        elif ev.is_delegated_op:
            kind = "delegate_op"
        else:
            kind = "operator"
        events.append(
            (ev.name, kind, ev.delegate_backend_name, len(raw), sum(raw) / len(raw), percentile(sorted(raw), 50))
        )
    if not events:
        raise ProfileError("the ETDump holds no operator timings", "the runtime may have been built without profiling")
    method = [mean for _, kind, _, _, mean, _ in events if kind == "method"]
    total = (
        method[0] if method else sum(mean for _, kind, _, _, mean, _ in events if kind in ("operator", "delegate_call"))
    )
    rows: list[OpRow] = [
        {
            "name": name,
            "kind": kind,
            "backend": backend,
            "mean_ms": mean,
            "p50_ms": p50,
            "calls_per_run": round(samples / runs, 3) if runs else 0,
            "share": mean / total if total else 0.0,
        }
        for name, kind, backend, samples, mean, p50 in events
        if kind != "method"
    ]
    rows.sort(key=lambda r: r["mean_ms"], reverse=True)
    return {
        "runs": runs,
        "total_ms": total,
        "ops": rows[:top] if top else rows,
        "note": "delegate_op rows are inside a delegate_call; shares are of the mean Method::execute time",
    }
