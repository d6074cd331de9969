"""Builds through an executor into the build cache: one job per (model, target) not cached yet, cache hits read back
without the executor, attempts counted per run, Ctrl-C cancelling what is outstanding. ``bench run`` and ``edgekit
tune`` both build this way."""

from __future__ import annotations

import os
import resource
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import EdgekitError, UsageError, first_line
from ..manifest import Manifest
from .cache import BuildCache

if TYPE_CHECKING:
    from ..scale.executor import Executor
    from ..specs import InputSpec
    from ..targets import Target


@dataclass(frozen=True)
class ModelEntry:
    """A model as a build sees it: the spec, example inputs, and the data it calibrates and verifies on (paths, or
    ``module:function`` names of data functions). ``name`` is a label; it is not part of the build key."""

    spec: str
    inputs: tuple[InputSpec, ...] = ()
    calibration: str | None = None
    eval: str | None = None
    name: str = ""

    def to_dict(self) -> dict[str, str | list[str] | None]:
        """What the build key hashes (with the sources these name)."""
        return {
            "spec": self.spec,
            "inputs": [str(i) for i in self.inputs],
            "calibration": self.calibration,
            "eval": self.eval,
        }


@dataclass(frozen=True)
class BuildJob:
    """One build for the executor (picklable and hashable: Dask and the local pool key their tasks by it)."""

    model: ModelEntry
    target: Target | str  # a Target, or a built-in target's name
    key: str
    cache_url: str
    run: str  # the queue's run id: attempts are counted per run
    options: tuple[tuple[str, object], ...] = ()  # more build() arguments as (name, value) pairs: ("finetune", path)
    kind: str = ""  # the kind of program the queue's process chose (edgekit.kinds); the worker must choose the same


@dataclass
class Built:
    """One (model, target) build: its package here, and where and how it was made."""

    manifest: Manifest
    folder: Path
    cached: bool
    seconds: float
    worker: str | None = None
    attempts: int = 1
    peak_rss_mb: float | None = None


@dataclass(frozen=True)
class BuildTaskResult:
    """What :func:`build_task` did for one job (its package is in the cache), sent back from the executor."""

    key: str
    cached: bool  # the entry was there already: nothing was built
    worker: str  # where the task ran (a Dask worker's address, or host:pid)
    seconds: float
    peak_rss_mb: float | None  # the task's process high-water mark (None: nothing built)


def _kind_of(target: Target | str, options: tuple[tuple[str, object], ...]) -> str:
    from .. import kinds
    from ..targets import load_target

    task = dict(options).get("task")
    return kinds.for_build(load_target(target), task if isinstance(task, str) else None).name


def _check_kind(job: BuildJob) -> None:
    """A kind registered at run time in the queue's process does not exist in a spawned or Dask worker: building its
    job there would make another kind's program under its key, so the worker refuses it."""
    if job.kind and _kind_of(job.target, job.options) != job.kind:
        raise UsageError(
            f"this build worker does not know the kind of program {job.kind!r} that chose the build",
            "register the kind where edgekit registers its own (or in a module every worker imports), not at run time",
        )


def build_task(job: BuildJob) -> BuildTaskResult:
    """Build one job into the shared cache unless it is there; what happened, and where. Runs on a pool process or a
    Dask worker: it imports the stack itself and writes only to the cache."""
    from ..data import resolve_data_source
    from ..pipeline.build import build

    _check_kind(job)
    cache = BuildCache(job.cache_url)
    worker = _worker_name()
    cache.mark_attempt(job.key, job.run, worker)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
        if cache.get(job.key, Path(tmp)) is not None:
            return BuildTaskResult(job.key, True, worker, 0.0, None)
        res = build(
            job.model.spec,
            job.target,
            out=Path(tmp) / "pkg",
            inputs=job.model.inputs,
            calibration=resolve_data_source(job.model.calibration),
            eval=resolve_data_source(job.model.eval),
            force=True,
            calibration_records=cache.calibration_records(),
            **{k: v for k, v in job.options if v is not None},
        )
        cache.put(job.key, res.out_dir)
    return BuildTaskResult(
        job.key,
        False,
        worker,
        round(time.perf_counter() - t0, 3),
        round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


class BuildQueue:
    """Builds into the content-addressed cache through one executor, started on first use and kept until
    :meth:`close` (``edgekit tune`` builds in several waves); cache hits are read back without it."""

    def __init__(self, store: BuildCache, executor: str | None, notes: list[str]):
        from ..paths import cache_mirror

        self.store, self.spec, self.notes = store, executor, notes
        self.mirror = cache_mirror()
        self.run_id = f"{int(time.time())}-{secrets.token_hex(4)}"
        self.executor: Executor | None = None
        self.count = 0  # builds run so far, said in one note (updated in place)
        self.note_at: int | None = None

    def job(
        self, model: ModelEntry, target: Target | str, key: str, options: tuple[tuple[str, object], ...] = ()
    ) -> BuildJob:
        return BuildJob(model, target, key, self.store.url, self.run_id, options, _kind_of(target, options))

    def cached(self, key: str) -> Built | None:
        from ..manifest import read_manifest

        folder = self.store.get(key, self.mirror)
        return None if folder is None else Built(read_manifest(folder), folder, True, 0.0)

    def start(self, build_gb: float | None = None) -> Executor:
        """The executor (made, and the stack checked against it, on first use; ``build_gb``: the memory one build
        took before, which sizes a local pool)."""
        from ..scale.executor import make_executor
        from .keys import STACK_KEYS, stack_facts

        if self.executor is None:
            self.executor = make_executor(self.spec, build_gb=build_gb)
            self.executor.check_stack(stack_facts, STACK_KEYS)
            if self.executor.warning:
                self.notes.append(f"warning: {self.executor.warning}")
        return self.executor

    def run(self, jobs: list[BuildJob]) -> Iterator[tuple[BuildJob, Built | str]]:
        """``(job, Built | error text)`` as each job finishes."""
        ex = self.start()
        self.count += len(jobs)
        if self.note_at is None:
            self.note_at = len(self.notes)
            self.notes.append("")
        self.notes[self.note_at] = f"{self.count} build(s) on {ex.describe}"
        try:
            for job, r, error in ex.run(build_task, jobs):
                yield job, self._built(job, r, error)
        except (KeyboardInterrupt, GeneratorExit):
            ex.cancel()
            raise

    def _built(self, job: BuildJob, r: BuildTaskResult | None, error: BaseException | None) -> Built | str:
        """A finished build task as a :class:`Built` (its package read back from the cache), or its error text."""
        from ..manifest import read_manifest

        if isinstance(error, EdgekitError):
            return str(error)
        if error is not None:  # a worker that died too often (KilledWorker), a broken pool: this build failed
            return f"build failed on the executor: {type(error).__name__}: {first_line(error)}"
        folder = self.store.get(job.key, self.mirror)
        target = getattr(job.target, "name", job.target)
        if folder is None:
            return f"the build of {job.model.name or job.model.spec} × {target} left no intact cache entry"
        try:
            return Built(
                read_manifest(folder),
                folder,
                r.cached,
                r.seconds,
                r.worker,
                self.store.attempts(job.key, job.run),
                r.peak_rss_mb,
            )
        except EdgekitError as exc:
            return str(exc)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
            self.executor = None
