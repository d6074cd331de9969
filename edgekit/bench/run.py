"""``edgekit bench run``: build every model × target (re-using unchanged builds), profile, store one run."""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from .. import paths
from ..builds import BuildCache, BuildQueue, Built, build_key, versions
from ..errors import BenchError, EdgekitError
from .document import RUN_KIND, RUN_SCHEMA_VERSION, BenchFailure, BenchItem, BenchRun, MachineFacts
from .items import measure_item
from .suite import Suite, SuiteModel

if TYPE_CHECKING:
    from ..device.devices import Device

#: a suite's (model name, target)
Pair = tuple[str, str]

CACHE_ROOT = paths.BUILD_CACHE


def iter_builds(
    suite: Suite,
    *,
    cache: str | Path = CACHE_ROOT,
    executor: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    notes: list[str] | None = None,
    state: dict[str, bool] | None = None,
) -> Iterator[tuple[Pair, Built | str]]:
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


def build_all(
    suite: Suite,
    *,
    cache: str | Path = CACHE_ROOT,
    executor: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[Pair, Built], dict[Pair, str], list[str]]:
    """Every build of ``suite`` (see :func:`iter_builds`): ``({pair: Built}, {pair: error}, notes)``."""
    notes: list[str] = []
    built: dict[Pair, Built] = {}
    errors: dict[Pair, str] = {}
    for pair, done in iter_builds(suite, cache=cache, executor=executor, progress=progress, notes=notes):
        if isinstance(done, Built):
            built[pair] = done
        else:
            errors[pair] = done
    return built, errors, notes


def _document(
    suite: Suite,
    facts: Mapping[str, object],
    results: list[BenchItem],
    errors: list[BenchFailure],
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

    def measure(model: SuiteModel, target: str, threads: int, b: Built | str) -> None:
        if progress:
            progress(f"{model.name} × {target} × {threads} thread(s)", len(results) + len(errors) + 1, len(items))
        outcome = measure_item(suite, model, target, threads, b)
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
    devices: list[Device],
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

    def on_device(device: Device) -> BenchRun:
        from ..device.devices import Ssh, device_facts

        facts = device_facts(Ssh(device))
        results, errors = [], []
        while (job := queues[device.name].get()) is not None:
            (model, target, threads), b = job
            outcome = measure_item(suite, model, target, threads, b, device)
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
