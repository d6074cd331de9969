"""A profile's figures from a worker's raw result: memory (baseline, after load, peak, and the program's planned
memory beside them), energy proxies (CPU time, joules from RAPL or the power model, labelled), the noise floor, the
measurement's warnings and the target's budget checks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypedDict

from ..runner import energy as energy_mod
from ..runner.protocol import Engine, WorkerResult
from ..runner.worker import Watch
from ..targets import Target
from .options import ProfileOptions
from .result import EnergyResult, MemoryResult, NoiseFloor
from .stats import LatencyStats, measurement_warnings
from .subject import Subject

if TYPE_CHECKING:
    from ..runner.energy import RaplDomain
    from .measure import CpuFreq

_MB = 2**20


class BudgetCheckRow(TypedDict):
    name: str  # p50_ms | peak_rss_mb
    limit: float
    value: float
    ok: bool


class ProfileBudget(TypedDict):
    """A profile's ``budget``: the target's latency and memory budget against what was measured."""

    target: str
    checks: list[BudgetCheckRow]
    notes: list[str]  # budgets that could not be checked, and why


def _mb(b: float | int | None) -> float | None:
    return None if b is None or b < 0 else round(b / _MB, 3)


_BASELINE_NOTES = {
    Engine.NATIVE: "the native runner with the ExecuTorch runtime's shared libraries mapped, before loading the program",
    Engine.PYTHON: "a Python interpreter with executorch.runtime imported (it pulls in torch): the program's own memory is the delta",
    Engine.EAGER: "a Python interpreter with torch imported: the model's own memory is the delta",
}


def memory_figures(raw: WorkerResult, watch: Watch, subject: Subject, engine: Engine, method: str) -> MemoryResult:
    """The worker's memory figures in MiB: baseline, after load, peak (VmHWM against the sampler), USS, program size."""
    base = raw.rss_baseline_bytes
    # Not getrusage's ru_maxrss: Linux carries it across exec, so the worker would inherit the high-water mark
    # of the forked Python parent (torch loaded, hundreds of MiB). VmHWM is the same kernel counter for the
    # worker's own address space, reset at exec.
    peak_sources = {"sampler_rss": _mb(watch.peak_rss), "vm_hwm": _mb(raw.hwm_bytes)}
    peak = max((v for v in peak_sources.values() if v is not None), default=0.0)
    return MemoryResult(
        baseline_rss_mb=_mb(base) or 0.0,
        load_rss_mb=_mb(raw.rss_after_load_bytes) or 0.0,
        peak_rss_mb=peak,
        load_delta_mb=round((raw.rss_after_load_bytes - base) / _MB, 3),
        peak_delta_mb=round(peak - base / _MB, 3),
        peak_sources_mb=peak_sources,
        uss_mb=_mb(watch.peak_uss) if watch.peak_uss else None,
        planned_mb=subject.info.planned_memory(method).planned_mb if subject.info else None,
        pte_size_mb=_mb(subject.info.size_bytes) if subject.info else None,
        baseline_note=_BASELINE_NOTES[engine],
    )


def energy_figures(
    raw: WorkerResult,
    stats: LatencyStats,
    watch: Watch,
    rapl: list[RaplDomain],
    tgt: Target,
    freq: CpuFreq | None,
    battery: dict[str, object] | None,
    device: dict[str, object] | None = None,
) -> EnergyResult:
    """CPU time and context switches of the timed runs; joules from RAPL, else the target's power model (labelled)."""
    cpu = raw.cpu_timed
    cpu_s = cpu.user_s + cpu.sys_s
    n = max(1, stats.count)
    timed_wall = raw.timed_wall_s or 1e-9
    marks = watch.rapl_marks
    joules = energy_mod.rapl_joules(rapl, marks.get("timed"), marks.get("ops") or marks.get("done"))
    if joules is not None:
        per_run, source, inputs = joules / n, "rapl", None
        note = "measured by RAPL for the whole CPU package (every process on the machine) during the timed runs"
    else:
        p = tgt.power
        per_run, source = (
            energy_mod.estimate_joules(cpu_s, timed_wall, p.active_watts_per_core, p.idle_watts) / n,
            "estimated",
        )
        model = f"device {device['name']}" if device and device.get("power_model") else f"target {tgt.name}"
        inputs = {
            "cpu_seconds": round(cpu_s, 6),
            "wall_seconds": round(timed_wall, 6),
            "active_watts_per_core": p.active_watts_per_core,
            "idle_watts": p.idle_watts,
            "power_model": model,
        }
        where = (
            f"edgekit reads no power sensor on device {device['name']} yet" if device else "RAPL is not readable here"
        )
        note = (
            f"ESTIMATED, not measured: {where}; joules = cpu_seconds × active_watts_per_core "
            f"+ wall_seconds × idle_watts from the {model.split()[0]}'s power model"
        )
    return EnergyResult(
        cpu_user_s=cpu.user_s,
        cpu_sys_s=cpu.sys_s,
        cpu_seconds_per_run=cpu_s / n,
        cpu_utilization=cpu_s / timed_wall,
        voluntary_ctx_switches=cpu.voluntary_ctx_switches,
        involuntary_ctx_switches=cpu.involuntary_ctx_switches,
        cpu_freq_mhz=freq,
        joules_per_run=per_run,
        joules_source=source,
        joules_note=note,
        estimate_inputs=inputs,
        battery=battery,
    )


#: Drift of the reference workload beyond which a profile warns: the machine moved more than this during it.
NOISE_WARN_PCT = 3.0


def noise_floor(raw: WorkerResult) -> NoiseFloor:
    """The reference workload timed before and after the runs, and how far the machine drifted between them."""
    before, after = raw.reference_before_ms, raw.reference_after_ms
    return NoiseFloor(before, after, round((after - before) / before * 100, 2) if before > 0 else 0.0)


def profile_warnings(
    raw: WorkerResult, stats: LatencyStats, opts: ProfileOptions, engine_note: str | None
) -> list[str]:
    """What a reader of the figures must know: measurement warnings, machine drift, threads not as asked."""
    warnings = measurement_warnings(stats, raw.first_run_ms, raw.warmup_ms)
    drift = noise_floor(raw).drift_pct
    if abs(drift) > NOISE_WARN_PCT:
        warnings.append(
            f"the machine itself drifted {drift:+.1f}% during this profile (a fixed reference workload, timed "
            "before and after): differences smaller than that cannot be told from noise"
        )
    if engine_note:
        warnings.insert(0, engine_note)
    if raw.threads_effective != opts.threads:
        warnings.append(f"asked for {opts.threads} threads, the runtime uses {raw.threads_effective}")
    cores = len(opts.cpus) if opts.cpus else (os.cpu_count() or 1)
    if opts.threads > cores:
        warnings.append(f"{opts.threads} threads on {cores} CPU(s): threads compete for cores and timings suffer")
    return warnings


def budget_checks(tgt: Target, stats: LatencyStats, memory: MemoryResult, engine: Engine) -> ProfileBudget:
    """The target's budget (p50, memory) against the figures measured, with notes where a check cannot apply."""
    checks: list[BudgetCheckRow] = []
    notes: list[str] = []
    b = tgt.budget
    if b.max_p50_ms is not None:
        checks.append(
            {"name": "p50_ms", "limit": b.max_p50_ms, "value": round(stats.p50, 4), "ok": stats.p50 <= b.max_p50_ms}
        )
    if b.max_peak_rss_mb is not None:
        if engine is Engine.NATIVE:
            checks.append(
                {
                    "name": "peak_rss_mb",
                    "limit": b.max_peak_rss_mb,
                    "value": memory.peak_rss_mb,
                    "ok": memory.peak_rss_mb <= b.max_peak_rss_mb,
                }
            )
        else:
            notes.append(
                f"max_peak_rss_mb not checked: the {engine.value} engine's RSS includes the Python interpreter"
            )
    return {"target": tgt.name, "checks": checks, "notes": notes}
