"""``edgekit bench run``: build every model × target (re-using unchanged builds), profile, store one run."""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import paths
from ..builds import BuildCache, BuildQueue, Built, build_key, versions
from ..errors import BenchError, EdgekitError
from ..runner.protocol import Engine
from .document import RUN_KIND, RUN_SCHEMA_VERSION, BenchFailure, BenchItem, BenchRun, BuildFigures, MachineFacts
from .suite import Suite, SuiteModel

CACHE_ROOT = paths.BUILD_CACHE


def iter_builds(
    suite: Suite,
    *,
    cache: str | Path = CACHE_ROOT,
    executor: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    notes: list[str] | None = None,
    state: dict | None = None,
) -> Iterator:
    """Build every (model, target) of ``suite`` once, through the executor, into the content-addressed cache; yield
    ``((model, target), Built | error text)`` as each one is ready (cache hits first), so measuring can start behind
    the builds. ``notes`` receives which executor ran and anything the cache had to say (a corrupt entry rebuilt);
    ``state["builds_here"]`` says whether builds may run on this machine (set once the executor is up).

    Raises:
        CacheError, ExecutorError: the cache or the executor cannot be used (before anything is built).
    """
    from ..machine import machine_facts
    from ..targets import load_target

    notes = notes if notes is not None else []
    store = BuildCache(cache)
    store.check_writable()
    keyed = versions(machine_facts())
    queue = BuildQueue(store, executor, notes)
    pairs = list(dict.fromkeys((m, t) for m, t, _ in suite.items()))
    keys = {(m.name, t): build_key(m.entry(), load_target(t), keyed) for m, t in pairs}
    todo, peaks = [], []
    for m, t in pairs:
        hit = queue.cached(keys[(m.name, t)])
        if hit is None:
            todo.append(queue.job(m.entry(), t, keys[(m.name, t)]))
            continue
        peaks += [hit.manifest.build_peak_rss_mb] if hit.manifest.build_peak_rss_mb else []
        yield (m.name, t), hit
    if todo:
        try:
            ex = queue.start(build_gb=max(peaks) / 1024 if peaks else None)
            if state is not None:
                state["builds_here"] = ex.builds_here
            for n, (job, done) in enumerate(queue.run(todo), start=1):
                if progress:
                    progress(f"built {job.model.name} × {job.target}", n, len(todo))
                yield (job.model.name, job.target), done
        finally:
            queue.close()
    notes += store.warnings


def build_all(suite: Suite, **kwargs: Any) -> tuple[dict, dict, list[str]]:
    """Every build of ``suite`` (see :func:`iter_builds`): ``({pair: Built}, {pair: error}, notes)``."""
    notes: list[str] = []
    built, errors = {}, {}
    for pair, done in iter_builds(suite, notes=notes, **kwargs):
        (built if isinstance(done, Built) else errors)[pair] = done
    return built, errors, notes


def _build_figures(b: Built, **figures: Any) -> BuildFigures:
    """What every item records of its build, plus the task's own figures (accuracy and SQNR, or perplexity)."""
    prog = b.manifest.program
    return BuildFigures(
        cached=b.cached,
        seconds=round(b.seconds, 3),
        sha256=prog.sha256,
        size_bytes=prog.shipped_bytes,  # with a generation program's model.ptd
        worker=b.worker,
        attempts=b.attempts,
        peak_rss_mb=b.peak_rss_mb,
        compressed_size_bytes=prog.compressed_size_bytes,
        **figures,
    )


def _item(
    model: SuiteModel, target: str, threads: int, b: Built, prof: Any, explanation: dict | None = None
) -> BenchItem:
    manifest = b.manifest
    acc = manifest.verify.accuracy
    prog = manifest.program
    return BenchItem(
        key=f"{model.name}|{Path(target).stem}|{threads}",
        model=model.name,
        target=Path(target).stem,
        threads=threads,
        engine=prof.engine,
        build=_build_figures(
            b,
            accuracy=acc.program if acc else None,
            eager_accuracy=acc.eager if acc else None,
            sqnr_db=manifest.verify.sqnr_db,
            planned_bytes=prog.planned_memory.planned_bytes,
            delegated_partitions=prog.delegation.delegated_partitions,
        ),
        latency_ms=prof.latency_ms,
        samples_ms=list(prof.samples_ms),
        phases={"load_ms": prof.phases.load_ms, "first_run_ms": prof.phases.first_run_ms},
        memory={
            k: getattr(prof.memory, k)
            for k in ("baseline_rss_mb", "load_rss_mb", "peak_rss_mb", "peak_delta_mb", "load_delta_mb")
        },
        energy={
            "cpu_seconds_per_run": prof.energy.cpu_seconds_per_run,
            "joules_per_run": prof.energy.joules_per_run,
            "joules_source": prof.energy.joules_source,
        },
        warnings=list(prof.warnings),
        noise=prof.noise.to_dict() if prof.noise else None,
        check=_check_summary(prof.check),
        explain=explanation,
    )


def _generation_item(suite: Suite, model: SuiteModel, target: str, threads: int, b: Built, device: Any) -> BenchItem:
    """A text-generation item: prefill and decode measured by a generation profile (here in the suite's engine, whose
    ``auto`` is the Python worker with ExecuTorch's llama:: kernels; on a device by the native runner); the latency
    samples are the decode steps (ms per generated token), so compare's tests gate decode speed; TTFT, peak RSS and
    perplexity beside them."""
    from ..profile.generation import profile_generation

    r, m = suite.run, b.manifest
    g = m.generation
    p = profile_generation(
        b.folder,
        prompt_len=r.prompt_len,
        gen_len=r.gen_len,
        runs=r.generation_rounds,
        warmup=1,
        threads=threads,
        timeout=max(r.timeout, 1800.0),
        engine=Engine.NATIVE if device is not None else r.engine,
        device=device,
    )
    return BenchItem(
        key=f"{model.name}|{Path(target).stem}|{threads}",
        model=model.name,
        target=Path(target).stem,
        threads=threads,
        engine=p.engine,
        build=_build_figures(
            b,
            perplexity=g.perplexity_program,
            ppl_increase_pct=g.ppl_increase_pct,
        ),
        latency_ms=p.decode_ms,
        samples_ms=list(p.decode_samples_ms),
        phases={"load_ms": p.load_ms, "first_run_ms": p.ttft_ms.p50},
        memory={
            "baseline_rss_mb": p.baseline_rss_mb,
            "load_rss_mb": p.load_rss_mb,
            "peak_rss_mb": p.peak_rss_mb,
            "peak_delta_mb": p.peak_delta_mb,
            "load_delta_mb": round(p.load_rss_mb - p.baseline_rss_mb, 1),
        },
        energy={
            "cpu_seconds_per_run": p.cpu_s_per_token,
            "joules_per_run": p.joules_per_token,
            "joules_source": p.joules_note,
        },
        warnings=list(p.notes),
        check={
            "status": p.check.status,
            "worst_sqnr_db": None,
            "samples": p.check.tokens,
            "note": p.check.note,
            "kld": p.check.kld,  # mean KL(your model ‖ program) where it was measured (None: a package before it)
            "max_kld": p.check.max_kld,
        },
        generation={
            "prompt_len": p.prompt_len,
            "gen_len": p.gen_len,
            "rounds": p.runs,
            "prefill_tokens_per_s": p.prefill_tokens_per_s,
            "decode_tokens_per_s": p.decode_tokens_per_s,
            "ttft_ms": p.ttft_ms.p50,
            "ttft_samples_ms": list(p.prefill_samples_ms),
            "per": "latency_ms and samples_ms: one decode step (a generated token); energy: per generated token",
        },
    )


def _check_summary(check: Any) -> dict | None:
    """The reference check in a run file: status, the worst output's SQNR against the user's model, the note."""
    if check is None:
        return None
    sqnrs = [c.sqnr_db for c in check.outputs if c.sqnr_db is not None]
    return {
        "status": check.status,
        "worst_sqnr_db": min(sqnrs) if sqnrs else None,
        "samples": check.samples,
        "note": check.note,
    }


def _measure(suite: Suite, model: SuiteModel, target: str, threads: int, b: Any, device: Any = None) -> Any:
    """Profile one item of a finished build (here, or on ``device``): a BenchItem, or the BenchFailure saying why not."""
    import dataclasses
    import tempfile

    from ..profile.harness import profile

    try:
        if not isinstance(b, Built):
            raise BenchError(b)  # the build itself failed: its error text
        if b.manifest.generation is not None:
            return _generation_item(suite, model, target, threads, b, device)
        opts = _options(suite, threads)
        if device is not None or suite.run.engine == "python":  # the ETDump comes from the native runner, here
            return _item(model, target, threads, b, profile(b.folder, options=opts, device=device))
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
            etdump = Path(tmp) / "run.etdp"
            prof = profile(b.folder, options=dataclasses.replace(opts, ops=True, ops_runs=20, etdump_out=str(etdump)))
            return _item(model, target, threads, b, prof, _explanation(b.folder, etdump, prof))
    except EdgekitError as exc:
        return BenchFailure(model.name, target, threads, str(exc))


def _explanation(folder: Path, etdump: Path, prof: Any) -> dict | None:
    """The item's slowest and least faithful modules (edgekit explain's), so a regression points at a layer."""
    from ..explain import explain_etdump, summary

    if not etdump.is_file():
        return None
    try:
        return summary(explain_etdump(folder, etdump, prof))
    except EdgekitError as exc:  # an explanation that cannot be made does not fail the item
        return {"slowest": [], "least_faithful": [], "note": f"no explanation: {exc}"}


def _options(suite: Suite, threads: int) -> Any:
    from ..profile.harness import ProfileOptions

    r = suite.run
    return ProfileOptions(
        runs=r.runs,
        warmup=r.warmup,
        warmup_seconds=r.warmup_seconds,
        threads=threads,
        engine=r.engine,
        timeout=r.timeout,
        max_seconds=r.max_seconds,
    )


def _document(
    suite: Suite,
    facts: dict,
    results: list,
    errors: list,
    t_start: float,
    device: str | None = None,
    notes: list[str] | None = None,
) -> BenchRun:
    from ..machine import commit_facts

    if not results and errors:
        where = f" on device {device}" if device else ""
        raise BenchError(f"every item of suite {suite.name} failed{where}; first: {errors[0].error}")
    return BenchRun(
        schema_version=RUN_SCHEMA_VERSION,
        kind=RUN_KIND,
        run_id=uuid.uuid4().hex,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        suite=suite.to_dict(),
        machine=MachineFacts.from_dict({k: facts.get(k) for k in MACHINE_KEYS if k in facts}),
        commit=commit_facts(suite.path.parent),
        settings=suite.run.to_dict(),
        results=results,
        errors=errors,
        wall_seconds=round(time.perf_counter() - t_start, 1),
        device=device,
        notes=list(notes or []),
    )


def run_suite(
    suite: Suite,
    *,
    cache: str | Path = CACHE_ROOT,
    executor: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> BenchRun:
    """Build every item of ``suite`` (through ``executor``, into ``cache``) and profile each here, one at a time: once
    no build runs here any more, or (Dask workers on other machines only) as soon as its build is ready. Returns
    the run document (not yet saved).

    A failing item is recorded under ``errors`` and the others still run.

    Raises:
        BenchError: every item failed. CacheError, ExecutorError: the cache or executor cannot be used.
    """
    from ..machine import machine_facts

    t_start = time.perf_counter()
    facts = machine_facts()
    items, notes, state = suite.items(), [], {}
    results, errors, ready = [], [], []

    def measure(model: Any, target: str, threads: int, b: Any) -> None:
        if progress:
            progress(f"{model.name} × {target} × {threads} thread(s)", len(results) + len(errors) + 1, len(items))
        outcome = _measure(suite, model, target, threads, b)
        (results if isinstance(outcome, BenchItem) else errors).append(outcome)

    for (name, target), b in iter_builds(suite, cache=cache, executor=executor, notes=notes, state=state):
        for model, t, threads in (it for it in items if it[0].name == name and it[1] == target):
            if state.get("builds_here", True):
                ready.append((model, t, threads, b))  # builds may run on this machine: measure once they are done
            else:
                measure(model, t, threads, b)  # the builds run on other machines: measure behind them
    for job in ready:
        measure(*job)
    return _document(suite, facts, results, errors, t_start, notes=notes)


def run_suite_on_devices(
    suite: Suite,
    devices: list[Any],
    *,
    cache: str | Path = CACHE_ROOT,
    executor: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[BenchRun], list[str]]:
    """Build every item once (through ``executor``) and profile it on every device as soon as its build is ready:
    devices in parallel, each device one item at a time (measurements never overlap on a device; the builds do not
    run on the devices). One run document per device, under that device's machine id.

    Returns:
        The runs, and one line per device that produced none (unreachable, every item failed).

    Raises:
        BenchError: no device produced a run.
    """
    import queue
    from concurrent.futures import ThreadPoolExecutor
    from threading import Lock

    from ..machine import machine_facts

    t_start = time.perf_counter()
    keyed = versions(machine_facts())
    items = suite.items()
    queues = {d.name: queue.Queue() for d in devices}
    done, lock, notes = [0], Lock(), []

    def on_device(device: Any) -> BenchRun:
        from ..device.devices import Ssh, device_facts

        facts = device_facts(Ssh(device))
        results, errors = [], []
        while (job := queues[device.name].get()) is not None:
            (model, target, threads), b = job
            outcome = _measure(suite, model, target, threads, b, device)
            (results if isinstance(outcome, BenchItem) else errors).append(outcome)
            with lock:
                done[0] += 1
                if progress:
                    progress(f"{device.name}: {model.name} × {target} × {threads}", done[0], len(items) * len(devices))
        return _document(
            suite,
            {**facts, **{k: v for k, v in keyed.items() if k in MACHINE_KEYS}},
            results,
            errors,
            t_start,
            device=device.name,
            notes=notes,
        )

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        futures = [pool.submit(on_device, d) for d in devices]
        try:
            for (name, target), b in iter_builds(suite, cache=cache, executor=executor, notes=notes):
                for item in [it for it in items if it[0].name == name and it[1] == target]:
                    for q in queues.values():
                        q.put((item, b))
        finally:
            for q in queues.values():
                q.put(None)
    runs, failures = [], []
    for d, f in zip(devices, futures):
        try:
            runs.append(f.result())
        except EdgekitError as exc:
            failures.append(f"{d.name}: {exc}")
    if not runs:
        raise BenchError("no device produced a run: " + "; ".join(failures))
    return runs, failures


MACHINE_KEYS = (
    "machine_id",
    "cpu_model",
    "arch",
    "cores_logical",
    "memory_gb",
    "cores_physical",
    "cpu_max_mhz",
    "os",
    "hostname",
    "python",
    "torch",
    "executorch",
    "edgekit",
)
