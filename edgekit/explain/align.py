"""Joining an ETDump with the build's record: XNNPACK logs its operators by name only (executorch 1.5.1: no debug
handle), so each delegate call's logged operators are aligned, in order, with the nodes of its serialized XNNPACK graph;
the ETDump's events read per instruction.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

#: XNNPACK's runtime operator names (``Convolution (NHWC, QC8) IGEMM #2``) → the category of its graph nodes
RUNTIME_CATEGORY = [
    ("Convolution", "conv"), ("Deconvolution", "deconv"), ("Fully Connected", "fc"), ("Transpose", "transpose"),
    ("Static Reshape", "reshape"), ("Copy", "reshape"), ("Mean", "mean"), ("Global Average Pooling", "mean"),
    ("Convert", "convert"), ("Clamp", "clamp"), ("Add", "add"), ("Subtract", "sub"), ("Multiply", "mul"),
    ("Divide", "div"), ("Max Pooling", "maxpool"), ("Average Pooling", "avgpool"), ("Softmax", "softmax"),
    ("Sigmoid", "sigmoid"), ("HardSwish", "hardswish"), ("Slice", "slice"), ("Batch Matrix Multiply", "bmm"),
    ("Constant Pad", "pad"), ("Concatenate", "concat"), ("Leaky ReLU", "leakyrelu"), ("Tanh", "tanh"),
    ("GELU", "gelu"), ("ELU", "elu"), ("PReLU", "prelu"), ("Maximum", "max"), ("Minimum", "min"),
    ("Square Root", "sqrt"), ("Reciprocal Square Root", "rsqrt"), ("Exp", "exp"), ("Log", "log"),
    ("Negate", "neg"), ("Abs", "abs"), ("Resize Bilinear", "resize"),
]  # fmt: skip


#: a runtime operator that XNNPACK made of a graph node of another kind: a 1×1 convolution runs as a GEMM
STANDS_FOR = {("fc", "conv")}


def runtime_category(name: str) -> str:
    """The kind of runtime work an ETDump event name stands for (its number stripped)."""
    base = re.sub(r" #\d+$", "", name)
    for prefix, cat in RUNTIME_CATEGORY:
        if base.startswith(prefix):
            return cat
    return base.split(" (")[0].lower()


def precision(name: str) -> str:
    """From XNNPACK's operator name: ``(NHWC, QC8)``, ``(NC, QS8, QC8W)``, ``(NC, F32)``, ``(ND, X8)``."""
    inside = re.search(r"\(([^)]*)\)", name)
    tags = [t.strip() for t in inside.group(1).split(",")] if inside else []
    if any(t.startswith(("QS8", "QU8", "QC8", "QD8", "QC4", "QB4", "QP8")) for t in tags):
        return "int8"
    if "F16" in tags:
        return "fp16"
    if "F32" in tags:
        return "fp32"
    if "X8" in tags:
        return "int8 (data movement)"
    if "X32" in tags:
        return "fp32 (data movement)"
    return ""


def align(ops: list[str], xnodes: list[dict[str, object]]) -> list[int | None]:
    """Logged operator i → XNNPACK graph node index (same category, in order). Graph nodes may be skipped (XNNPACK
    fused them at run time); an operator only when nothing matches it."""
    n, m = len(ops), len(xnodes)
    best = [[-1e9] * (m + 1) for _ in range(n + 1)]
    back: list[list[str | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    best[0] = [-0.1 * j for j in range(m + 1)]
    for i in range(1, n + 1):
        best[i][0], back[i][0] = best[i - 1][0] - 5, "op"
        cat = runtime_category(ops[i - 1])
        for j in range(1, m + 1):
            cands = [(best[i][j - 1] - 0.1, "node"), (best[i - 1][j] - 5, "op")]
            node_cat = xnodes[j - 1].get("category")
            if node_cat == cat:
                cands.append((best[i - 1][j - 1] + 2, "match"))
            elif (cat, node_cat) in STANDS_FOR:
                cands.append((best[i - 1][j - 1] + 1.5, "match"))
            best[i][j], back[i][j] = max(cands)
    out: list[int | None] = [None] * n
    i, j = n, m
    while i > 0:
        step = back[i][j]
        if step == "match":
            out[i - 1], i, j = j - 1, i - 1, j - 1
        elif step == "node":
            j -= 1
        else:
            i -= 1
    return out


def etdump_events(etdump: Path) -> tuple[dict[int, list[tuple[str, list[float], bool]]], list[float]]:
    """Per instruction: (event name, raw ms samples, delegate-internal?); and Method::execute's samples."""
    from ..profile.ops import timed_events

    per_instr: dict[int, list[tuple[str, list[float], bool]]] = defaultdict(list)
    method: list[float] = []
    for ev in timed_events(etdump):
        if ev.name == "Method::execute":
            method = list(ev.perf_data.raw)
        elif ev.name != "OPERATOR_CALL":
            per_instr[ev._instruction_id].append((ev.name, list(ev.perf_data.raw), bool(ev.is_delegated_op)))
    return per_instr, method


def p50(raw: list[float]) -> float:
    """Per run: the samples of one run summed (an operator may run more than once a run), then the median."""
    from ..profile.stats import percentile

    return percentile(sorted(raw), 50) if raw else 0.0
