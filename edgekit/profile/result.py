"""What a profile returns: one typed, serialisable result per program (or eager model) and thread count."""

from __future__ import annotations

from dataclasses import dataclass

from .._contract import Contract
from ..errors import BudgetError
from ..reference import ReferenceCheck
from .stats import LatencyStats

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Phases(Contract):
    """The phases before the timed runs."""

    load_ms: float
    first_run_ms: float
    warmup_runs: int
    warmup_mean_ms: float | None


@dataclass(frozen=True)
class MemoryResult(Contract):
    """RSS of the worker in MiB: after imports (baseline), after load, peak during the runs, and deltas."""

    baseline_rss_mb: float
    load_rss_mb: float
    peak_rss_mb: float
    load_delta_mb: float
    peak_delta_mb: float
    peak_sources_mb: dict[str, float | None]
    uss_mb: float | None
    planned_mb: float | None
    pte_size_mb: float | None
    baseline_note: str


@dataclass(frozen=True)
class EnergyResult(Contract):
    """Energy proxies of the timed runs. ``joules_source`` says whether joules were measured or estimated."""

    cpu_user_s: float
    cpu_sys_s: float
    cpu_seconds_per_run: float
    cpu_utilization: float
    voluntary_ctx_switches: int
    involuntary_ctx_switches: int
    cpu_freq_mhz: dict[str, int | float | None] | None  # current, min, max
    joules_per_run: float | None
    joules_source: str  # "rapl" | "estimated"
    joules_note: str
    estimate_inputs: dict[str, int | float | str] | None  # the power model's inputs, when joules are estimated
    battery: dict[str, object] | None  # its state before and after, where there is one


@dataclass(frozen=True)
class NoiseFloor(Contract):
    """The machine's own drift during a profile: a fixed reference workload timed before the warm-up and after the
    timed runs. A change in the model smaller than this drift cannot be told from the machine moving."""

    reference_before_ms: float
    reference_after_ms: float
    drift_pct: float  # (after - before) / before, in percent
    note: str = (
        "a fixed scalar/SIMD loop timed before the warm-up and after the timed runs (median of 5 each); "
        "frequency scaling, thermal throttling and neighbours move it, the model does not"
    )


@dataclass(frozen=True)
class ProfileResult(Contract):
    """One profile of one program (or eager model) at one thread count.

    Example:
        >>> prof = edgekit.profile("build/net", runs=200, threads=2)
        >>> prof.latency_ms.p50, prof.memory.peak_rss_mb, prof.energy.cpu_seconds_per_run
    """

    schema_version: int
    engine: str
    engine_note: str | None
    subject: dict[str, object]  # what was profiled: the package or .pte, its sha256 and method, the inputs
    threads: dict[str, int | list[int] | None]  # requested, effective, cpus
    settings: dict[str, str | bool | int | float | None]  # warm-up, runs, time limits, loader, target
    phases: Phases
    latency_ms: LatencyStats
    samples_ms: tuple[float, ...]
    memory: MemoryResult
    energy: EnergyResult
    ops: dict[str, object] | None  # with --ops: the operator table (edgekit.profile.ops.OpTable)
    budget: dict[str, object]  # the target's checks: target, checks (name, limit, value, ok), notes
    warnings: tuple[str, ...]
    machine: dict[str, str | bool | int | float | None]  # machine_facts(), or a device's facts
    noise: NoiseFloor | None = None
    device: dict[str, object] | None = None  # with --device: the device, its facts before and after, bytes sent
    check: ReferenceCheck | None = None  # the package's reference vectors, run first: passed, or why not checked

    @property
    def budget_failures(self) -> list[dict[str, object]]:
        return [c for c in self.budget.get("checks", []) if not c["ok"]]

    def raise_for_budget(self) -> None:
        """Raise :class:`BudgetError` when a latency or memory budget of the target was exceeded."""
        failed = self.budget_failures
        if failed:
            raise BudgetError(
                "budget exceeded: "
                + "; ".join(
                    f"{c['name']} {c['value']} > {c['limit']} ({self.threads['effective']} thread(s))" for c in failed
                ),
                "relax the target's [budget], or make the program faster or smaller",
            )
