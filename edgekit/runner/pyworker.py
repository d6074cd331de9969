"""The Python profiling worker: the fallback engine (ExecuTorch pybindings) and the eager PyTorch engine.

Speaks the native runner's protocol (same options, ``@phase``/``@progress``/``@error`` lines on stderr and a
JSON result file), so both engines produce one result format. Its RSS baseline is taken after its imports
and is reported as what it is: a Python interpreter with the ExecuTorch bindings (or torch) loaded.

Run as ``python -m edgekit.runner.pyworker --model P.pte ...`` or ``--eager SPEC --dtype float32 ...``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any, Callable

from edgekit.errors import first_line
from edgekit.runner.protocol import (
    ERROR_PREFIX,
    PHASE_PREFIX,
    PROGRESS_PREFIX,
    PROTOCOL_VERSION,
    WORKER_OPTIONS,
    CpuUsage,
    Phase,
    WorkerResult,
)


def _status_bytes(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def _usage() -> CpuUsage:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return CpuUsage(ru.ru_utime, ru.ru_stime, ru.ru_nvcsw, ru.ru_nivcsw)


def _delta(a: CpuUsage, b: CpuUsage) -> CpuUsage:
    return CpuUsage(
        b.user_s - a.user_s,
        b.sys_s - a.sys_s,
        b.voluntary_ctx_switches - a.voluntary_ctx_switches,
        b.involuntary_ctx_switches - a.involuntary_ctx_switches,
    )


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _phase(phase: Phase) -> None:
    _say(PHASE_PREFIX + phase.value)


def _fail(msg: str) -> None:
    _say(ERROR_PREFIX + " ".join(msg.split()))
    sys.exit(1)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgekit.runner.pyworker")
    types = {
        "--etdump-runs": int,
        "--threads": int,
        "--warmup": int,
        "--runs": int,
        "--warmup-seconds": float,
        "--min-seconds": float,
        "--max-seconds": float,
        "--check-count": int,
    }
    defaults = {
        "--method": "forward",
        "--loader": "mmap",
        "--etdump-runs": 20,
        "--threads": 1,
        "--warmup": 20,
        "--warmup-seconds": 0.0,
        "--runs": 100,
        "--min-seconds": 0.0,
        "--max-seconds": 1e9,
        "--check-count": 0,
    }
    for opt in WORKER_OPTIONS:  # the protocol's options, as the native runner takes them
        if opt in ("--shape", "--check-shape"):
            p.add_argument(opt, action="append", default=[])
        else:
            p.add_argument(opt, type=types.get(opt, str), default=defaults.get(opt), required=opt == "--result")
    p.add_argument("--eager")  # Python-only: an eager model spec instead of --model
    p.add_argument("--dtype", action="append", default=[])  # one per input (the runner reads dtypes from the program)
    return p.parse_args(argv)


def _setup(a: argparse.Namespace, engine: str) -> tuple[Any, int]:
    """Import the engine's runtime and size its threadpool (before the baseline RSS is read)."""
    import torch

    if engine == "python":
        from edgekit.runner.runtime import load_runtime

        portable_lib, Runtime = load_runtime()  # with the quantized kernels, without the compiler stack
        runtime = Runtime.get()
        portable_lib._unsafe_reset_threadpool(a.threads)
        return runtime, int(portable_lib._threadpool_get_thread_count())
    import edgekit.models  # noqa: F401  (its imports belong to the baseline, not to the load)

    torch.set_num_threads(a.threads)
    return None, torch.get_num_threads()


def _load(a: argparse.Namespace, engine: str, runtime: Any) -> Callable[[list], Any]:
    """Load the program (or eager model); returns a function that runs it on a list of inputs."""
    if engine == "python":
        try:
            program = runtime.load_program(a.model)
            method = program.load_method(a.method)
        except Exception as exc:  # the bindings raise RuntimeError/ValueError for bad programs
            _fail(f"loading the program failed: {first_line(exc)}")
        return lambda xs: method.execute(xs)
    import torch

    from edgekit.models import InputSpec, load_model

    try:
        specs = [InputSpec(tuple(int(d) for d in s.split(",")), dt) for s, dt in zip(a.shape, a.dtype)]
        module = load_model(a.eager, specs).module
    except Exception as exc:
        _fail(f"loading the eager model failed: {first_line(exc)}")
    torch.set_grad_enabled(False)
    return lambda xs: module(*xs)


def _inputs(a: argparse.Namespace) -> list[Any]:
    """The tensors from the parent's raw bytes (one ``--shape`` and ``--dtype`` per input)."""
    return _tensors(open(a.inputs, "rb").read() if a.inputs else None, a.shape, a.dtype, 0)[0]


def _tensors(raw: bytes | None, shapes: list[str], dtypes: list[str], offset: int) -> tuple[list[Any], int]:
    """One set of input tensors from ``raw`` at ``offset`` (zeros without ``raw``), and the offset after it."""
    import numpy as np
    import torch

    inputs = []
    for shape_txt, dt in zip(shapes, dtypes):
        shape = tuple(int(d) for d in shape_txt.split(","))
        np_dtype = np.dtype("uint16" if dt == "bfloat16" else dt)
        count = int(np.prod(shape))
        if raw is not None:
            if offset + count * np_dtype.itemsize > len(raw):
                _fail("inputs file is shorter than the inputs need")
            arr = np.frombuffer(raw, dtype=np_dtype, count=count, offset=offset).reshape(shape).copy()
        else:
            arr = np.zeros(shape, np_dtype)
        offset += count * np_dtype.itemsize
        tensor = torch.from_numpy(arr)
        inputs.append((tensor.view(torch.bfloat16) if dt == "bfloat16" else tensor).contiguous())
    return inputs, offset


def _write_outputs(outputs: Any, f: Any) -> None:
    import torch
    from torch.utils._pytree import tree_leaves

    for out in tree_leaves(outputs):
        f.write(out.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _check(a: argparse.Namespace, run: Callable[[list], Any]) -> int:
    """The reference check: each stored input set once, its outputs written raw (before anything is timed)."""
    if a.check_count <= 0:
        return 0
    _phase(Phase.CHECK)
    raw = open(a.check_inputs, "rb").read()
    offset = 0
    with open(a.check_outputs, "wb") as f:
        for _ in range(a.check_count):
            xs, offset = _tensors(raw, a.check_shape, a.dtype, offset)
            try:
                _write_outputs(run(xs), f)
            except Exception as exc:
                _fail(f"execute() failed during the reference check: {first_line(exc)}")
    return a.check_count


def _timed(a: argparse.Namespace, execute: Callable[[str], Any]) -> tuple[list[float], float]:
    """The timed runs: at least ``--runs`` and ``--min-seconds``, at most ``--max-seconds``."""
    samples: list[float] = []
    tt = time.perf_counter()
    last = 0
    while True:
        elapsed = time.perf_counter() - tt
        if (len(samples) >= a.runs and elapsed >= a.min_seconds) or (elapsed >= a.max_seconds and samples):
            break
        t = time.perf_counter()
        execute("the timed runs")
        samples.append((time.perf_counter() - t) * 1e3)
        if len(samples) - last >= 25 or len(samples) == a.runs:
            _say(f"{PROGRESS_PREFIX}{len(samples)} {a.runs}")
            last = len(samples)
    return samples, time.perf_counter() - tt


def _reference_ms() -> float:
    """The noise floor's fixed workload (as in runner.cpp, in numpy): median of 5 timings, in ms."""
    import numpy as np

    times = []
    for _ in range(5):
        buf = 1.0 + np.arange(1024, dtype=np.float32) * np.float32(1e-6)
        t0 = time.perf_counter()
        for _ in range(2000):
            buf = buf * np.float32(0.999999) + np.float32(1e-7)
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[2]


def main(argv: list[str] | None = None) -> None:
    a = _parse(sys.argv[1:] if argv is None else argv)
    engine = "eager" if a.eager else "python"
    runtime, threads_effective = _setup(a, engine)  # imports first: the baseline is the interpreter with its runtime
    rss_baseline = _status_bytes("VmRSS")
    u_start = _usage()
    _phase(Phase.LOAD)
    t0 = time.perf_counter()
    run = _load(a, engine, runtime)
    load_ms = (time.perf_counter() - t0) * 1e3
    rss_after_load = _status_bytes("VmRSS")
    u_loaded = _usage()
    check_runs = _check(a, run)
    inputs = _inputs(a)
    reference_before = _reference_ms()

    def execute(phase: str) -> Any:
        try:
            return run(inputs)
        except Exception as exc:
            _fail(f"execute() failed during {phase}: {first_line(exc)}")

    _phase(Phase.FIRST_RUN)
    t = time.perf_counter()
    execute("the first run")
    first_run_ms = (time.perf_counter() - t) * 1e3
    _phase(Phase.WARMUP)
    warm: list[float] = []
    tw = time.perf_counter()
    while len(warm) < a.warmup or time.perf_counter() - tw < a.warmup_seconds:
        t = time.perf_counter()
        execute("warm-up")
        warm.append((time.perf_counter() - t) * 1e3)
    _phase(Phase.TIMED)
    u0 = _usage()
    samples, timed_wall = _timed(a, execute)
    u1 = _usage()
    hwm = _status_bytes("VmHWM")
    if a.outputs:
        with open(a.outputs, "wb") as f:
            _write_outputs(execute("the outputs run"), f)
    reference_after = _reference_ms()
    result = WorkerResult(
        protocol=PROTOCOL_VERSION,
        engine=engine,
        method=a.method,
        loader="pybindings" if engine == "python" else "torch",
        threads_requested=a.threads,
        threads_effective=threads_effective,
        load_ms=load_ms,
        first_run_ms=first_run_ms,
        warmup_ms=warm,
        samples_ms=samples,
        timed_wall_s=timed_wall,
        reference_before_ms=reference_before,
        reference_after_ms=reference_after,
        rss_baseline_bytes=rss_baseline,
        rss_after_load_bytes=rss_after_load,
        hwm_bytes=hwm,
        cpu_load=_delta(u_start, u_loaded),
        cpu_timed=_delta(u0, u1),
        etdump="not requested",
        check_runs=check_runs,
    )
    with open(a.result, "w") as f:
        json.dump(result.to_dict(), f)
    _phase(Phase.DONE)


if __name__ == "__main__":
    main()
