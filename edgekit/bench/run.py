"""``edgekit bench run``: build every model × target (re-using unchanged builds), profile, store one run."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import BenchError, EdgekitError
from ..manifest import MANIFEST_NAME, Manifest
from .document import RUN_KIND, RUN_SCHEMA_VERSION, BenchFailure, BenchItem, BenchRun, BuildFigures, MachineFacts
from .suite import Suite, SuiteModel, resolve_data_source

CACHE_ROOT = Path(".edgekit") / "cache" / "builds"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _source_digest(spec: str | None) -> str:
    """Hash what a spec depends on: its file (a .py, .pt2 or data file) or its module's source file."""
    if not spec:
        return "none"
    left = spec.rpartition(":")[0] if ":" in spec and not Path(spec).exists() else spec
    p = Path(left)
    if p.exists():
        return _file_digest(p)
    try:
        found = importlib.util.find_spec(left)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.origin and Path(found.origin).is_file():
        return _file_digest(Path(found.origin))
    return "unresolved:" + left


def edgekit_source_digest() -> str:
    """Hash of edgekit's own code and targets: a change to the pipeline must not re-use old builds."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted([*root.rglob("*.py"), *root.rglob("*.cpp"), *(root.parent / "targets").glob("*.toml")]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_key(model: SuiteModel, target: Any, versions: dict) -> str:
    """Content hash of everything a build depends on: model entry, target, sources, data, versions (and
    edgekit's own source, so a changed pipeline rebuilds)."""
    doc = {"model": model.to_dict(), "target": target.to_dict(), "versions": versions,
           "sources": {k: _source_digest(v) for k, v in (("spec", model.spec), ("calibration", model.calibration),
                                                          ("eval", model.eval))}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _cached_build(model: SuiteModel, target_name: str, cache: Path, versions: dict) -> tuple[Manifest, Path, bool, float]:
    from ..manifest import read_manifest
    from ..pipeline.build import build
    from ..targets import load_target

    target = load_target(target_name)
    key = build_key(model, target, versions)
    folder = cache / key
    if (folder / MANIFEST_NAME).is_file():
        try:
            return read_manifest(folder), folder, True, 0.0
        except EdgekitError:  # an entry from another edgekit, or damaged: build it again
            pass
    t0 = time.perf_counter()
    res = build(model.spec, target, out=folder, inputs=model.inputs, calibration=resolve_data_source(model.calibration),
                eval=resolve_data_source(model.eval), force=True)
    return res.manifest, folder, False, time.perf_counter() - t0


def _item(model: SuiteModel, target: str, threads: int, manifest: Manifest, cached: bool, build_s: float, prof: Any) -> BenchItem:
    acc = manifest.verify.accuracy
    prog = manifest.program
    return BenchItem(
        key=f"{model.name}|{Path(target).stem}|{threads}", model=model.name, target=Path(target).stem, threads=threads,
        engine=prof.engine,
        build=BuildFigures(cached=cached, seconds=round(build_s, 3), sha256=prog.sha256, size_bytes=prog.size_bytes,
                           compressed_size_bytes=prog.compressed_size_bytes, accuracy=acc.program if acc else None,
                           eager_accuracy=acc.eager if acc else None, sqnr_db=manifest.verify.sqnr_db,
                           planned_bytes=prog.planned_memory.planned_bytes,
                           delegated_partitions=prog.delegation.delegated_partitions),
        latency_ms=prof.latency_ms, samples_ms=list(prof.samples_ms),
        phases={"load_ms": prof.phases.load_ms, "first_run_ms": prof.phases.first_run_ms},
        memory={k: getattr(prof.memory, k) for k in ("baseline_rss_mb", "load_rss_mb", "peak_rss_mb", "peak_delta_mb", "load_delta_mb")},
        energy={"cpu_seconds_per_run": prof.energy.cpu_seconds_per_run, "joules_per_run": prof.energy.joules_per_run,
                "joules_source": prof.energy.joules_source},
        warnings=list(prof.warnings), noise=prof.noise.to_dict() if prof.noise else None)


def _options(suite: Suite, threads: int) -> Any:
    from ..profile.harness import ProfileOptions

    r = suite.run
    return ProfileOptions(runs=r.runs, warmup=r.warmup, warmup_seconds=r.warmup_seconds, threads=threads, engine=r.engine,
                          timeout=r.timeout, max_seconds=r.max_seconds)


def _document(suite: Suite, facts: dict, results: list, errors: list, t_start: float, device: str | None = None) -> BenchRun:
    from ..machine import commit_facts

    if not results and errors:
        where = f" on device {device}" if device else ""
        raise BenchError(f"every item of suite {suite.name} failed{where}; first: {errors[0].error}")
    return BenchRun(
        schema_version=RUN_SCHEMA_VERSION, kind=RUN_KIND, run_id=uuid.uuid4().hex,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), suite=suite.to_dict(),
        machine=MachineFacts.from_dict({k: facts.get(k) for k in MACHINE_KEYS if k in facts}), commit=commit_facts(suite.path.parent),
        settings=suite.run.to_dict(), results=results, errors=errors, wall_seconds=round(time.perf_counter() - t_start, 1),
        device=device)


def _versions(facts: dict) -> dict:
    return {**{k: facts[k] for k in ("torch", "executorch", "edgekit", "python")}, "edgekit_source": edgekit_source_digest()}


def run_suite(suite: Suite, *, cache: Path = CACHE_ROOT, progress: Callable[[str, int, int], None] | None = None,
              keep_going: bool = True) -> BenchRun:
    """Build and profile every item of ``suite`` here; return the run document (not yet saved).

    A failing item is recorded under ``errors`` and the others still run (``keep_going``).

    Raises:
        BenchError: every item failed.
    """
    from ..machine import machine_facts
    from ..profile.harness import profile

    t_start = time.perf_counter()
    facts = machine_facts()
    versions = _versions(facts)
    items = suite.items()
    results, errors = [], []
    builds: dict[tuple[str, str], tuple[Manifest, Path, bool, float]] = {}
    for i, (model, target, threads) in enumerate(items, start=1):
        if progress:
            progress(f"{model.name} × {target} × {threads} thread(s)", i, len(items))
        try:
            if (model.name, target) not in builds:
                builds[(model.name, target)] = _cached_build(model, target, cache, versions)
            manifest, folder, cached, build_s = builds[(model.name, target)]
            results.append(_item(model, target, threads, manifest, cached, build_s, profile(folder, options=_options(suite, threads))))
        except EdgekitError as exc:
            if not keep_going:
                raise
            errors.append(BenchFailure(model.name, target, threads, str(exc)))
    return _document(suite, facts, results, errors, t_start)


def run_suite_on_devices(suite: Suite, devices: list[Any], *, cache: Path = CACHE_ROOT,
                         progress: Callable[[str, int, int], None] | None = None) -> tuple[list[BenchRun], list[str]]:
    """Build every item once here, then profile it on every device: devices in parallel, each device one item at
    a time (measurements never overlap on a device). One run document per device, under that device's machine id.

    Returns:
        The runs, and one line per device that produced none (unreachable, every item failed).

    Raises:
        BenchError: no device produced a run.
    """
    from concurrent.futures import ThreadPoolExecutor
    from threading import Lock

    from ..machine import machine_facts

    t_start = time.perf_counter()
    versions = _versions(machine_facts())
    items = suite.items()
    builds, build_errors = {}, {}
    for i, (model, target) in enumerate(dict.fromkeys((m, t) for m, t, _ in items), start=1):
        if progress:
            progress(f"building {model.name} × {target}", 0, len(items) * len(devices))
        try:
            builds[(model.name, target)] = _cached_build(model, target, cache, versions)
        except EdgekitError as exc:
            build_errors[(model.name, target)] = str(exc)
    done, lock = [0], Lock()

    def on_device(device: Any) -> BenchRun:
        from ..device.devices import Ssh, device_facts
        from ..profile.harness import profile

        facts = device_facts(Ssh(device))
        results, errors = [], []
        for model, target, threads in items:
            try:
                if (model.name, target) in build_errors:
                    raise BenchError(build_errors[(model.name, target)])
                manifest, folder, cached, build_s = builds[(model.name, target)]
                prof = profile(folder, options=_options(suite, threads), device=device)
                results.append(_item(model, target, threads, manifest, cached, build_s, prof))
            except EdgekitError as exc:
                errors.append(BenchFailure(model.name, target, threads, str(exc)))
            with lock:
                done[0] += 1
                if progress:
                    progress(f"{device.name}: {model.name} × {target} × {threads}", done[0], len(items) * len(devices))
        return _document(suite, {**facts, **{k: v for k, v in versions.items() if k in MACHINE_KEYS}}, results, errors,
                         t_start, device=device.name)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        futures = [pool.submit(on_device, d) for d in devices]
    runs, failures = [], []
    for d, f in zip(devices, futures):
        try:
            runs.append(f.result())
        except EdgekitError as exc:
            failures.append(f"{d.name}: {exc}")
    if not runs:
        raise BenchError("no device produced a run: " + "; ".join(failures))
    return runs, failures


MACHINE_KEYS = ("machine_id", "cpu_model", "arch", "cores_logical", "memory_gb", "cores_physical", "cpu_max_mhz", "os",
                "hostname", "python", "torch", "executorch", "edgekit")
