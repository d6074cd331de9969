"""The profiler's parent: prepares inputs, spawns the measured worker, watches it, and builds the result.

The worker is a separate process (the native C++ runner, or the Python worker), so a crash inside the
ExecuTorch runtime never takes the caller down, and the parent's own imports and memory never enter the
figures. The parent samples the worker's RSS with psutil while it runs and enforces the timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DataError, ProfileError, ProgramError, UsageError
from ..program import ProgramInfo, inspect_program
from ..targets import Target, load_target, target_from_dict
from . import energy as energy_mod
from .stats import LatencyStats, measurement_warnings, summarize

SCHEMA_VERSION = 1
MB = 2**20
ENGINES = ("auto", "native", "python")


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
    engine: str = "auto"
    ops: bool = False
    ops_runs: int = 20
    loader: str = "mmap"
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise UsageError(f"--batch must be a positive integer, got {self.batch}", "e.g. --batch 8")
        for name in ("runs", "warmup", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < (0 if name == "warmup" else 1)):
                raise UsageError(f"--{name} must be {'>= 0' if name == 'warmup' else 'a positive integer'}, got {v}",
                                 "e.g. --threads 2" if name == "threads" else f"e.g. --{name} 100")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}", "valid engines: " + ", ".join(ENGINES))
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        if self.loader not in ("mmap", "file"):
            raise UsageError(f"unknown loader {self.loader!r}", "valid loaders: mmap, file")


@dataclass(frozen=True)
class Phases:
    """The phases before the timed runs."""

    load_ms: float
    first_run_ms: float
    warmup_runs: int
    warmup_mean_ms: float | None


@dataclass(frozen=True)
class MemoryResult:
    """RSS of the worker in MiB: after imports (baseline), after load, peak during the runs, and deltas."""

    baseline_rss_mb: float
    load_rss_mb: float
    peak_rss_mb: float
    load_delta_mb: float
    peak_delta_mb: float
    peak_sources_mb: dict
    uss_mb: float | None
    planned_mb: float | None
    pte_size_mb: float | None
    baseline_note: str


@dataclass(frozen=True)
class EnergyResult:
    """Energy proxies of the timed runs. ``joules_source`` says whether joules were measured or estimated."""

    cpu_user_s: float
    cpu_sys_s: float
    cpu_seconds_per_run: float
    cpu_utilization: float
    voluntary_ctx_switches: int
    involuntary_ctx_switches: int
    cpu_freq_mhz: dict | None
    joules_per_run: float | None
    joules_source: str
    joules_note: str
    estimate_inputs: dict | None
    battery: dict | None


@dataclass(frozen=True)
class ProfileResult:
    """One profile of one program (or eager model) at one thread count.

    Example:
        >>> prof = edgekit.profile("build/net", runs=200, threads=2)
        >>> prof.latency_ms.p50, prof.memory.peak_rss_mb, prof.energy.cpu_seconds_per_run
    """

    engine: str
    engine_note: str | None
    subject: dict
    threads: dict
    settings: dict
    phases: Phases
    latency_ms: LatencyStats
    samples_ms: tuple[float, ...]
    memory: MemoryResult
    energy: EnergyResult
    ops: dict | None
    budget: dict
    warnings: tuple[str, ...]
    machine: dict
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["latency_ms"] = self.latency_ms.to_dict()
        d["samples_ms"] = list(self.samples_ms)
        d["warnings"] = list(self.warnings)
        return {"schema_version": d.pop("schema_version"), **d}

    @property
    def budget_failures(self) -> list[dict]:
        return [c for c in self.budget.get("checks", []) if not c["ok"]]


# ------------------------------------------------------------------------------------------ subjects
@dataclass
class _Subject:
    kind: str  # "program" | "eager"
    description: dict
    target: Target | None
    pte: Path | None = None
    info: ProgramInfo | None = None
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    eager_spec: str | None = None


def resolve_program(path: str | Path, method: str = "forward") -> tuple[Path, ProgramInfo, Target | None, dict]:
    """A ``.pte`` or a package folder → (pte path, program info, the package's target, description).

    Raises:
        ProgramError: missing, not a program, no such method, or a package whose sha256 does not match.
    """
    p = Path(path)
    target = None
    desc: dict = {"path": str(p)}
    if p.is_dir():
        manifest_path = p / "manifest.json"
        if not manifest_path.is_file():
            raise ProgramError(f"{p} is a folder without manifest.json", "pass a package from `edgekit build` or a .pte file")
        try:
            manifest = json.loads(manifest_path.read_text())
            pte = p / manifest["program"]["file"]
            expected = manifest["program"]["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProgramError(f"{manifest_path} is not an edgekit manifest ({exc})", "rebuild the package") from None
        if not pte.is_file():
            raise ProgramError(f"package {p} has no {pte.name}", "rebuild the package")
        data = pte.read_bytes()  # read once: hashed here, parsed by inspect_program
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ProgramError(f"{pte} does not match its manifest (sha256 {actual[:12]}… ≠ {expected[:12]}…): the file changed after the build",
                               "rebuild the package, or profile the .pte file directly")
        try:
            target = target_from_dict(manifest["target"], f"{manifest_path}#target")
        except Exception:  # an older or edited manifest: profile with the default settings
            target = None
        desc.update({"package": str(p), "model": manifest.get("model", {}).get("spec"), "target": manifest["target"].get("name")})
    else:
        pte, data = p, None
    info = inspect_program(pte, data)
    info.method(method)  # raises with the list of methods
    desc.update({"pte": str(pte), "sha256": info.sha256, "size_bytes": info.size_bytes, "method": method})
    return pte, info, target, desc


def _batch_shapes(metas: Any, batch: int | None, data_rows: int | None) -> list[tuple[int, ...]]:
    """The shapes to run: the program's own, or with ``batch`` (dynamic programs only, within their bound)."""
    shapes = []
    for i, m in enumerate(metas):
        shape = tuple(m.shape)
        want = batch
        if want is None and data_rows is not None and m.dynamic and shape:
            want = min(data_rows, shape[0])  # real inputs with fewer samples than the bound: run what was given
        if want is not None and shape and want != shape[0]:
            if not m.dynamic:
                raise UsageError(f"--batch {want}: input {i} of this program has a static batch of {shape[0]}",
                                 "build with --dynamic-batch MIN:MAX to profile other batch sizes")
            if want > shape[0]:
                raise UsageError(f"--batch {want} exceeds the program's largest batch, {shape[0]}",
                                 f"use --batch 1..{shape[0]}, or rebuild with a larger --dynamic-batch MAX")
            shape = (want, *shape[1:])
        shapes.append(shape)
    return shapes


def _program_inputs(info: ProgramInfo, method: str, source: Any, batch: int | None = None
                    ) -> tuple[list[tuple[int, ...]], list[str], list[Any], str]:
    """Input shapes, dtypes and arrays for a program: from ``source`` (checked), else random."""
    import numpy as np

    metas = info.method(method).inputs
    dtypes = [m.dtype for m in metas]
    if source is None:
        shapes = _batch_shapes(metas, batch, None)
        rng = np.random.default_rng(0)
        arrays = []
        for shape, dt in zip(shapes, dtypes):
            if dt.startswith("float") or dt == "bfloat16":
                arrays.append(rng.standard_normal(shape).astype(np.float32 if dt == "bfloat16" else dt))
            elif dt == "bool":
                arrays.append(rng.integers(0, 2, shape).astype(bool))
            else:
                arrays.append(rng.integers(0, 10, shape).astype(dt))
        return shapes, dtypes, arrays, "random (seed 0)"
    from ..data import load_dataset

    ds = source if hasattr(source, "inputs") else load_dataset(source)
    shapes = _batch_shapes(metas, batch, int(ds.inputs[0].shape[0]) if ds.inputs[0].dim() else None)
    if len(ds.inputs) != len(metas):
        raise DataError(f"--inputs {ds.source} has {len(ds.inputs)} input array(s) but the program takes {len(metas)}",
                        "store one array per program input (x0, x1, ...)")
    arrays = []
    for i, (t, shape, dt) in enumerate(zip(ds.inputs, shapes, dtypes)):
        arr = t.numpy()
        if tuple(arr.shape) != tuple(shape):
            if tuple(arr.shape[1:]) == tuple(shape[1:]) and arr.shape[0] >= shape[0]:
                arr = arr[: shape[0]]  # sample-first data: take the program's batch
            elif tuple(arr.shape) == tuple(shape[1:]) and shape[0] == 1:
                arr = arr[None]
            else:
                raise DataError(f"--inputs {ds.source} input {i} has shape {tuple(arr.shape)} but the program expects {tuple(shape)}",
                                "save N x " + "x".join(map(str, shape[1:])) + " samples")
        if str(arr.dtype) != dt:
            both_float = arr.dtype.kind == "f" and (dt.startswith("float") or dt == "bfloat16")
            if not both_float:
                raise DataError(f"--inputs {ds.source} input {i} is {arr.dtype} but the program expects {dt}",
                                f"save it as {dt}")
            arr = arr.astype(dt)
        arrays.append(np.ascontiguousarray(arr))
    return shapes, dtypes, arrays, ds.source


# -------------------------------------------------------------------------------------------- worker
@dataclass
class _Watch:
    phase: str = "start"
    errors: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    peak_rss: int = 0
    peak_uss: int = 0
    rapl_marks: dict = field(default_factory=dict)


def _reader(stream: Any, watch: _Watch, progress: Callable[[str, int, int], None] | None, rapl: list) -> None:
    from .._noise import is_noise

    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line.startswith("@phase "):
            watch.phase = line.split(" ", 1)[1]
            if rapl and watch.phase in ("timed", "ops", "done"):
                watch.rapl_marks.setdefault(watch.phase, energy_mod.read_rapl(rapl))
            if progress:
                progress(watch.phase, 0, 0)
        elif line.startswith("@progress "):
            parts = line.split()
            if progress and len(parts) == 3:
                progress("timed", int(parts[1]), int(parts[2]))
        elif line.startswith("@error "):
            watch.errors.append(line[7:])
        elif line and not is_noise(line):
            watch.other.append(line)
            del watch.other[:-20]


def _sampler(pid: int, watch: _Watch, stop: threading.Event, interval: float = 0.002) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    last_uss = 0.0
    while not stop.is_set():
        if watch.phase in ("ops", "done"):  # the ETDump re-load after the timed runs is not the measured footprint
            return
        try:
            rss = proc.memory_info().rss
            watch.peak_rss = max(watch.peak_rss, rss)
            now = time.monotonic()
            if now - last_uss > 0.25:  # USS reads smaps: costly, so four times a second at most
                watch.peak_uss = max(watch.peak_uss, proc.memory_full_info().uss)
                last_uss = now
        except (psutil.Error, OSError):
            return
        stop.wait(interval)


def _run_worker(cmd: list[str], opts: ProfileOptions, progress: Callable[[str, int, int], None] | None,
                rapl: list, env: dict | None = None) -> tuple[_Watch, float]:
    def pin() -> None:  # runs in the child before exec: the measured process starts pinned
        os.setsid()
        if opts.cpus:
            import psutil

            psutil.Process().cpu_affinity(list(opts.cpus))

    watch = _Watch()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=pin, env=env)
    except OSError as exc:
        raise ProfileError(f"cannot start the profiling worker: {exc}", "check the installation") from exc
    stop = threading.Event()
    threads = [threading.Thread(target=_reader, args=(proc.stderr, watch, progress, rapl), daemon=True),
               threading.Thread(target=_sampler, args=(proc.pid, watch, stop), daemon=True)]
    for t in threads:
        t.start()
    status = None
    deadline = t0 + opts.timeout
    try:
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                raise ProfileError(f"the profiling worker exceeded the {opts.timeout:g} s timeout during phase '{watch.phase}' and was killed",
                                   "raise --timeout, or lower --runs / --max-seconds")
            time.sleep(0.005)
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2)
        proc.returncode = 0 if status is None else os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    code = proc.returncode
    if code < 0:
        name = signal.Signals(-code).name
        raise ProfileError(f"the profiling worker crashed with {name} during phase '{watch.phase}'"
                           + (" — the program is probably corrupt or incompatible" if watch.phase in ("load", "start") else ""),
                           "rebuild the program; compare with --engine python")
    if code != 0:
        reason = watch.errors[-1] if watch.errors else (watch.other[-1] if watch.other else f"exit code {code}")
        raise ProfileError(f"the profiling worker failed during phase '{watch.phase}': {reason}",
                           "check the program and inputs; see `edgekit profile --help`")
    return watch, wall


# ------------------------------------------------------------------------------------------- profile
def _pick_engine(opts: ProfileOptions, eager: bool) -> tuple[str, Path | None, str | None]:
    from .native import NativeUnavailable, runner_path

    if eager:
        return "eager", None, None
    if opts.engine == "python":
        return "python", None, None
    try:
        return "native", runner_path(), None
    except NativeUnavailable as exc:
        if opts.engine == "native":
            raise
        return "python", None, f"using the python engine: {exc}"


def _mb(b: float | int | None) -> float | None:
    return None if b is None or b < 0 else round(b / MB, 3)


def profile(
    program: str | Path | None = None,
    *,
    eager: Any = None,
    eager_inputs: Sequence[Any] = (),
    inputs: Any = None,
    target: str | Path | Target | None = None,
    options: ProfileOptions | None = None,
    progress: Callable[[str, int, int], None] | None = None,
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

    Returns:
        A :class:`ProfileResult`.

    Raises:
        ProgramError, DataError, ProfileError, UsageError: one-line errors; the worker's crash or timeout
        becomes a ProfileError naming the signal or the timeout.

    Example:
        >>> prof = edgekit.profile("build/net", runs=200, threads=2)
        >>> print(prof.latency_ms.p50, prof.memory.peak_rss_mb)
    """
    import dataclasses

    opts = dataclasses.replace(options or ProfileOptions(), **overrides)
    if (program is None) == (eager is None):
        raise UsageError("give either a program or an eager model spec", "edgekit profile build/net, or --eager pkg.mod:make --input ...")
    if opts.cpus:
        import psutil

        valid = set(range(psutil.cpu_count() or 1))
        bad = [c for c in opts.cpus if c not in valid]
        if bad:
            raise UsageError(f"--cpus {','.join(map(str, bad))} does not exist on this machine", f"valid CPUs: 0-{max(valid)}")

    # What to run.
    if eager is not None:
        from ..models import InputSpec

        specs = [s if isinstance(s, InputSpec) else InputSpec(tuple(s), "float32") for s in eager_inputs]
        if opts.batch is not None:
            specs = [InputSpec((opts.batch, *s.shape[1:]), s.dtype) for s in specs]
        if not specs:
            raise UsageError("--eager needs --input for each model input", "e.g. --eager pkg.nets:make --input 1x3x224x224")
        subject = _Subject("eager", {"eager": str(eager)}, None, eager_spec=str(eager),
                           shapes=[s.shape for s in specs], dtypes=[s.dtype for s in specs])
    else:
        pte, info, pkg_target, desc = resolve_program(program, opts.method)
        subject = _Subject("program", desc, pkg_target, pte=pte, info=info)
    tgt = load_target(target) if target is not None else (subject.target or load_target("xnnpack-fp32"))
    prof_cfg = tgt.profile
    opts = dataclasses.replace(
        opts,
        runs=opts.runs if opts.runs is not None else prof_cfg.runs,
        warmup=opts.warmup if opts.warmup is not None else prof_cfg.warmup,
        threads=opts.threads if opts.threads is not None else prof_cfg.threads,
        min_seconds=opts.min_seconds if opts.min_seconds is not None else prof_cfg.min_seconds,
    )
    if opts.ops and subject.kind != "program":
        raise UsageError("--ops needs an ExecuTorch program, not --eager", "drop --ops")
    engine, runner, engine_note = _pick_engine(opts, subject.kind == "eager")
    if opts.ops and engine != "native":
        raise UsageError("--ops needs the native engine (it links the ETDump library)", "install g++ or drop --ops")

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edgekit-profile-") as tmpdir:
        tmp = Path(tmpdir)
        if subject.kind == "program":
            shapes, dtypes, arrays, input_source = _program_inputs(subject.info, opts.method, inputs, opts.batch)
            subject.shapes, subject.dtypes = shapes, dtypes
        else:
            rng = np.random.default_rng(0)
            arrays = [rng.standard_normal(s).astype(np.float32) if d.startswith("float") else rng.integers(0, 10, s).astype(d)
                      for s, d in zip(subject.shapes, subject.dtypes)]
            input_source = "random (seed 0)"
            if inputs is not None:
                raise UsageError("--inputs is for programs; eager models take --input specs", "drop --inputs")
        with open(tmp / "inputs.bin", "wb") as f:
            for arr in arrays:
                f.write(np.ascontiguousarray(arr).tobytes())
        common = ["--inputs", str(tmp / "inputs.bin"), "--result", str(tmp / "result.json"), "--method", opts.method,
                  "--threads", str(opts.threads), "--warmup", str(opts.warmup), "--warmup-seconds", str(opts.warmup_seconds),
                  "--runs", str(opts.runs), "--min-seconds", str(opts.min_seconds), "--max-seconds", str(opts.max_seconds)]
        for s in subject.shapes:
            common += ["--shape", ",".join(map(str, s))]
        env = None
        if engine == "native":
            cmd = [str(runner), "--model", str(subject.pte), "--loader", opts.loader, *common]
            if opts.ops:
                cmd += ["--etdump", str(tmp / "run.etdp"), "--etdump-runs", str(opts.ops_runs)]
        else:
            cmd = [sys.executable, "-m", "edgekit.profile.pyworker", *common]
            cmd += ["--model", str(subject.pte)] if subject.kind == "program" else ["--eager", subject.eager_spec]
            for d in subject.dtypes:
                cmd += ["--dtype", d]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *[p for p in sys.path if p]])
        rapl = energy_mod.rapl_domains()
        freq = energy_mod.cpu_freq_mhz()
        batt_before = energy_mod.battery()
        watch, wall = _run_worker(cmd, opts, progress, rapl, env)
        batt_after = energy_mod.battery()
        try:
            raw = json.loads((tmp / "result.json").read_text())
        except (OSError, ValueError) as exc:
            raise ProfileError(f"the profiling worker wrote no readable result ({exc})", "rerun; report it if it persists") from None
        ops = None
        if opts.ops:
            from .ops import op_table

            ops = op_table(tmp / "run.etdp") if (tmp / "run.etdp").exists() else None

    samples = [float(x) for x in raw["samples_ms"]]
    stats = summarize(samples)
    warm = [float(x) for x in raw["warmup_ms"]]
    warnings = measurement_warnings(stats, float(raw["first_run_ms"]), warm)
    if engine_note:
        warnings.insert(0, engine_note)
    if raw["threads_effective"] != opts.threads:
        warnings.append(f"asked for {opts.threads} threads, the runtime uses {raw['threads_effective']}")
    cores = len(opts.cpus) if opts.cpus else (os.cpu_count() or 1)
    if opts.threads > cores:
        warnings.append(f"{opts.threads} threads on {cores} CPU(s): threads compete for cores and timings suffer")

    # Memory: the worker's own readings and the parent's sampler.
    base = raw["rss_baseline_bytes"]
    # Not getrusage's ru_maxrss: Linux carries it across exec, so the worker would inherit the high-water mark
    # of the forked Python parent (torch loaded, hundreds of MiB). VmHWM is the same kernel counter for the
    # worker's own address space, reset at exec.
    peak_sources = {"sampler_rss": _mb(watch.peak_rss), "vm_hwm": _mb(raw["hwm_bytes"])}
    peak = max(v for v in peak_sources.values() if v is not None)
    planned = subject.info.planned_memory(opts.method)["planned_mb"] if subject.info else None
    baseline_note = {
        "native": "the native runner with the ExecuTorch runtime's shared libraries mapped, before loading the program",
        "python": "a Python interpreter with executorch.runtime imported (it pulls in torch): the program's own memory is the delta",
        "eager": "a Python interpreter with torch imported: the model's own memory is the delta",
    }[engine]
    memory = MemoryResult(
        baseline_rss_mb=_mb(base), load_rss_mb=_mb(raw["rss_after_load_bytes"]), peak_rss_mb=peak,
        load_delta_mb=_mb(raw["rss_after_load_bytes"] - base), peak_delta_mb=round(peak - base / MB, 3),
        peak_sources_mb=peak_sources, uss_mb=_mb(watch.peak_uss) if watch.peak_uss else None, planned_mb=planned,
        pte_size_mb=_mb(subject.info.size_bytes) if subject.info else None, baseline_note=baseline_note)

    # Energy proxies over the timed runs.
    cpu = raw["cpu_timed"]
    cpu_s = cpu["user_s"] + cpu["sys_s"]
    n = max(1, stats.count)
    timed_wall = float(raw["timed_wall_s"]) or 1e-9
    joules = energy_mod.rapl_joules(rapl, watch.rapl_marks.get("timed"), watch.rapl_marks.get("ops") or watch.rapl_marks.get("done"))
    if joules is not None:
        joules_per_run, source = joules / n, "rapl"
        note = "measured by RAPL for the whole CPU package (every process on the machine) during the timed runs"
        est_inputs = None
    else:
        est = energy_mod.estimate_joules(cpu_s, timed_wall, tgt.power.active_watts_per_core, tgt.power.idle_watts)
        joules_per_run, source = est / n, "estimated"
        est_inputs = {"cpu_seconds": round(cpu_s, 6), "wall_seconds": round(timed_wall, 6),
                      "active_watts_per_core": tgt.power.active_watts_per_core, "idle_watts": tgt.power.idle_watts,
                      "power_model": f"target {tgt.name}"}
        note = ("ESTIMATED, not measured: RAPL is not readable here; joules = cpu_seconds × active_watts_per_core "
                "+ wall_seconds × idle_watts from the target's power model")
    battery = None
    if batt_before is not None:
        battery = {"before": batt_before, "after": batt_after,
                   "note": "drain is meaningful only on battery and for long runs"}
    energy = EnergyResult(cpu_user_s=cpu["user_s"], cpu_sys_s=cpu["sys_s"], cpu_seconds_per_run=cpu_s / n,
                          cpu_utilization=cpu_s / timed_wall, voluntary_ctx_switches=int(cpu["voluntary_ctx_switches"]),
                          involuntary_ctx_switches=int(cpu["involuntary_ctx_switches"]), cpu_freq_mhz=freq,
                          joules_per_run=joules_per_run, joules_source=source, joules_note=note,
                          estimate_inputs=est_inputs, battery=battery)

    from ..machine import machine_facts

    budget = _budget(tgt, stats, memory, engine)
    subject.description.update({"inputs": [{"shape": list(s), "dtype": d} for s, d in zip(subject.shapes, subject.dtypes)],
                                "input_source": input_source})
    return ProfileResult(
        engine=engine, engine_note=engine_note, subject=subject.description,
        threads={"requested": opts.threads, "effective": raw["threads_effective"], "cpus": list(opts.cpus) if opts.cpus else None},
        settings={"warmup": opts.warmup, "warmup_seconds": opts.warmup_seconds, "runs": opts.runs, "min_seconds": opts.min_seconds,
                  "max_seconds": opts.max_seconds, "timeout": opts.timeout, "loader": raw.get("loader"), "target": tgt.name,
                  "worker_wall_s": round(wall, 3)},
        phases=Phases(load_ms=raw["load_ms"], first_run_ms=raw["first_run_ms"], warmup_runs=len(warm),
                      warmup_mean_ms=(sum(warm) / len(warm)) if warm else None),
        latency_ms=stats, samples_ms=tuple(samples), memory=memory, energy=energy, ops=ops, budget=budget,
        warnings=tuple(warnings), machine=machine_facts())


def _budget(tgt: Target, stats: LatencyStats, memory: MemoryResult, engine: str) -> dict:
    checks, notes = [], []
    b = tgt.budget
    if b.max_p50_ms is not None:
        checks.append({"name": "p50_ms", "limit": b.max_p50_ms, "value": round(stats.p50, 4), "ok": stats.p50 <= b.max_p50_ms})
    if b.max_peak_rss_mb is not None:
        if engine == "native":
            checks.append({"name": "peak_rss_mb", "limit": b.max_peak_rss_mb, "value": memory.peak_rss_mb,
                           "ok": memory.peak_rss_mb <= b.max_peak_rss_mb})
        else:
            notes.append(f"max_peak_rss_mb not checked: the {engine} engine's RSS includes the Python interpreter")
    return {"target": tgt.name, "checks": checks, "notes": notes}


def parse_threads(text: str) -> list[int]:
    """``2`` or ``1,2,4`` → thread counts (each >= 1)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--threads {text!r} is not a number or a comma-separated list", "e.g. --threads 2 or --threads 1,2") from None
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
