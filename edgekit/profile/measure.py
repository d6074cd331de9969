"""Running the measured worker: here (native runner or Python worker, watched and sampled) or on a device over ssh.
Either way the result is one :class:`Measured`: the worker's protocol result, what the watcher saw, and the facts
read around the run."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..runner import energy as energy_mod
from ..runner.energy import RaplDomain
from ..runner.protocol import CHECK_INPUTS, CHECK_OUTPUTS, OUTPUTS, RESULT, Engine, WorkerResult, read_result
from ..runner.worker import Progress, Watch, run_worker
from .options import ProfileOptions
from .subject import Subject, program_inputs, random_inputs, to_bytes

if TYPE_CHECKING:
    from ..data import DataSource
    from ..device.devices import Device
    from ..device.remote import DeviceRunInfo
    from .ops import OpTable

#: CPU frequencies in MHz (here: current, min and max; on a device: per CPU)
CpuFreq = dict[str, "float | None"]


@dataclass
class Measured:
    """One worker run, here or on a device, with what was read around it."""

    raw: WorkerResult
    watch: Watch
    input_source: str
    rapl: list[RaplDomain] = field(default_factory=list)
    freq: CpuFreq | None = None
    battery: dict[str, object] | None = None  # the battery before and after (energy.battery_change)
    ops: OpTable | None = None
    device: dict[str, object] | None = None  # the device run's facts (remote.DeviceRunInfo, files as their hash)
    warnings: list[str] = field(default_factory=list)
    check_outputs: bytes | None = None  # the reference sets' outputs, raw (when the check ran)


def measure_here(
    subject: Subject,
    opts: ProfileOptions,
    inputs: DataSource | None,
    tmp: Path,
    progress: Progress | None,
    engine: Engine,
    runner: Path | None,
    dev: Device | None,
) -> Measured:
    blobs, source = _input_blobs(subject, opts, inputs)
    (tmp / "inputs.bin").write_bytes(b"".join(blobs))
    check = _check_blob(subject, opts)
    if check is not None:
        (tmp / CHECK_INPUTS).write_bytes(check)
    cmd, env = _command(engine, runner, subject, opts, tmp)
    rapl = energy_mod.rapl_domains()
    freq, batt_before = energy_mod.cpu_freq_mhz(), energy_mod.battery()
    watch = run_worker(cmd, timeout=opts.timeout, cpus=opts.cpus, progress=progress, rapl=rapl, env=env)
    battery = energy_mod.battery_change(batt_before, energy_mod.battery())
    _save_outputs(tmp / OUTPUTS, opts)
    if opts.ops and opts.etdump_out and (tmp / "run.etdp").is_file():
        shutil.copyfile(tmp / "run.etdp", opts.etdump_out)
    return Measured(
        read_result(tmp / RESULT),
        watch,
        source,
        rapl,
        freq,
        battery,
        _ops(tmp / "run.etdp") if opts.ops else None,
        check_outputs=(tmp / CHECK_OUTPUTS).read_bytes() if check is not None else None,
    )


def _save_outputs(produced: Path | None, opts: ProfileOptions) -> None:
    if opts.save_outputs and produced is not None and produced.is_file():
        from ..fileops import temp_name

        dest = Path(opts.save_outputs)
        tmp = dest.with_name(temp_name(dest.name))
        shutil.copyfile(produced, tmp)
        os.replace(tmp, dest)


def measure_on_device(
    subject: Subject,
    opts: ProfileOptions,
    inputs: DataSource | None,
    tmp: Path,
    progress: Progress | None,
    engine: Engine,
    runner: Path | None,
    dev: Device,
) -> Measured:
    from ..device.remote import profile_on_device

    blobs, source = _input_blobs(subject, opts, inputs)
    run = profile_on_device(
        dev,
        subject.pte,
        blobs,
        _check_blob(subject, opts),
        _worker_args(subject, opts, Path("."), remote=True),
        timeout=opts.timeout,
        cpus=opts.cpus,
        progress=progress,
        local=tmp,
        backend=subject.target.backend.value if subject.target is not None else "xnnpack",
    )
    outputs, check_out = run.info["outputs"], run.info["check_outputs"]  # fetched files, not part of the record
    info: dict[str, object] = {k: v for k, v in run.info.items() if k not in ("outputs", "check_outputs")}
    _save_outputs(outputs, opts)
    info["outputs_sha256"] = hashlib.sha256(outputs.read_bytes()).hexdigest() if outputs else None
    info["power_model"] = dev.power is not None
    return Measured(
        run.raw,
        run.watch,
        source,
        device=info,
        warnings=device_warnings(dev, run.info),
        check_outputs=check_out.read_bytes() if check_out is not None else None,
    )


def device_warnings(dev: Device, info: DeviceRunInfo) -> list[str]:
    """What a device run's figures need said beside them: an emulator, a CPU frequency that dropped."""
    warnings = []
    if info["emulated"]:
        warnings.append(
            f"device {dev.name} runs through an emulator ({dev.exec_prefix.split()[0]}): its timings and memory "
            "mean nothing for real hardware; its outputs do"
        )
    before, after = info["before"].get("cpu_freq_mhz") or {}, info["after"].get("cpu_freq_mhz") or {}
    dropped = [c for c in before if c in after and after[c] < 0.95 * before[c]]
    if dropped:
        warnings.append(
            f"CPU frequency dropped during the run on {', '.join(dropped[:4])} "
            f"({before[dropped[0]]:g} → {after[dropped[0]]:g} MHz): the board throttled or scaled down"
        )
    return warnings


def reject_python_on_device(engine: Engine | str, ops: bool = False) -> None:
    """``--device`` runs the native runner bundle: ``--engine python`` (and ``--ops``) are for local profiles."""
    given = [flag for flag, on in (("--engine python", Engine(engine) is Engine.PYTHON), ("--ops", ops)) if on]
    if given:
        said = " and ".join(given)
        raise UsageError(
            f"--device uses the native runner bundle: {said} {'is' if len(given) == 1 else 'are'} for local profiles",
            f"drop {said}, or profile here without --device",
        )


def resolve_target_device(
    device: str | Device | None, devices_file: str | Path | None, subject: Subject, opts: ProfileOptions
) -> Device | None:
    if device is None:
        return None
    from ..device.devices import resolve_device

    if subject.kind != "program":
        raise UsageError("--device profiles ExecuTorch programs, not --eager models", "drop --eager, or drop --device")
    reject_python_on_device(opts.engine, opts.ops)
    return resolve_device(device, devices_file)


def _check_blob(subject: Subject, opts: ProfileOptions) -> bytes | None:
    """The reference sets' input bytes, when the program is checked (a package with reference vectors, not --no-check)."""
    return subject.reference.input_bytes() if subject.reference is not None and opts.check else None


def _input_blobs(subject: Subject, opts: ProfileOptions, inputs: DataSource | None) -> tuple[list[bytes], str]:
    if subject.kind == "program":
        return program_inputs(subject, opts.method, inputs, opts.batch)
    arrays = random_inputs(subject.shapes, subject.dtypes)
    return [to_bytes(a, d) for a, d in zip(arrays, subject.dtypes)], "random (seed 0)"


def _worker_args(subject: Subject, opts: ProfileOptions, folder: Path, remote: bool = False) -> list[str]:
    """The protocol's options for one run, with its files in ``folder`` (``remote``: the program is there too)."""
    args = [
        "--inputs",
        str(folder / "inputs.bin"),
        "--result",
        str(folder / RESULT),
        "--method",
        opts.method,
        "--threads",
        str(opts.threads),
        "--warmup",
        str(opts.warmup),
        "--warmup-seconds",
        str(opts.warmup_seconds),
        "--runs",
        str(opts.runs),
        "--min-seconds",
        str(opts.min_seconds),
        "--max-seconds",
        str(opts.max_seconds),
    ]
    if subject.kind == "program":
        args += ["--model", str(folder / "model.pte") if remote else str(subject.pte)]
    if remote or opts.save_outputs:
        args += ["--outputs", str(folder / OUTPUTS)]
    for s in subject.shapes:
        args += ["--shape", ",".join(map(str, s))]
    if subject.reference is not None and opts.check:
        args += [
            "--check-inputs",
            str(folder / CHECK_INPUTS),
            "--check-outputs",
            str(folder / CHECK_OUTPUTS),
            "--check-count",
            str(subject.reference.section.samples),
        ]
        for s in subject.reference.set_shapes():
            args += ["--check-shape", ",".join(map(str, s))]
    return args


def _command(
    engine: Engine, runner: Path | None, subject: Subject, opts: ProfileOptions, tmp: Path
) -> tuple[list[str], dict[str, str] | None]:
    """The worker's command line (protocol.WORKER_OPTIONS) and, for Python workers, its environment."""
    common = _worker_args(subject, opts, tmp)
    if engine is Engine.NATIVE:
        cmd = [str(runner), "--loader", opts.loader.value, *common]
        if opts.ops:
            cmd += ["--etdump", str(tmp / "run.etdp"), "--etdump-runs", str(opts.ops_runs)]
        return cmd, None
    cmd = [sys.executable, "-m", "edgekit.runner.pyworker", *common]
    if subject.kind == "eager":
        cmd += ["--eager", subject.eager_spec]
    for d in subject.dtypes:
        cmd += ["--dtype", d]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *[p for p in sys.path if p]])
    return cmd, env


def _ops(etdump: Path) -> OpTable | None:
    from .ops import op_table

    return op_table(etdump) if etdump.exists() else None
