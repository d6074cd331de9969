"""The profiler's parent: resolves what to run, prepares inputs, runs the measured worker, builds the result.

The worker is a separate process (the native C++ runner, or the Python worker), so a crash inside the
ExecuTorch runtime never takes the caller down, and the parent's own imports and memory never enter the
figures. The parent imports neither torch nor exir for a program: it starts in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ReferenceMismatchError, UsageError
from ..reference import ReferenceCheck, compare
from ..runner.protocol import Engine
from ..targets import Target, load_target
from .figures import budget_checks, energy_figures, memory_figures, noise_floor, profile_warnings
from .measure import measure_here, measure_on_device, resolve_target_device
from .options import ProfileOptions
from .result import SCHEMA_VERSION, Phases, ProfileResult
from .stats import summarize
from .subject import Subject, eager_subject, resolve_program


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
    from .. import kinds

    if program is not None and (kind := kinds.of_package(program)) is not kinds.TENSOR:
        raise UsageError(
            f"{program} is {kind.noun}: edgekit.profile measures runs of one input",
            "profile it with `edgekit profile`, which measures each kind of program its own way",
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

    memory = memory_figures(raw, watch, subject, engine, opts.method)
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
        energy=energy_figures(raw, stats, watch, m.rapl, tgt, m.freq, m.battery, m.device),
        ops=m.ops,
        budget=budget_checks(tgt, stats, memory, engine),
        warnings=tuple(m.warnings + profile_warnings(raw, stats, opts, engine_note)),
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
    from ..runner.native import pick_engine

    if eager:
        return Engine.EAGER, None, None
    if opts.engine is Engine.PYTHON and opts.ops:
        raise UsageError("--ops needs the native engine (it links the ETDump library)", "drop --engine python")
    engine, runner, missing = pick_engine(opts.engine)
    if missing is not None and opts.ops:
        raise UsageError(
            f"--ops needs the native engine (it links the ETDump library): {missing.message}",
            "install g++ or drop --ops",
        )
    return engine, runner, None if missing is None else f"using the python engine: {missing}"
