"""Where a generation program's decode step (and its prefill call) goes, by kind of work: ``edgekit profile
--ops`` on a generation package.

After the timed rounds the worker (either engine) traces one more round into an ETDump: one prefill call, then up
to :data:`TRACED_STEPS` decode steps. Every call runs the same instructions, so ExecuTorch's Inspector keeps one
``Execute`` block with one event per instruction and one time per call, in order: the first is the prefill's, the rest
are decode steps' (checked: anything else is a ProfileError, never a mislabelled table). A call's events are merged by
kind (XNNPACK's ``Fully Connected … QB4W GEMM #3`` of every layer is one row, "int4 linears"), so the table answers the
question a user asks: which kind of work takes the step. Two rows are derived, not recorded: the XNNPACK time its
per-operator timer misses (it counts whole microseconds, so most element-wise operators of a decode step read 0;
plus each delegate call's setup and the tracer's own logging) and the runtime's time between operators.

Tracing costs time of its own (SmolLM2-135M's 8da4w program at 2 threads: a ~9.6 ms decode step traced at ~12.1 ms,
XNNPACK timing each of its ~1,300 operators a step; the attention kernel, 1.1 ms a step untraced by a clock around
it, shows 2.1 ms traced), so the shares are of the traced step and read as where the time goes, not as exact
milliseconds; the untraced figures are the profile's own.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._contract import Contract
from ..errors import ProfileError, first_line

if TYPE_CHECKING:
    from executorch.devtools.inspector import Event

#: the decode steps a traced round runs at most (the Inspector reads ~4 MB of ETDump per 32 steps of SmolLM2-135M)
TRACED_STEPS = 32
#: XNNPACK's and ExecuTorch's operator names → what they are in a generation program (first match wins)
KINDS: tuple[tuple[str, str], ...] = (
    ("QB4W", "int4 linears (group-wise)"),
    ("QC4W", "int4 linears (per channel)"),
    ("QC8W", "int8 linears"),
    ("Fully Connected (NC, F32)", "fp32 linears"),
    ("Fully Connected (NC, F16)", "fp16 linears"),
    ("llama::custom_sdpa", "attention over the KV cache (llama::custom_sdpa)"),
    ("llama::update_cache", "KV cache writes (llama::update_cache)"),
    ("embedding", "token embedding lookup"),
)
OTHER_XNNPACK = "XNNPACK time its operator timer misses (sub-µs operators, call setup, tracing)"
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


def _shares(events: list[Event], pick: slice) -> tuple[float, list[StepShare]]:
    """(the call's time, its kinds of work) over the calls ``pick`` selects: each event's median there."""
    total, delegate_ms, delegated, operators = 0.0, 0.0, 0.0, 0.0
    rows: dict[str, list[float]] = {}  # kind -> [ms, calls]
    for ev in events:
        name, ms = ev.name, statistics.median(ev.perf_data.raw[pick])
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
            if ev.is_delegated_op:
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


def step_ops(etdump_path: str | Path, prompt_len: int, decode_steps: int) -> StepOps:
    """The ETDump of a traced generation round (one prefill call, then ``decode_steps`` decode steps) by kind of work.

    Raises:
        ProfileError: the ETDump cannot be read, or its calls are not one prefill and ``decode_steps`` decode steps
            that ran the same instructions (the first call could not be told from the others).
    """
    from .ops import timed_events

    try:
        events = timed_events(etdump_path)
    except Exception as exc:
        raise ProfileError(f"reading the ETDump failed: {first_line(exc, 200)}", "profile without --ops") from exc
    # one Execute block (one Method::execute event) whose every event has a time per call: else the calls ran
    # different instructions and the first need not be the prefill
    runs = sum(ev.name == "Method::execute" for ev in events)
    calls = {len(ev.perf_data.raw) for ev in events}
    if runs != 1 or calls != {decode_steps + 1}:
        raise ProfileError(
            f"the traced round holds {runs} block(s) of {sorted(calls)} call(s), not one prefill and "
            f"{decode_steps} decode steps on the same instructions: its prefill cannot be told from its steps",
            "profile without --ops, and report the program",
        )
    decode_ms, decode = _shares(events, slice(1, None))
    prefill_ms, prefill = _shares(events, slice(0, 1))
    return StepOps(
        decode_steps=decode_steps,
        decode_ms=round(decode_ms, 4),
        decode=decode,
        prefill_tokens=prompt_len,
        prefill_ms=round(prefill_ms, 4),
        prefill=prefill,
        note="one traced round after the timed ones; tracing adds time of its own, so shares are of the traced call",
    )
