"""Where builds run: a local process pool, or a Dask distributed cluster (``dask://host:port``).

Builds are independent and go to whatever cores a team has; measurements do not (the caller profiles one item at a
time, here or on a device). Every task reports the stack it ran on; a worker whose torch, executorch or edgekit
differs from this machine's is refused before any build is submitted, because its programs would differ and
poison the shared cache.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import EdgekitError, UsageError

STACK_KEYS = ("torch", "executorch", "edgekit", "edgekit_source", "python", "arch")
DEFAULT_BUILD_GB = 2.0  # a build's peak RSS when no earlier build says otherwise (MobileNetV2 int8 needs ~1.5 GiB)


class ExecutorError(EdgekitError):
    """The executor cannot be reached or used."""


def stack_facts() -> dict:
    """The software a build depends on, as this process sees it (runs on workers too)."""
    from ..bench.run import edgekit_source_digest
    from ..machine import _pkg

    return {"torch": _pkg("torch"), "executorch": _pkg("executorch"), "edgekit": _pkg("edgekit"),
            "edgekit_source": edgekit_source_digest(), "python": platform.python_version(), "arch": platform.machine()}


def build_task(model: Any, target: Any, key: str, cache_url: str, options: tuple = ()) -> dict:
    """Build one (model, target) into the shared cache unless it is there; what happened, and where (``options``:
    more ``build()`` arguments as (name, value) pairs (jobs are hashable), e.g. ``finetune`` data for a pruning recipe of ``edgekit tune``).

    Runs on a pool process or a Dask worker: it imports the stack itself and writes only to the cache.
    """
    import resource
    import tempfile

    from ..bench.suite import resolve_data_source
    from ..pipeline.build import build
    from .cache import BuildCache

    cache = BuildCache(cache_url)
    worker = _worker_name()
    attempt = f"{cache.root}/.attempts/{key}/{worker.replace('/', '_').replace(':', '_')}"
    cache.fs.makedirs(attempt.rsplit("/", 1)[0], exist_ok=True)
    cache.fs.pipe_file(attempt, str(time.time()).encode())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-build-") as tmp:
        if cache.get(key, Path(tmp)) is not None:
            return {"key": key, "cached": True, "worker": worker, "seconds": 0.0, "peak_rss_mb": None}
        res = build(model.spec, target, out=Path(tmp) / "pkg", inputs=model.inputs,
                    calibration=resolve_data_source(model.calibration), eval=resolve_data_source(model.eval), force=True,
                    calibration_records=cache_url, **{k: v for k, v in options if v is not None})
        cache.put(key, res.out_dir)
    return {"key": key, "cached": False, "worker": worker, "seconds": round(time.perf_counter() - t0, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Executor:
    """Runs build tasks; ``describe`` says what was chosen and why."""

    spec: str
    workers: int
    describe: str
    _pool: Any = None
    _client: Any = None
    _new_pool: Callable[[], Any] | None = None
    _futures: dict = field(default_factory=dict)

    def run(self, fn: Callable, jobs: list[tuple]) -> Iterator[tuple[tuple, Any, BaseException | None]]:
        """Run ``fn(*job)`` for every job; yield ``(job, result, error)`` as each finishes.

        A job whose worker died is run once more on another worker: Dask reschedules it itself; a local pool that
        lost a process is replaced and the jobs it was running are submitted again, once.
        """
        if self._client is not None:
            from distributed import as_completed

            self._futures = {self._client.submit(fn, *job, pure=False, retries=1): job for job in jobs}
            for fut in as_completed(list(self._futures)):
                yield self._outcome(fut, self._futures[fut])
            return
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        tries = {job: 1 for job in jobs}
        pending = {self._pool.submit(fn, *job): job for job in jobs}
        while pending:
            self._futures = pending
            broken = []
            for fut in as_completed(list(pending)):
                job = pending[fut]
                if isinstance(fut.exception(), BrokenProcessPool) and tries[job] < 2:
                    broken.append(job)  # the pool lost a process: every job it held failed with it
                    continue
                yield self._outcome(fut, job)
            if broken:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                for job in broken:
                    tries[job] += 1
            pending = {self._pool.submit(fn, *job): job for job in broken}

    @staticmethod
    def _outcome(fut: Any, job: tuple) -> tuple[tuple, Any, BaseException | None]:
        try:
            return job, fut.result(), None
        except Exception as exc:  # the task's own error, a worker that died too often, a broken pool
            return job, None, exc

    @property
    def builds_here(self) -> bool:
        """Whether builds may run on this machine (then measuring here must wait for them to end)."""
        if self._client is None:
            return True
        import psutil

        local = {"127.0.0.1", "localhost", socket.gethostname()}
        local |= {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
        hosts = {a.split("://")[-1].rsplit(":", 1)[0] for a in self._client.scheduler_info().get("workers", {})}
        return bool(hosts & local)

    def cancel(self) -> None:
        """Ctrl-C: drop the queued builds and stop the running ones (the cache only ever holds whole entries)."""
        if self._client is not None:
            self._client.cancel(list(self._futures))
            return
        for proc in list(getattr(self._pool, "_processes", {}).values()):  # the pool has no public way to stop a task
            proc.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        elif self._pool is not None:
            self._pool.shutdown(wait=True)

    def check_stack(self, host: dict) -> None:
        """Refuse workers whose stack differs from ``host`` (before anything is submitted).

        Raises:
            ExecutorError: naming the worker and what differs.
        """
        if self._client is None:
            return  # pool processes run this interpreter and this edgekit
        for worker, facts in self._client.run(stack_facts).items():
            diff = {k: (host.get(k), facts.get(k)) for k in STACK_KEYS if host.get(k) != facts.get(k)}
            if diff:
                what = "; ".join(f"{k}: here {a}, there {b}" for k, (a, b) in diff.items())
                raise ExecutorError(f"worker {worker} runs a different stack ({what}): its builds would differ",
                                    "install the same torch, executorch and edgekit on every worker")


def default_local_workers(build_gb: float | None = None) -> tuple[int, str]:
    """How many builds fit here at once: limited by cores and by free memory over a build's peak RSS."""
    import psutil

    cores = os.cpu_count() or 1
    per = build_gb or DEFAULT_BUILD_GB
    free_gb = psutil.virtual_memory().available / 2**30
    n = max(1, min(cores, int(free_gb // per)))
    why = (f"{cores} cores, {free_gb:.1f} GiB free / {per:.1f} GiB per build"
           + (" (the largest peak RSS of this suite's earlier builds)" if build_gb else " (assumed: no earlier build to go by)"))
    return n, why


def make_executor(spec: str | None, build_gb: float | None = None) -> Executor:
    """``local``, ``local:N`` or ``dask://host:port`` (default: ``$EDGEKIT_EXECUTOR``, else ``local``).

    Raises:
        UsageError: a malformed spec.
        ExecutorError: the Dask scheduler cannot be reached, or dask is not installed.
    """
    spec = spec or os.environ.get("EDGEKIT_EXECUTOR") or "local"
    if spec == "local" or spec.startswith("local:"):
        if spec == "local":
            n, why = default_local_workers(build_gb)
        else:
            count = spec.split(":", 1)[1]
            if not count.isdigit() or int(count) < 1:
                raise UsageError(f"--executor {spec!r}: local:N needs a positive N", "e.g. --executor local:2")
            n, why = int(count), "as asked"
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))

        return Executor(spec, n, f"local process pool of {n} ({why})", _pool=new_pool(), _new_pool=new_pool)
    if spec.startswith("dask://"):
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError("--executor dask:// needs Dask distributed", "pip install 'edgekit[scale]'") from None
        address = "tcp://" + spec[len("dask://"):]
        host, _, port = spec[len("dask://"):].rpartition(":")
        try:  # a refused port fails at once, not after the client's own retries
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
        except (OSError, ValueError) as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {address} ({exc})",
                                "start one with `dask scheduler` and point --executor at its address") from None
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler at {address} ({str(exc).splitlines()[0][:120]})",
                                "start one with `dask scheduler` and point --executor at its address") from None
        n = len(client.scheduler_info().get("workers", {}))
        if n == 0:
            client.close()
            raise ExecutorError(f"the Dask scheduler at {address} has no workers", "start some with `dask worker " + address + "`")
        return Executor(spec, n, f"Dask cluster at {address}, {n} worker(s)", _client=client)
    raise UsageError(f"--executor {spec!r} is not local, local:N or dask://HOST:PORT", "e.g. --executor dask://10.0.0.5:8786")
