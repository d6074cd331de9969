"""Per-operator time from an ETDump, read with ExecuTorch's devtools Inspector.

Events of the ``Execute`` block are either top-level (an operator on portable kernels, or a
``DELEGATE_CALL``) or delegate-internal (XNNPACK's own operators, inside a delegate call). Shares are of
the mean run time, i.e. the sum of top-level events; a delegate-internal op's share is of the same total.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ProfileError, first_line
from .stats import percentile


def op_table(etdump_path: str | Path, top: int | None = None) -> dict:
    """Operators and delegate calls by mean time per run, with their share of the run.

    Returns:
        ``{"runs": n, "total_ms": mean run time from top-level events, "ops": [...]}``, each op with
        ``name, kind (operator|delegate_call|delegate_op), backend, calls_per_run, mean_ms, p50_ms, share``; p50 is the
        type-7 percentile the latency figures use.
    """
    from .._noise import quiet

    try:
        with quiet():
            from executorch.devtools import Inspector

            inspector = Inspector(etdump_path=str(etdump_path))
    except Exception as exc:
        raise ProfileError(f"reading the ETDump failed: {first_line(exc, 200)}", "profile without --ops") from exc
    rows = []
    runs = 0
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for ev in block.events:
            if ev.perf_data is None or not ev.perf_data.raw:
                continue
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
            rows.append(
                {
                    "name": ev.name,
                    "kind": kind,
                    "backend": ev.delegate_backend_name,
                    "samples": len(raw),
                    "mean_ms": sum(raw) / len(raw),
                    "p50_ms": percentile(sorted(raw), 50),
                }
            )
    if not rows:
        raise ProfileError("the ETDump holds no operator timings", "the runtime may have been built without profiling")
    method = [r["mean_ms"] for r in rows if r["kind"] == "method"]
    total = method[0] if method else sum(r["mean_ms"] for r in rows if r["kind"] in ("operator", "delegate_call"))
    for r in rows:
        r["calls_per_run"] = round(r["samples"] / runs, 3) if runs else 0
        r["share"] = r["mean_ms"] / total if total else 0.0
        del r["samples"]
    rows = [r for r in rows if r["kind"] != "method"]
    rows.sort(key=lambda r: r["mean_ms"], reverse=True)
    return {
        "runs": runs,
        "total_ms": total,
        "ops": rows[:top] if top else rows,
        "note": "delegate_op rows are inside a delegate_call; shares are of the mean Method::execute time",
    }
