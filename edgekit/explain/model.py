"""What ``edgekit explain`` produces: its typed rows (module, time, fidelity, memory) and the plain readings of them every
renderer shares (the fidelity line, a dB cell, the summary, the sort orders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from .._contract import Contract

SORTS = ("order", "time", "sqnr")


@dataclass(frozen=True)
class ModuleRow(Contract):
    """One module of the user's model, in execution order."""

    module: str  # the module path, "(model)" for the root, "(XNNPACK layout)" for what XNNPACK inserted
    cls: str | None
    source: str | None  # file:line  code, the innermost frame of the user's own code
    order: int
    p50_ms: float  # per run, summed over its operators
    share: float  # of the program's p50 run (Method::execute in the ETDump runs)
    where: str  # "XNNPACK: Convolution (NHWC, QC8) IGEMM" or "portable: native_layer_norm — reason"
    precision: str  # int8, fp32, fp16, int8 (data movement), ...
    sqnr_db: float | None = None  # simulated output SQNR against fp32 (None: exact, folded or not measured)
    local_sqnr_db: float | None = None  # SQNR of this leaf alone: its own quantization, fed the exact fp32 inputs
    impact_sqnr_db: float | None = None  # the model's output SQNR with only this leaf's own error (what it does)
    leaf: bool = True  # a module with no submodule of its own (a layer, not a block)
    sqnr_note: str | None = None
    fused: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)  # the runtime operators charged to it (``... IGEMM #7``)

    @property
    def faithfulness(self) -> float | None:
        """What ranks the least faithful: the output SQNR with only this module quantized (its own output's SQNR in an
        explain.json from before that was measured)."""
        return self.impact_sqnr_db if self.impact_sqnr_db is not None else self.local_sqnr_db


@dataclass(frozen=True)
class MemoryPlanSummary(Contract):
    """The program's planned memory: arenas, the peak of live tensors and the modules alive at it."""

    arenas_bytes: list[int]
    planned_bytes: int
    peak_live_bytes: int
    peak_step: int
    peak_modules: list[str]
    steps: int
    tensors: int
    measured_peak_rss_mb: float | None
    note: str


@dataclass(frozen=True)
class Explanation(Contract):
    """Time and fidelity per module of one package, with its memory plan and notes."""

    package: str
    model: str
    target: str
    runs: int  # ETDump runs behind the times
    threads: int
    method_p50_ms: float  # the program's p50 in the ETDump runs
    untraced_p50_ms: float  # and without tracing (the profile's timed runs)
    rows: list[ModuleRow]
    unattributed_ms: float  # delegate overhead and operators no module could be named for
    fidelity: str  # how the SQNR column was measured, or why it is missing
    memory: MemoryPlanSummary | None
    notes: list[str] = field(default_factory=list)
    # the whole memory plan (every tensor's lifetime: explain.json's memory, pipeline.explain_memory.MemoryPlan), for
    # the HTML picture
    plan: dict[str, object] | None = None

    def slowest(self, n: int = 3) -> list[ModuleRow]:
        return sorted((r for r in self.rows if r.p50_ms > 0), key=lambda r: -r.p50_ms)[:n]

    def least_faithful(self, n: int = 3) -> list[ModuleRow]:
        """The layers that add the most noise themselves (not the last ones, where every earlier error arrives);
        modules that compute nothing in inference (Dropout, Identity, Flatten) are not candidates."""
        rows = [r for r in self.rows if r.faithfulness is not None and r.leaf and r.cls not in NO_COMPUTE]
        return sorted(rows, key=lambda r: r.faithfulness)[:n]


#: module classes that pass their input through in inference: never "the layer that makes the model wrong"
NO_COMPUTE = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity", "Flatten"})


#: a least faithful layer this far (dB) above the program's own SQNR is not what makes the program wrong
SPREAD_DB = 10.0


def spread_note(ex: Explanation, program_sqnr_db: float | None) -> str | None:
    """When no single layer explains the program's error: every layer alone is far more faithful than the whole."""
    worst = ex.least_faithful(1)
    if not worst or program_sqnr_db is None or worst[0].faithfulness - program_sqnr_db < SPREAD_DB:
        return None
    n = sum(1 for r in ex.rows if r.faithfulness is not None and r.leaf and r.cls not in NO_COMPUTE)
    return (
        f"no single layer makes this program wrong: with only the least faithful, {worst[0].module}, quantized the "
        f"output would be {worst[0].faithfulness:.1f} dB SQNR, and the program is {program_sqnr_db:.1f} dB against "
        f"your model — the error accumulates over {n} quantized modules, so keeping one in fp32 barely helps (edgekit "
        "tune's mixed precision keeps several; calibration data like the real inputs narrows every layer's ranges)"
    )


def fidelity_line(r: ModuleRow) -> str:
    """One least-faithful module, in words."""
    where = f" at {r.source.split()[0]}" if r.source else ""
    if r.impact_sqnr_db is None:  # an explain.json from before impact_sqnr_db
        return f"{r.module} ({r.cls or '?'}) alone {r.local_sqnr_db:.1f} dB SQNR at its output{where}"
    return (
        f"{r.module} ({r.cls or '?'}){where}: output {r.impact_sqnr_db:.1f} dB SQNR if only it were quantized (its own "
        f"output {r.local_sqnr_db:.1f} dB)"
    )


def db_cell(v: float | None) -> str:
    """A table cell for dB (a dash when there is none)."""
    return "–" if v is None else f"{v:.1f}"


class ExplainSummary(TypedDict):
    """:func:`summary`: a bench item's ``explain``."""

    slowest: list[str]
    least_faithful: list[str]
    note: str


def summary(ex: Explanation, n: int = 3) -> ExplainSummary:
    """The slowest and the least faithful modules, a line each (what ``bench report`` shows per item)."""

    def where(r: ModuleRow) -> str:
        return f" at {r.source.split()[0]}" if r.source else ""

    return {
        "slowest": [f"{r.module} ({r.cls or '?'}) {r.share:.1%}{where(r)}" for r in ex.slowest(n)],
        "least_faithful": [fidelity_line(r) for r in ex.least_faithful(n)],
        "note": "; ".join(ex.notes),
    }


def sort_rows(ex: Explanation, by: str) -> list[ModuleRow]:
    """The rows in the order ``--sort`` asks (one of :data:`SORTS`)."""
    if by == "time":
        return sorted(ex.rows, key=lambda r: -r.p50_ms)
    if by == "sqnr":  # the layers whose own quantization loses the most first
        return sorted(
            ex.rows, key=lambda r: (r.faithfulness is None, r.faithfulness if r.faithfulness is not None else 0.0)
        )
    return sorted(ex.rows, key=lambda r: r.order)
