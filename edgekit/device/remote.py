"""Profile a program on a device: push the runner bundle once (cached there by content hash), push the program and
inputs, run the same runner protocol over ssh, fetch the result, and clean the run's folder on the device.

The runner's protocol lines come back on ssh's stderr, so the parent's watcher (phases, progress, timeout) works
as it does locally. On the device a POSIX-shell sampler reads the runner's RSS from ``/proc`` every 20 ms, and
thermal zones and CPU frequencies are read before and after the run: throttling is the first thing that lies on
boards.
"""

from __future__ import annotations

import io
import secrets
import shlex
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypedDict, TypeVar

from ..backends import family
from ..errors import ProfileError, UsageError
from ..runner.protocol import CHECK_INPUTS, CHECK_OUTPUTS, OUTPUTS, RESULT, read_result
from ..runner.worker import Watch, WorkerFailed, run_worker
from .bundle import RUNNER_NAME, Bundle, BundleError, build_bundle, normalize_arch, read_bundle
from .devices import Device, DeviceError, DeviceFacts, Ssh, device_facts, glibc_ok, ssh_error

#: what a run's result.json is read as (a profile's WorkerResult, a generation run's GenerationWorkerResult)
R = TypeVar("R")


class RunFacts(TypedDict, total=False):
    """Thermal zones and CPU frequencies on the device, read before or after a run (absent where unreadable)."""

    thermal_c: dict[str, float]
    cpu_freq_mhz: dict[str, float]


class DeviceRunInfo(TypedDict):
    """What a device run records beside the worker's result."""

    name: str
    host: str
    facts: DeviceFacts
    before: RunFacts
    after: RunFacts
    emulated: bool
    bundle: dict[str, str]  # id, arch, glibc_floor
    bytes_sent: dict[str, int]  # bundle, program_and_inputs
    outputs: Path | None  # the outputs file fetched, when the run wrote one
    check_outputs: Path | None  # the reference check's outputs, when it ran


RUN_SCRIPT = r"""
set -u
R={run}
facts() {{
  for z in /sys/class/thermal/thermal_zone*/temp; do [ -r "$z" ] && echo "temp ${{z%/temp}} $(cat "$z")"; done
  for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq; do [ -r "$f" ] && echo "freq ${{f%/cpufreq/*}} $(cat "$f")"; done
  return 0
}}
cd "$R" || exit 1
echo $$ > pgid
facts > before.txt 2>/dev/null
{prefix} {runner} {args} &
pid=$!
echo $pid > pid
peak=0
while kill -0 $pid 2>/dev/null; do
  while read -r k v rest; do [ "$k" = "VmRSS:" ] && [ "$v" -gt "$peak" ] && peak=$v; done < /proc/$pid/status 2>/dev/null
  sleep 0.02
done
wait $pid
code=$?
facts > after.txt 2>/dev/null
echo "$peak" > sampler_kb 2>/dev/null
exit $code
"""


@dataclass
class DeviceRun(Generic[R]):
    """What a device profile adds to a local one."""

    raw: R  # what the reader made of result.json
    watch: Watch
    info: DeviceRunInfo


def _tar(files: dict[str, bytes | Path], mode: int = 0o644) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(RUNNER_NAME) else mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _workdir(facts: DeviceFacts, device: Device) -> str:
    w = device.workdir
    return w if w.startswith("/") else f"{facts.get('home') or '.'}/{w}"


def ensure_bundle(ssh: Ssh, facts: DeviceFacts, workdir: str, backend: str = "xnnpack") -> tuple[Bundle, str, int]:
    """The device's bundle folder (pushed when missing), once the device's arch is one that runs ``backend``'s programs
    (:mod:`edgekit.backends`); returns (bundle, remote path, bytes sent)."""
    device = ssh.device
    arch = device.arch or facts["arch"]
    try:
        arch = normalize_arch(arch)  # uname -m spellings (arm64, amd64) → the names families and bundles use
    except UsageError as exc:
        raise BundleError(f"device {device.name} is {arch}: {exc.message}", exc.hint) from None
    fam = family(backend)
    if not fam.runs_on(arch):
        raise BundleError(
            f"device {device.name} is {arch}: {fam.backend.value} programs run on {', '.join(fam.archs)} only",
            "profile the package on such a device, or build it for a backend this device runs",
        )
    try:
        bundle = read_bundle(build_bundle(arch))
    except UsageError as exc:
        raise BundleError(f"device {device.name} is {arch}: {exc.message}", exc.hint) from None
    if not glibc_ok(facts.get("glibc"), bundle.glibc_floor):
        raise BundleError(
            f"device {device.name} has glibc {facts['glibc']}, the {arch} runner needs >= {bundle.glibc_floor}",
            "use a device OS with glibc >= 2.34 (Debian 12, Raspberry Pi OS bookworm, Ubuntu 22.04 or newer)",
        )
    remote = f"{workdir}/bundles/{bundle.bundle_id}"
    q = shlex.quote(remote)
    if ssh.run(f"test -f {q}/bundle.json && echo present || echo absent").strip() == "present":
        return bundle, remote, 0
    payload = _tar({rel: bundle.path / rel for rel in [*bundle.files, "bundle.json"]})
    tmp = f"{remote}.{secrets.token_hex(4)}.tmp"
    t = shlex.quote(tmp)
    # Another edgekit may push the same bundle at the same time: whoever renames first wins, the other discards its copy.
    ssh.run(
        f"mkdir -p {t} && tar -xzf - -C {t} || {{ rm -rf {t}; exit 1; }}; "
        f"if [ -d {q} ]; then rm -rf {t}; else mv {t} {q} || {{ rm -rf {t}; exit 1; }}; fi",
        data=payload,
        timeout=600,
    )
    return bundle, remote, len(payload)


def _parse_facts(text: str) -> RunFacts:
    temps, freqs = {}, {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].lstrip("-").isdigit():
            (temps if parts[0] == "temp" else freqs)[parts[1].rsplit("/", 1)[-1]] = int(parts[2])
    return {
        "thermal_c": {k: v / 1000 for k, v in temps.items()},
        "cpu_freq_mhz": {k: v / 1000 for k, v in freqs.items()},
    }


def _fetch(ssh: Ssh, run: str, local: Path) -> dict[str, Path]:
    """Copy the run's result files into ``local`` and remove the run's folder on the device."""
    names = (RESULT, "before.txt", "after.txt", "sampler_kb", OUTPUTS, CHECK_OUTPUTS)
    q = shlex.quote(run)
    present = " ".join(f"$( [ -f {n} ] && echo {n} )" for n in names)
    payload = ssh.run(f"cd {q} && tar -czf - {present}; cd / && rm -rf {q}", binary=True)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        tar.extractall(local, filter="data")
    return {n: (local / n) for n in names if (local / n).exists()}


def profile_on_device(
    device: Device,
    pte: Path,
    blobs: list[bytes],
    check: bytes | None,
    worker_args: list[str],
    *,
    timeout: float,
    cpus: tuple[int, ...] | None,
    progress: Callable[[str, int, int], None] | None,
    local: Path,
    reader: Callable[[Path], R] = read_result,  # R: WorkerResult unless told otherwise
    extra: dict[str, Path] | None = None,
    backend: str = "xnnpack",
) -> DeviceRun[R]:
    """Run the runner on ``device`` with ``worker_args`` (the protocol's options, paths relative to the run folder);
    its ``result.json`` is read with ``reader`` (a profile's :class:`WorkerResult` unless told otherwise);
    ``extra`` files go beside the program (a generation program's external weights); ``backend``: the program's
    (a device whose arch does not run it is refused before anything is sent).

    Raises:
        DeviceError, BundleError, ProfileError: one line each; the run's folder on the device is removed.
    """
    ssh = Ssh(device)
    facts = device_facts(ssh)
    workdir = _workdir(facts, device)
    bundle, remote_bundle, bundle_bytes = ensure_bundle(ssh, facts, workdir, backend)
    run = f"{workdir}/runs/{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    payload = _tar(
        {
            "model.pte": pte,
            **(extra or {}),
            "inputs.bin": b"".join(blobs),
            **({CHECK_INPUTS: check} if check is not None else {}),
        }
    )
    q = shlex.quote(run)
    ssh.run(f"mkdir -p {q} && tar -xzf - -C {q} || {{ rm -rf {q}; exit 1; }}", data=payload, timeout=600)
    # the prefix is data from a devices file: each of its words goes to the device's shell quoted
    words = [*shlex.split(device.exec_prefix), *(["taskset", "-c", ",".join(map(str, cpus))] if cpus else [])]
    prefix = " ".join(shlex.quote(w) for w in words)
    script = RUN_SCRIPT.format(
        run=q,
        prefix=prefix,
        runner=shlex.quote(f"{remote_bundle}/{RUNNER_NAME}"),
        args=" ".join(shlex.quote(a) for a in worker_args),
    )
    try:
        watch = run_worker(ssh.command(script), timeout=timeout, progress=progress, sample=False)
    except WorkerFailed as exc:
        _kill(ssh, run)
        if exc.status == 255:  # ssh itself: the connection dropped during the run
            raise ssh_error(device, "\n".join(exc.tail) or "the connection was lost during the run") from None
        raise ProfileError(f"on device {device.name}: {exc.message}", exc.hint) from None
    except ProfileError as exc:  # the timeout, or a crash by signal
        _kill(ssh, run)
        raise ProfileError(f"on device {device.name}: {exc.message}", exc.hint) from None
    except BaseException:
        _kill(ssh, run)
        raise
    files = _fetch(ssh, run, local)
    raw = reader(files[RESULT]) if RESULT in files else None
    if raw is None:
        raise ProfileError(f"device {device.name} returned no result", "run `edgekit devices check`")
    before: RunFacts = _parse_facts(files["before.txt"].read_text()) if "before.txt" in files else {}
    after: RunFacts = _parse_facts(files["after.txt"].read_text()) if "after.txt" in files else {}
    sampler_kb = files["sampler_kb"].read_text().strip() if "sampler_kb" in files else ""
    watch.peak_rss = int(sampler_kb) * 1024 if sampler_kb.isdigit() else 0
    info: DeviceRunInfo = {
        "name": device.name,
        "host": device.host,
        "facts": facts,
        "before": before,
        "after": after,
        "emulated": device.emulated,
        "bundle": {"id": bundle.bundle_id, "arch": bundle.arch, "glibc_floor": bundle.glibc_floor},
        "bytes_sent": {"bundle": bundle_bytes, "program_and_inputs": len(payload)},
        "outputs": files.get(OUTPUTS),
        "check_outputs": files.get(CHECK_OUTPUTS),
    }
    return DeviceRun(raw, watch, info)


def _kill(ssh: Ssh, run: str) -> None:
    """Best effort: stop what a run left running (timeout, Ctrl-C) and remove its folder. The run's shell leads its
    own process group (sshd starts it so), so killing the group takes the runner, the emulator and the sampler."""
    q = shlex.quote(run)
    try:
        ssh.run(
            f"if [ -f {q}/pgid ]; then kill -9 -$(cat {q}/pgid) 2>/dev/null || kill -9 $(cat {q}/pid) $(cat {q}/pgid) "
            f"2>/dev/null; fi; rm -rf {q}",
            timeout=30,
        )
    except DeviceError:
        pass


def device_status(device: Device) -> dict[str, object]:
    """``devices check``: reachability, facts, and whether this edgekit's bundle is already on the device."""
    ssh = Ssh(device)
    facts = device_facts(ssh)
    arch = device.arch or facts["arch"]
    status = {**facts, "reachable": True}
    try:
        bundle = read_bundle(build_bundle(arch))
    except (BundleError, UsageError) as exc:
        return {**status, "bundle": f"cannot build: {exc.message}"}
    if not glibc_ok(facts.get("glibc"), bundle.glibc_floor):
        return {**status, "bundle": f"glibc {facts['glibc']} < {bundle.glibc_floor} needed"}
    remote = f"{_workdir(facts, device)}/bundles/{bundle.bundle_id}"
    present = ssh.run(f"test -f {shlex.quote(remote)}/bundle.json && echo yes || echo no").strip() == "yes"
    return {**status, "bundle": f"{bundle.bundle_id} " + ("present" if present else "pushed at first profile")}
