"""Where builds run: a local process pool, or a Dask distributed cluster (``dask://host:port``, ``tls://host:port``).

An executor runs one function over a list of jobs and knows nothing of what they are (:mod:`edgekit.builds` hands it
its build task). Builds are independent and go to whatever cores a team has; measurements do not (the caller
profiles one item at a time, here or on a device). Before anything is submitted, every Dask worker reports its stack
(a function the caller passes); a worker whose torch, executorch or edgekit differs from this machine's is refused,
because its programs would differ and poison the shared cache.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Hashable, Iterator, Mapping, TypeVar

from .. import upstream
from ..errors import EdgekitError, UsageError

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    import distributed

J = TypeVar("J", bound=Hashable)  # a job
T = TypeVar("T")  # what the task returns for it

DEFAULT_BUILD_GB = 2.0  # a build's peak RSS when no earlier build says otherwise (MobileNetV2 int8 needs ~1.5 GiB)


class ExecutorError(EdgekitError):
    """The executor cannot be reached or used."""


@dataclass
class Executor:
    """Runs build tasks; ``describe`` says what was chosen and why."""

    spec: str
    workers: int
    describe: str
    _pool: ProcessPoolExecutor | None = None
    _client: distributed.Client | None = None
    _new_pool: Callable[[], ProcessPoolExecutor] | None = None
    _futures: dict[Future | distributed.Future, Hashable] = field(default_factory=dict)  # running: future → job
    warning: str | None = None  # something the user should know about this executor (a plain-TCP cluster off loopback)

    def run(self, fn: Callable[[J], T], jobs: list[J]) -> Iterator[tuple[J, T | None, BaseException | None]]:
        """Run ``fn(job)`` for every job (hashable); yield ``(job, result, error)`` as each finishes.

        A job whose worker died is run once more on another worker: Dask reschedules it itself; a local pool that
        lost a process is replaced and the jobs it was running are submitted again, once.
        """
        if self._pool is None and self._client is None:  # inline: here, one job at a time
            for job in jobs:
                try:
                    yield job, fn(job), None
                except Exception as exc:  # the job's own error; the others still run
                    yield job, None, exc
            return
        if self._client is not None:
            from distributed import as_completed

            self._futures = {self._client.submit(fn, job, pure=False, retries=1): job for job in jobs}
            for fut in as_completed(list(self._futures)):
                yield self._outcome(fut, self._futures[fut])
            return
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        tries = {job: 1 for job in jobs}
        pending = {self._pool.submit(fn, job): job for job in jobs}
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
            pending = {self._pool.submit(fn, job): job for job in broken}

    @staticmethod
    def _outcome(fut: Future[T] | distributed.Future, job: J) -> tuple[J, T | None, BaseException | None]:
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
        if self._pool is None:  # inline: the interrupted job stops with this process's own KeyboardInterrupt
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

    def check_stack(self, facts: Callable[[], Mapping[str, object]], keys: tuple[str, ...]) -> None:
        """Refuse workers whose ``facts()`` differ from this process's on ``keys`` (before anything is submitted).

        Raises:
            ExecutorError: naming the worker and what differs.
        """
        if self._client is None:
            return  # pool processes run this interpreter and this edgekit
        host = facts()
        for worker, theirs in self._client.run(facts).items():
            diff = {k: (host.get(k), theirs.get(k)) for k in keys if host.get(k) != theirs.get(k)}
            if diff:
                what = "; ".join(f"{k}: here {a}, there {b}" for k, (a, b) in diff.items())
                raise ExecutorError(
                    f"worker {worker} runs a different stack ({what}): its builds would differ",
                    "install the same torch, executorch and edgekit on every worker",
                )


def default_local_workers(build_gb: float | None = None) -> tuple[int, str]:
    """How many builds fit here at once: limited by cores and by free memory over a build's peak RSS."""
    import psutil

    cores = _usable_cores()
    per = build_gb or DEFAULT_BUILD_GB
    free_gb = psutil.virtual_memory().available / 2**30
    n = max(1, min(cores, int(free_gb // per)))
    why = f"{cores} cores, {free_gb:.1f} GiB free / {per:.1f} GiB per build" + (
        " (the largest peak RSS of this suite's earlier builds)"
        if build_gb
        else " (assumed: no earlier build to go by)"
    )
    return n, why


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_threads(n: int) -> tuple[int | None, str]:
    """Threads for each of ``n`` pool processes, and why: the cores this process may use divided among them, or None
    when the user set ``$OMP_NUM_THREADS`` (the processes inherit it, and torch reads it as it always does)."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        return None, f"threads as OMP_NUM_THREADS={env} says"
    threads = max(1, _usable_cores() // n)
    return threads, f"{threads} thread(s) each (cores / processes)"


def _share_cores(threads: int | None) -> None:
    """A pool process's start: its share of the cores. Left alone, each of N builds starts an OpenMP pool as wide as
    the machine and they spin against each other (N x cores threads on cores cores)."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)  # read when torch loads, before the first build's import
    if "torch" in sys.modules:  # the parent's main module, re-imported by spawn, may have loaded it already
        sys.modules["torch"].set_num_threads(threads)


def make_executor(spec: str | None, build_gb: float | None = None) -> Executor:
    """``local``, ``local:N``, ``inline``, ``dask://host:port`` or ``tls://host:port`` (default: ``$EDGEKIT_EXECUTOR``,
    else ``local``). ``inline`` builds in this process, one at a time: no worker start-up (a few seconds each, worth it
    for small models), and no isolation (a build that crashes takes the caller with it).

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

        threads, share = _pool_threads(n)

        def new_pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(
                max_workers=n,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_share_cores,
                initargs=(threads,),
            )

        describe = f"local process pool of {n} ({why}), {share}"
        return Executor(spec, n, describe, _pool=new_pool(), _new_pool=new_pool)
    if spec == "inline":
        return Executor(spec, 1, "this process (inline, one build at a time)")
    if spec.startswith(("dask://", "tls://")):
        return _dask_executor(spec)
    raise UsageError(
        f"--executor {spec!r} is not local, local:N, inline, dask://HOST:PORT or tls://HOST:PORT",
        "e.g. --executor dask://10.0.0.5:8786",
    )


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
TLS_HINT = (
    "configure Dask's TLS security (DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT "
    "and ..._KEY, or distributed.comm.tls in a Dask config file) with the cluster's certificates"
)


def _dask_executor(spec: str) -> Executor:
    """``dask://HOST:PORT`` (plain TCP: Dask runs pickled tasks, so anyone who reaches the port runs code on the workers;
    a warning unless it is on loopback) or ``tls://HOST:PORT`` (Dask's own TLS security configuration: certificates
    for the client, verified against the cluster's CA)."""
    try:
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        raise ExecutorError(
            f"--executor {spec.split('://')[0]}:// needs Dask distributed", "pip install 'edgekit[scale]'"
        ) from None
    with upstream.applied("dask-config-defaults"):  # what a user's dask.config.set block dropped, put back
        return _connect(spec, Client, Security)


def _connect(spec: str, Client: type[distributed.Client], Security: type[distributed.Security]) -> Executor:  # noqa: N803 (the classes, imported by the caller)
    tls = spec.startswith("tls://")
    hostport = spec.split("://", 1)[1]
    address = ("tls://" if tls else "tcp://") + hostport
    host, _, port = hostport.rpartition(":")
    try:  # a refused port fails at once, not after the client's own retries
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {address} ({exc})",
            "start one with `dask scheduler` and point --executor at its address",
        ) from None
    warning = None
    if tls:
        security = Security()  # what Dask's configuration says: the CA, and this client's certificate and key
        if not (security.tls_ca_file and security.tls_client_cert):
            raise ExecutorError(f"--executor {spec}: no TLS certificates are configured for the Dask client", TLS_HINT)
    else:
        security = None
        if host not in LOOPBACK:
            warning = (
                f"the Dask scheduler {address} is reached over plain TCP: anyone who can reach it runs code on the "
                "build workers; use tls://HOST:PORT with certificates on a shared network"
            )
    try:
        client = Client(address, timeout="10s", security=security)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutorError(
            f"cannot connect to the Dask scheduler at {address} ({str(exc).splitlines()[0][:160]})",
            TLS_HINT if tls else "start one with `dask scheduler` and point --executor at its address",
        ) from None
    n = len(client.scheduler_info().get("workers", {}))
    if n == 0:
        client.close()
        raise ExecutorError(
            f"the Dask scheduler at {address} has no workers", "start some with `dask worker " + address + "`"
        )
    return Executor(
        spec, n, f"Dask cluster at {address}{' (TLS)' if tls else ''}, {n} worker(s)", _client=client, warning=warning
    )
