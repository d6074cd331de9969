"""Run one measuring worker process and watch it: its protocol lines, its RSS (sampled with psutil), its
timeout, and how it ended. A crash or a hang inside the ExecuTorch runtime ends the worker, never the caller."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ProfileError
from . import energy as energy_mod
from .protocol import ERROR_PREFIX, PHASE_PREFIX, PROGRESS_PREFIX, Phase

Progress = Callable[[str, int, int], None]


class WorkerFailed(ProfileError):
    """The worker exited with an error: ``status`` is its exit status, ``tail`` its last stderr lines."""

    def __init__(self, message: str, hint: str, status: int, tail: list[str]):
        super().__init__(message, hint)
        self.status = status
        self.tail = tail


@dataclass
class Watch:
    """What the parent saw of a running worker."""

    phase: str = Phase.START.value
    errors: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    peak_rss: int = 0
    peak_uss: int = 0
    rapl_marks: dict = field(default_factory=dict)
    wall_s: float = 0.0


def _reader(stream: Any, watch: Watch, progress: Progress | None, rapl: list) -> None:
    from .._noise import is_noise

    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line.startswith(PHASE_PREFIX):
            watch.phase = line[len(PHASE_PREFIX) :].strip()
            if rapl and watch.phase in (Phase.TIMED, Phase.OPS, Phase.DONE):
                watch.rapl_marks.setdefault(watch.phase, energy_mod.read_rapl(rapl))
            if progress:
                progress(watch.phase, 0, 0)
        elif line.startswith(PROGRESS_PREFIX):
            parts = line.split()
            if progress and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                progress(Phase.TIMED.value, int(parts[1]), int(parts[2]))
        elif line.startswith(ERROR_PREFIX):
            watch.errors.append(line[len(ERROR_PREFIX) :])
        elif line and not is_noise(line):
            watch.other.append(line)
            del watch.other[:-20]


def _sampler(pid: int, watch: Watch, stop: threading.Event, interval: float = 0.002) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    last_uss = 0.0
    while not stop.is_set():
        if watch.phase in (
            Phase.OPS,
            Phase.DONE,
        ):  # the ETDump re-load after the timed runs is not the measured footprint
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


def _wait(proc: subprocess.Popen, watch: Watch, timeout: float) -> int:
    """Wait for the worker (polling, so the timeout holds); its exit status as ``os.waitstatus_to_exitcode``."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                raise ProfileError(
                    f"the profiling worker exceeded the {timeout:g} s timeout during phase '{watch.phase}' "
                    "and was killed",
                    "raise --timeout, or lower --runs / --max-seconds",
                )
            time.sleep(0.005)
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def run_worker(
    cmd: list[str],
    *,
    timeout: float,
    cpus: tuple[int, ...] | None = None,
    progress: Progress | None = None,
    rapl: list | None = None,
    env: dict | None = None,
    sample: bool = True,
) -> Watch:
    """Start ``cmd`` in its own session (pinned to ``cpus``), watch it, and return what was seen.

    ``sample``: sample the process's RSS with psutil (off when ``cmd`` is ``ssh`` and the worker runs elsewhere).

    Raises:
        ProfileError: it could not start, timed out (killed), crashed (the signal is named) or failed (its
            ``@error`` line).
    """
    if cpus:  # util-linux's taskset sets the affinity and execs the worker: it starts pinned, threads and all
        taskset = shutil.which("taskset")
        if taskset is None:
            raise ProfileError(
                "--cpus needs taskset (util-linux) to start the worker pinned", "apt-get install util-linux"
            )
        cmd = [taskset, "-c", ",".join(map(str, cpus)), *cmd]
    watch = Watch()
    t0 = time.monotonic()
    try:  # its own session (so a timeout kills its whole process group), and no Python code between fork and exec
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
    except OSError as exc:
        raise ProfileError(f"cannot start the profiling worker: {exc}", "check the installation") from exc
    stop = threading.Event()
    threads = [threading.Thread(target=_reader, args=(proc.stderr, watch, progress, rapl or []), daemon=True)]
    if sample:
        threads.append(threading.Thread(target=_sampler, args=(proc.pid, watch, stop), daemon=True))
    for t in threads:
        t.start()
    try:
        code = _wait(proc, watch, timeout)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2)
        proc.returncode = 0
        if not threads[0].is_alive():
            proc.stderr.close()
        # else: an ssh multiplexing master holds the pipe for the remote session (killed by the caller's cleanup);
        # closing it now would wait on the reader thread, which ends with that session.
    watch.wall_s = time.monotonic() - t0
    if code < 0:
        name = signal.Signals(-code).name
        raise ProfileError(
            f"the profiling worker crashed with {name} during phase '{watch.phase}'"
            + (" — the program is probably corrupt or incompatible" if watch.phase in ("load", "start") else ""),
            "rebuild the program; compare with --engine python",
        )
    if code != 0:
        reason = watch.errors[-1] if watch.errors else (watch.other[-1] if watch.other else f"exit code {code}")
        raise WorkerFailed(
            f"the profiling worker failed during phase '{watch.phase}': {reason}",
            "check the program and inputs; see `edgekit profile --help`",
            code,
            watch.other[-5:],
        )
    return watch
