"""Where a generation program's decode step (and its prefill call) goes, by kind of operation: ``edgekit profile
--ops`` on a generation package.

The native runner traces one more round after the timed ones (one prefill call, then ``gen_len - 1`` decode steps)
into an ETDump (``runner_generation.cpp``). Every call runs the same instructions, so ExecuTorch's Inspector keeps one
event per instruction with one time per call, in order: the first is the prefill's, the rest are decode steps'.
A step's events are merged by kind (XNNPACK's ``Fully Connected … GEMM #3`` of every layer is one row: int4, int8 or
fp32 linears), so the table reads as the question a user asks: which kind of work takes the step, in milliseconds and
as a share. Two rows are derived, not recorded: what XNNPACK spends outside its linears (element-wise operations,
conversions, dispatch between its operators; "XNNPACK, the rest") and what the runtime spends between operators.

Tracing costs time of its own (SmolLM2-135M's 8da4w program at 2 threads: a ~9.6 ms decode step traced at ~12.1 ms,
XNNPACK timing each of its ~1,300 operators a step; the attention kernel, 1.1 ms a step untraced by a clock around
it, shows 2.1 ms traced), so the shares are of the traced step and read as where the time goes, not as exact
milliseconds; the untraced figures are the profile's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .._contract import Contract
from ..errors import ProfileError, first_line

#: XNNPACK's and ExecuTorch's operator names → what they are in a generation program (first match wins)
KINDS: tuple[tuple[str, str], ...] = (
    ("QB4W", "int4 linears (8da4w: q/k/v/o, MLP; a 4-bit grid's group sums)"),
    ("QC8W", "int8 linears (8da8w; the output layer)"),
    ("Fully Connected (NC, F32)", "fp32 linears (RMSNorm means, rotate_half)"),
    ("Fully Connected (NC, F16)", "fp16 linears"),
    ("llama::custom_sdpa", "attention over the KV cache (llama::custom_sdpa)"),
    ("llama::update_cache", "KV cache writes (llama::update_cache)"),
    ("embedding", "token embedding lookup"),
)
OTHER_XNNPACK = "XNNPACK outside its linears (element-wise ops, dispatch, tracing)"
BETWEEN = "runtime between operators"


def kind_of(name: str) -> str:
    """The kind of work an ETDump event is (:data:`KINDS`), else its name without XNNPACK's ``#N`` suffix."""
    for pattern, kind in KINDS:
        if pattern in name:
            return kind
    return re.sub(r" #\d+$", "", name).removeprefix("native_call_")


@dataclass(frozen=True)
class StepShare(Contract):
    """One kind of work in a traced call: its milliseconds per call, share of the call and events per call."""

    kind: str
    ms: float
    share: float
    calls: int
    derived: bool = False  # computed from the totals (the rest of XNNPACK's time, the runtime's), not recorded


@dataclass(frozen=True)
class StepOps(Contract):
    """A generation profile's ``--ops``: the traced decode step (median over its steps) and the traced prefill call."""

    decode_steps: int
    decode_ms: float  # a traced decode step, median
    decode: list[StepShare]
    prefill_tokens: int
    prefill_ms: float  # the traced prefill call
    prefill: list[StepShare]
    note: str


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _shares(events: list[tuple[str, bool, str, list[float]]], pick: slice) -> tuple[float, list[StepShare]]:
    """(the call's time, its kinds of work) over the calls ``pick`` selects: each event's median there."""
    total, delegate_ms, delegated, operators = 0.0, 0.0, 0.0, 0.0
    rows: dict[str, list[float]] = {}  # kind -> [ms, calls]
    for name, is_delegated, _, raw in events:
        times = raw[pick]
        if not times:
            continue
        ms = _median(times)
        if name == "Method::execute":
            total = ms
        elif name == "DELEGATE_CALL":
            delegate_ms += ms
        elif name == "OPERATOR_CALL":  # the wrapper of each top-level operator: counted through the operator itself
            continue
        else:
            row = rows.setdefault(kind_of(name), [0.0, 0])
            row[0] += ms
            row[1] += 1
            if is_delegated:
                delegated += ms
            else:
                operators += ms
    if total <= 0:
        total = delegate_ms + operators
    if total <= 0:
        return 0.0, []
    shares = [StepShare(k, round(ms, 4), round(ms / total, 4), int(n)) for k, (ms, n) in rows.items()]
    rest = delegate_ms - delegated
    if rest > 0:
        shares.append(StepShare(OTHER_XNNPACK, round(rest, 4), round(rest / total, 4), 0, derived=True))
    between = total - delegate_ms - operators
    if between > 0:
        shares.append(StepShare(BETWEEN, round(between, 4), round(between / total, 4), 0, derived=True))
    shares.sort(key=lambda s: s.ms, reverse=True)
    return total, shares


def step_ops(etdump_path: str | Path, prompt_len: int) -> StepOps:
    """The ETDump of a traced generation round (one prefill call, then decode steps) by kind of work.

    Raises:
        ProfileError: the ETDump cannot be read or holds no decode step.
    """
    from .ops import timed_events

    try:
        events = [
            (ev.name, bool(ev.is_delegated_op), str(ev.delegate_backend_name), list(ev.perf_data.raw))
            for ev in timed_events(etdump_path)
        ]
    except Exception as exc:
        raise ProfileError(f"reading the ETDump failed: {first_line(exc, 200)}", "profile without --ops") from exc
    calls = max((len(raw) for *_, raw in events), default=0)
    if calls < 2:
        raise ProfileError("the ETDump holds no decode step", "profile with --gen-len 2 or more")
    decode_ms, decode = _shares(events, slice(1, None))
    prefill_ms, prefill = _shares(events, slice(0, 1))
    return StepOps(
        decode_steps=calls - 1,
        decode_ms=round(decode_ms, 4),
        decode=decode,
        prefill_tokens=prompt_len,
        prefill_ms=round(prefill_ms, 4),
        prefill=prefill,
        note="one traced round after the timed ones; tracing adds time of its own, so shares are of the traced call",
    )
