"""Profiling and running generation programs (``manifest.generation``): tokens per second, in a separate worker.

:func:`profile_generation` runs :mod:`edgekit.runner.llmworker` in its own process (pinned with ``cpus``): the
program's load time, its answers checked first (fed the package's reference tokens; its logits must stay as close to
the user's model's as when it was built: :mod:`edgekit.token_fidelity`), then
rounds of a ``prompt_len``-token prefill and ``gen_len`` greedy decode steps, each call timed. It reports time to
first token (the prefill), prefill and decode tokens per second, per-token latency percentiles, the worker's memory
and CPU time per generated token. :func:`~edgekit.profile.generate.generate` streams a prompt's continuation.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import kinds
from .._contract import Contract
from ..errors import UsageError
from ..manifest import read_manifest
from ..perplexity_protocol import ProtocolFidelity
from ..runner.protocol import CHECK_OUTPUTS, RESULT, SELECTABLE_ENGINES, Engine
from .answers import GenerationCheck, answers_check
from .stats import LatencyStats, summarize
from .step_ops import TRACED_STEPS, StepOps

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GenerationProfile(Contract):
    """One profile of a generation program at one thread count."""

    schema_version: int
    package: str
    model: str
    sha256: str
    target: str
    engine: str  # python | native (runner.protocol.Engine)
    threads: int
    prompt_len: int
    gen_len: int
    runs: int
    load_ms: float
    ttft_ms: LatencyStats  # the prefill call (the first token comes out of it), per round
    prefill_tokens_per_s: float  # prompt_len / median prefill
    decode_tokens_per_s: float  # 1000 / median per-token decode latency
    decode_ms: LatencyStats  # every decode step of every round
    baseline_rss_mb: float  # the worker after its imports (Python, torch, the ExecuTorch runtime)
    load_rss_mb: float
    peak_rss_mb: float
    peak_delta_mb: float  # above the baseline: the program, its cache and its activations
    cpu_s_per_token: float
    joules_per_token: float | None
    joules_note: str
    check: GenerationCheck
    notes: list[str]
    decode_samples_ms: list[float] = field(default_factory=list)  # every decode step, for bench compare's tests
    prefill_samples_ms: list[float] = field(default_factory=list)  # every round's prefill call (its TTFT)
    device: dict | None = None  # measured on a device over ssh: its name, facts, bundle, thermal and frequency readings
    engine_note: str = ""  # what the engine is, for people
    # the program against the user's model when built, on llama.cpp's KL-divergence protocol (the manifest's; the
    # answers check above says whether this runtime still computes that program)
    fidelity: ProtocolFidelity | None = None
    ops: StepOps | None = None  # --ops: the traced decode step and prefill call by kind of work (here, either engine)


#: what each engine is, in the report (``GenerationProfile.engine_note``)
PYTHON_NOTE = "python worker: executorch.runtime with ExecuTorch's llama custom ops (they link libtorch), one process"
NATIVE_NOTE = (
    "native runner (C++, no Python): the wheel's runtime, XNNPACK and quantized kernels; llama::update_cache and "
    "llama::custom_sdpa by edgekit's own C++ (llm_ops.cpp: the wheel ships ExecuTorch's only linked to libtorch)"
)


def _package(package: str | Path) -> tuple[Path, Any]:
    path = Path(package)
    folder = path.parent if path.suffix == ".pte" else path
    m = read_manifest(folder)
    if kinds.of_manifest(m) is not kinds.GENERATION_KIND:
        raise UsageError(
            f"{folder} is not a generation program (no generation section in its manifest)",
            "build a language model with --task text-generation; measure this package with `edgekit profile`",
        )
    from .subject import resolve_program

    resolve_program(folder)  # the program file and its external weights exist and match the manifest's sha256
    return folder, m


def _data_args(folder: Path, m: Any, remote: bool = False) -> list[str]:
    """``--data FILE`` when the program keeps weights outside the .pte (a shared table), for either engine."""
    d = m.program.data
    return [] if d is None else ["--data", d.file if remote else str(folder / d.file)]


def _rebuild_hint(g: Any, tokens: int) -> str:
    """ ", or rebuild with --max-seq-len N" when the model allows N (older manifests do not say: offered as before)."""
    limit = g.model_context_len
    if limit is not None and tokens > limit:
        return f" (the model itself attends over at most {limit} tokens)"
    return f", or rebuild with --max-seq-len {tokens}"


def worker_env() -> dict[str, str]:
    """The Python worker's environment: one OpenMP and one MKL thread, read when those libraries start (before the
    worker's own code runs), so that nothing spins beside ExecuTorch's threadpool. torch.set_num_threads(1) inside the
    worker is not enough: SmolLM2-135M's 8da4w program at 2 threads prefilled 366-412 and decoded 31-32 tokens/s
    without these variables, 787-853 and 58-64 with them (benchmarks/results/llm_python_worker_threads.txt)."""
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _worker(folder: Path, m: Any, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edgekit.runner.llmworker",
        "--model",
        str(folder / m.program.file),
        "--threads",
        str(threads),
        "--max-context",
        str(m.generation.max_context_len),
        *_data_args(folder, m),
    ]


def profile_prompt(prompt_len: int, vocab: int, seed: int = 0) -> list[int]:
    """The profile's prompt: ``prompt_len`` token ids drawn with ``seed`` from the first 1000 (above the special
    ids 0-2), the same for every engine and device."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(3, max(4, min(vocab, 1000))) for _ in range(prompt_len)]


def profile_generation(
    package: str | Path,
    *,
    prompt_len: int = 128,
    gen_len: int = 128,
    runs: int = 3,
    warmup: int = 1,
    threads: int = 1,
    cpus: tuple[int, ...] | None = None,
    check: bool = True,
    timeout: float = 1800.0,
    engine: str = "auto",
    device: Any = None,
    devices_file: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    ops: bool = False,
) -> GenerationProfile:
    """Profile a generation package (see the module docstring).

    ``engine``: ``native`` (the C++ runner with edgekit's implementation of the ``llama::`` kernels, no Python in the
    process: what ``device`` always uses, and what ``auto`` means wherever a C++ compiler is) or ``python``
    (ExecuTorch's own kernels in a Python worker: ``auto`` without a compiler).
    ``device``: a devices-file name, ``ssh://user@host[:port]`` or a Device: measured there over ssh.
    ``ops``: one more round traced into an ETDump after the timed ones, read by kind of work
    (:mod:`edgekit.profile.step_ops`); either engine, here (``device``: a usage error).

    Raises:
        UsageError: not a generation package, a prompt and generation that do not fit its cache, or an engine the
            device cannot use.
        ReferenceMismatchError: the program here is further from the user's model than the answers check allows
            (``check``; older packages: its top tokens are not its build's).
        ProgramError: the package's reference logits are missing or not the ones its manifest names.
        ProfileError: the worker failed, crashed or timed out.
    """
    from ..runner.protocol import read_generation_result
    from ..runner.worker import run_worker

    folder, m = _package(package)
    g = m.generation
    if prompt_len < 1 or gen_len < 2:
        raise UsageError(f"--prompt-len must be ≥ 1 and --gen-len ≥ 2, got {prompt_len} and {gen_len}")
    if prompt_len > g.max_seq_len:
        raise UsageError(
            f"--prompt-len {prompt_len} is longer than the program's {g.max_seq_len} tokens per call",
            f"use at most {g.max_seq_len}" + _rebuild_hint(g, prompt_len),
        )
    if prompt_len + gen_len > g.max_context_len:
        raise UsageError(
            f"--prompt-len {prompt_len} + --gen-len {gen_len} = {prompt_len + gen_len} tokens do not fit the "
            f"program's {g.max_context_len}-token KV cache",
            "lower them" + _rebuild_hint(g, prompt_len + gen_len),
        )
    if str(getattr(engine, "value", engine)) not in SELECTABLE_ENGINES:
        raise UsageError(f"unknown engine {engine!r}", f"use one of {', '.join(SELECTABLE_ENGINES)}")
    engine = Engine(engine)
    dev = None
    if device is not None:
        from ..device.devices import resolve_device
        from .measure import reject_python_on_device

        reject_python_on_device(engine, ops)
        dev = resolve_device(device, devices_file)
    runner, engine_fallback = None, None
    if dev is None:  # a device always runs its bundle's native runner
        from ..runner.native import pick_engine

        engine, runner, missing = pick_engine(engine)
        engine_fallback = None if missing is None else f"using the python engine: {missing}"
    native = dev is not None or engine is Engine.NATIVE
    args = [
        "--prompt-tokens",
        ",".join(map(str, profile_prompt(prompt_len, g.vocab_size))),
        "--gen-len",
        str(gen_len),
        "--runs",
        str(runs),
        "--warmup",
        str(warmup),
    ]
    reference = None
    if check and g.reference is not None:
        from ..token_fidelity import load_token_reference

        reference = load_token_reference(folder, g.reference)
        args += ["--check-prompt", ",".join(map(str, reference.prompt))]
        args += ["--check-tokens", ",".join(map(str, reference.fed))]
    elif check and g.greedy.program_ids:  # a package from before the reference logits: its greedy tokens
        args += ["--check-prompt", ",".join(map(str, g.greedy.prompt_ids))]
        args += ["--check-tokens", ",".join(map(str, g.greedy.program_ids))]
    device_info = None
    logits: bytes | None = None
    traced: StepOps | None = None
    with tempfile.TemporaryDirectory(prefix="edgekit-gen-") as d:
        if reference is not None:
            args += ["--outputs", CHECK_OUTPUTS if dev is not None else str(Path(d) / CHECK_OUTPUTS)]
        if dev is not None:
            from ..device.remote import profile_on_device

            run = profile_on_device(
                dev,
                folder / m.program.file,
                [],
                None,
                ["--model", "model.pte", "--result", RESULT, "--threads", str(threads)]
                + _data_args(folder, m, remote=True)
                + args,
                timeout=timeout,
                cpus=cpus,
                progress=None,
                local=Path(d),
                reader=read_generation_result,
                extra={m.program.data.file: folder / m.program.data.file} if m.program.data else None,
                backend=m.program.backend,
            )
            raw, watch = run.raw, run.watch
            device_info = {k: v for k, v in run.info.items() if k not in ("outputs", "check_outputs")}
            fetched = run.info.get("check_outputs")
            logits = Path(fetched).read_bytes() if fetched is not None else None
        else:
            result = Path(d) / RESULT
            if native:
                cmd = [str(runner), "--model", str(folder / m.program.file), "--threads", str(threads)]
                cmd += _data_args(folder, m)
            else:
                cmd = _worker(folder, m, threads)
            cmd += ["--result", str(result), *args]
            if ops:
                cmd += ["--etdump", str(Path(d) / "gen.etdp"), "--etdump-runs", str(TRACED_STEPS)]
            watch = run_worker(cmd, timeout=timeout, cpus=cpus, env=None if native else worker_env())
            raw = read_generation_result(result)
            if reference is not None and (Path(d) / CHECK_OUTPUTS).is_file():
                logits = (Path(d) / CHECK_OUTPUTS).read_bytes()
            if ops:
                from .step_ops import step_ops

                if progress:
                    progress("reading the traced round (ExecuTorch's Inspector)…")

                traced = step_ops(Path(d) / "gen.etdp", prompt_len, min(gen_len - 1, TRACED_STEPS))
    notes = [engine_fallback] if engine_fallback else []
    where = "here"
    power, model_of_power = m.target.get("power", {}), "target's"
    if dev is not None:
        from .measure import device_warnings

        where = f"on device {dev.name}"
        notes += device_warnings(dev, device_info)
        if dev.power is not None:  # the device's own power model beats the target's generic one
            power = {"active_watts_per_core": dev.power.active_watts_per_core, "idle_watts": dev.power.idle_watts}
            model_of_power = f"device {dev.name}'s"
        device_info["power_model"] = dev.power is not None
    status = answers_check(raw.check, reference, logits, where, check)
    prefill = [r.prefill_ms for r in raw.rounds]
    steps = [s for r in raw.rounds for s in r.decode_ms]
    decode = summarize(steps)
    tokens = len(raw.rounds) * gen_len
    watts = power.get("active_watts_per_core", 2.0) * (raw.cpu_s / max(raw.wall_s, 1e-9)) + power.get("idle_watts", 0.5)
    mb = 1024.0
    peak = max(raw.peak_rss_kb / mb, watch.peak_rss / 2**20)
    return GenerationProfile(
        schema_version=SCHEMA_VERSION,
        package=str(folder),
        model=m.model.spec,
        sha256=m.program.sha256,
        target=m.target.get("name", "?"),
        engine=(Engine.NATIVE if native else Engine.PYTHON).value,
        threads=int(raw.threads),
        prompt_len=prompt_len,
        gen_len=gen_len,
        runs=len(raw.rounds),
        load_ms=round(raw.load_ms, 3),
        ttft_ms=summarize(prefill),
        prefill_tokens_per_s=round(prompt_len / (statistics.median(prefill) / 1000), 2),
        decode_tokens_per_s=round(1000 / decode.p50, 2),
        decode_ms=decode,
        baseline_rss_mb=round(raw.baseline_rss_kb / mb, 1),
        load_rss_mb=round(raw.after_load_rss_kb / mb, 1),
        peak_rss_mb=round(peak, 1),
        peak_delta_mb=round(peak - raw.baseline_rss_kb / mb, 1),
        cpu_s_per_token=round(raw.cpu_s / tokens, 6),
        joules_per_token=round(watts * raw.wall_s / tokens, 6),
        joules_note=f"ESTIMATED from the {model_of_power} power model: (active_watts_per_core × CPU utilisation + idle_watts) × "
        "wall time, per generated token (prefill included)",
        check=status,
        notes=notes,
        decode_samples_ms=[round(x, 4) for x in steps],
        prefill_samples_ms=[round(x, 4) for x in prefill],
        device=device_info,
        engine_note=NATIVE_NOTE if native else PYTHON_NOTE,
        fidelity=m.generation.fidelity,
        ops=traced,
    )
