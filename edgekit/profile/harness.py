"""The profiler's parent: resolves what to run, prepares inputs, runs the measured worker, builds the result.

The worker is a separate process (the native C++ runner, or the Python worker), so a crash inside the
ExecuTorch runtime never takes the caller down, and the parent's own imports and memory never enter the
figures. The parent imports neither torch nor exir for a program: it starts in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ReferenceMismatchError, UsageError
from ..reference import ReferenceCheck, compare
from ..runner import energy as energy_mod
from ..runner.protocol import Engine, Loader, WorkerResult
from ..runner.worker import Watch
from ..targets import Target, load_target
from .measure import measure_here, measure_on_device, resolve_target_device
from .result import SCHEMA_VERSION, EnergyResult, MemoryResult, NoiseFloor, Phases, ProfileResult
from .stats import LatencyStats, measurement_warnings, summarize
from .subject import Subject, eager_subject, resolve_program

MB = 2**20


@dataclass(frozen=True)
class ProfileOptions:
    """How to measure. ``None`` takes the target's ``[profile]`` defaults."""

    runs: int | None = None
    warmup: int | None = None
    warmup_seconds: float = 0.5
    min_seconds: float | None = None
    max_seconds: float = 60.0
    threads: int | None = None
    cpus: tuple[int, ...] | None = None
    timeout: float = 300.0
    method: str = "forward"
    engine: Engine = Engine.AUTO
    ops: bool = False
    ops_runs: int = 20
    loader: Loader = Loader.MMAP
    batch: int | None = None
    save_outputs: str | None = None  # write the last run's outputs (raw bytes) here: compare engines and devices
    check: bool = True  # run the package's reference vectors first and fail on wrong answers (--no-check: don't)
    etdump_out: str | None = None  # with ops: keep the raw ETDump here (edgekit explain reads its events)

    def __post_init__(self) -> None:
        import math

        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise UsageError(f"--batch must be a positive integer, got {self.batch}", "e.g. --batch 8")
        for name in ("runs", "warmup", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "warmup" else 1)):
                raise UsageError(
                    f"--{name} must be {'>= 0' if name == 'warmup' else 'a positive integer'}, got {v}",
                    "e.g. --threads 2" if name == "threads" else f"e.g. --{name} 100",
                )
        for name in ("warmup_seconds", "min_seconds", "max_seconds", "timeout"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        for name, cls in (("engine", Engine), ("loader", Loader)):
            try:
                object.__setattr__(self, name, cls(getattr(self, name)))
            except ValueError:
                raise UsageError(
                    f"unknown {name} {getattr(self, name)!r}",
                    f"valid {name}s: " + ", ".join(e.value for e in cls if e is not Engine.EAGER),
                ) from None


def profile(
    program: str | Path | None = None,
    *,
    eager: Any = None,
    eager_inputs: Sequence[Any] = (),
    inputs: Any = None,
    target: str | Path | Target | None = None,
    options: ProfileOptions | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    device: Any = None,
    devices_file: str | Path | None = None,
    **overrides: Any,
) -> ProfileResult:
    """Profile an ExecuTorch program (``.pte`` or package folder) or an eager model, in a separate process.

    Args:
        program: a ``.pte`` file or a package folder from ``edgekit build`` (its sha256 is checked, and its
            target supplies defaults).
        eager: instead of a program, a model spec profiled as eager PyTorch (with ``eager_inputs`` specs).
        inputs: data for the inputs (.npz/.pt path or Dataset); random inputs of the program's shapes otherwise.
        target: supplies defaults (threads, warm-up, runs), budgets and the power model.
        options: a :class:`ProfileOptions`; keyword ``overrides`` (``runs=200, threads=2``) replace its fields.
        progress: called with (phase, done, total) while the worker runs.
        device: measure on this device instead of here: a name from the devices file, ``ssh://user@host[:port]``
            or a :class:`~edgekit.device.devices.Device` (native runner bundles only).
        devices_file: the devices file (default ``~/.config/edgekit/devices.toml``).

    Returns:
        A :class:`ProfileResult`; ``raise_for_budget()`` on it raises when the target's budget is exceeded.

    Raises:
        ProgramError, DataError, ProfileError, UsageError: one-line errors; the worker's crash or timeout
        becomes a ProfileError naming the signal or the timeout.

    Example:
        >>> prof = edgekit.profile("build/net", runs=200, threads=2)
        >>> print(prof.latency_ms.p50, prof.memory.peak_rss_mb)
    """
    from .generation import is_generation_package

    if program is not None and is_generation_package(program):
        raise UsageError(
            f"{program} is a generation program: it is measured in tokens per second, not runs of one input",
            "use edgekit.profile.generation.profile_generation (the CLI's edgekit profile does)",
        )
    opts = dataclasses.replace(options or ProfileOptions(), **overrides)
    subject = _subject(program, eager, eager_inputs, inputs, opts)
    dev = resolve_target_device(device, devices_file, subject, opts)
    tgt = load_target(target) if target is not None else (subject.target or load_target("xnnpack-fp32"))
    opts = _with_target_defaults(opts, tgt)
    if dev is not None and dev.power is not None:  # the device's own power model beats the target's generic one
        tgt = tgt.replace(
            power__active_watts_per_core=dev.power.active_watts_per_core, power__idle_watts=dev.power.idle_watts
        )
    engine, runner, engine_note = (Engine.NATIVE, None, None) if dev else _pick_engine(opts, subject.kind == "eager")
    with tempfile.TemporaryDirectory(prefix="edgekit-profile-") as tmpdir:
        m = (measure_on_device if dev else measure_here)(
            subject, opts, inputs, Path(tmpdir), progress, engine, runner, dev
        )
    raw, watch = m.raw, m.watch
    check = _reference_check(subject, opts, m, f"on device {dev.name}" if dev else "here")
    stats = summarize(raw.samples_ms)
    from ..machine import machine_facts

    memory = _memory(raw, watch, subject, engine, opts.method)
    subject.description.update(
        {
            "inputs": [{"shape": list(s), "dtype": d} for s, d in zip(subject.shapes, subject.dtypes)],
            "input_source": m.input_source,
        }
    )
    return ProfileResult(
        schema_version=SCHEMA_VERSION,
        engine=engine.value,
        engine_note=engine_note,
        subject=subject.description,
        threads={
            "requested": opts.threads,
            "effective": raw.threads_effective,
            "cpus": list(opts.cpus) if opts.cpus else None,
        },
        settings={
            "warmup": opts.warmup,
            "warmup_seconds": opts.warmup_seconds,
            "runs": opts.runs,
            "min_seconds": opts.min_seconds,
            "max_seconds": opts.max_seconds,
            "timeout": opts.timeout,
            "loader": raw.loader,
            "target": tgt.name,
            "worker_wall_s": round(watch.wall_s, 3),
        },
        phases=Phases(
            load_ms=raw.load_ms,
            first_run_ms=raw.first_run_ms,
            warmup_runs=len(raw.warmup_ms),
            warmup_mean_ms=(sum(raw.warmup_ms) / len(raw.warmup_ms)) if raw.warmup_ms else None,
        ),
        latency_ms=stats,
        samples_ms=tuple(raw.samples_ms),
        memory=memory,
        energy=_energy(raw, stats, watch, m.rapl, tgt, m.freq, m.battery, m.device),
        ops=m.ops,
        budget=_budget(tgt, stats, memory, engine),
        warnings=tuple(m.warnings + _warnings(raw, stats, opts, engine_note)),
        machine=m.device["facts"] if m.device else machine_facts(),
        noise=noise_floor(raw),
        device=m.device,
        check=check,
    )


def _reference_check(subject: Subject, opts: ProfileOptions, m: Any, where: str) -> ReferenceCheck:
    """The reference vectors' outputs against the user's model.

    Raises:
        ReferenceMismatchError: an output is far less faithful than the program was when it was built.
    """
    if subject.kind != "program":
        return ReferenceCheck(status="n/a", note="an eager model is its own reference")
    if subject.reference is None:
        return ReferenceCheck(status="absent", note=subject.reference_note)
    if not opts.check:
        return ReferenceCheck(status="skipped", note="--no-check: the answers were not checked")
    check = compare(subject.reference, m.check_outputs or b"", where)
    if check.status == "failed":
        raise ReferenceMismatchError(
            check.note,
            "check the device and its runtime (a broken kernel, a wrong library; "
            "under qemu use -cpu cortex-a76); --no-check measures anyway",
        )
    return check


# ------------------------------------------------------------------------------------------------ steps
def _subject(program: Any, eager: Any, eager_inputs: Sequence[Any], inputs: Any, opts: ProfileOptions) -> Subject:
    if (program is None) == (eager is None):
        raise UsageError(
            "give either a program or an eager model spec",
            "edgekit profile build/net, or --eager pkg.mod:make --input ...",
        )
    if opts.cpus:
        import psutil

        valid = set(range(psutil.cpu_count() or 1))
        bad = [c for c in opts.cpus if c not in valid]
        if bad:
            raise UsageError(
                f"--cpus {','.join(map(str, bad))} does not exist on this machine", f"valid CPUs: 0-{max(valid)}"
            )
    if eager is None:
        return resolve_program(program, opts.method)
    if opts.ops:
        raise UsageError("--ops needs an ExecuTorch program, not --eager", "drop --ops")
    if inputs is not None:
        raise UsageError("--inputs is for programs; eager models take --input specs", "drop --inputs")
    return eager_subject(eager, eager_inputs, opts.batch)


def _with_target_defaults(opts: ProfileOptions, tgt: Target) -> ProfileOptions:
    cfg = tgt.profile
    return dataclasses.replace(
        opts,
        runs=opts.runs if opts.runs is not None else cfg.runs,
        warmup=opts.warmup if opts.warmup is not None else cfg.warmup,
        threads=opts.threads if opts.threads is not None else cfg.threads,
        min_seconds=opts.min_seconds if opts.min_seconds is not None else cfg.min_seconds,
    )


def _pick_engine(opts: ProfileOptions, eager: bool) -> tuple[Engine, Path | None, str | None]:
    from ..runner.native import NativeUnavailable, runner_path

    if eager:
        return Engine.EAGER, None, None
    if opts.engine is Engine.PYTHON:
        if opts.ops:
            raise UsageError("--ops needs the native engine (it links the ETDump library)", "drop --engine python")
        return Engine.PYTHON, None, None
    try:
        return Engine.NATIVE, runner_path(), None
    except NativeUnavailable as exc:
        if opts.engine is Engine.NATIVE:
            raise
        if opts.ops:
            raise UsageError(
                f"--ops needs the native engine (it links the ETDump library): {exc.message}",
                "install g++ or drop --ops",
            ) from None
        return Engine.PYTHON, None, f"using the python engine: {exc}"


def _mb(b: float | int | None) -> float | None:
    return None if b is None or b < 0 else round(b / MB, 3)


_BASELINE_NOTES = {
    Engine.NATIVE: "the native runner with the ExecuTorch runtime's shared libraries mapped, before loading the program",
    Engine.PYTHON: "a Python interpreter with executorch.runtime imported (it pulls in torch): the program's own memory is the delta",
    Engine.EAGER: "a Python interpreter with torch imported: the model's own memory is the delta",
}


def _memory(raw: WorkerResult, watch: Watch, subject: Subject, engine: Engine, method: str) -> MemoryResult:
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
        load_delta_mb=round((raw.rss_after_load_bytes - base) / MB, 3),
        peak_delta_mb=round(peak - base / MB, 3),
        peak_sources_mb=peak_sources,
        uss_mb=_mb(watch.peak_uss) if watch.peak_uss else None,
        planned_mb=subject.info.planned_memory(method)["planned_mb"] if subject.info else None,
        pte_size_mb=_mb(subject.info.size_bytes) if subject.info else None,
        baseline_note=_BASELINE_NOTES[engine],
    )


def _energy(
    raw: WorkerResult,
    stats: LatencyStats,
    watch: Watch,
    rapl: list,
    tgt: Target,
    freq: dict | None,
    battery: dict | None,
    device: dict | None = None,
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
    before, after = raw.reference_before_ms, raw.reference_after_ms
    return NoiseFloor(before, after, round((after - before) / before * 100, 2) if before > 0 else 0.0)


def _warnings(raw: WorkerResult, stats: LatencyStats, opts: ProfileOptions, engine_note: str | None) -> list[str]:
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


def _budget(tgt: Target, stats: LatencyStats, memory: MemoryResult, engine: Engine) -> dict:
    checks, notes = [], []
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


def parse_threads(text: str) -> list[int]:
    """``2`` or ``1,2,4`` → thread counts (each >= 1)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"--threads {text!r} is not a number or a comma-separated list", "e.g. --threads 2 or --threads 1,2"
        ) from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--threads {text!r}: thread counts must be >= 1", "e.g. --threads 2 or --threads 1,2")
    return values


def parse_cpus(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--cpus {text!r} is not a comma-separated list of CPU numbers", "e.g. --cpus 0,1") from None
