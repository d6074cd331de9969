"""Facts about the machine and the software, recorded beside every measurement.

Read without importing torch (package metadata only), so the profiler's parent stays light.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Mapping, TypedDict


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class MachineFacts(TypedDict):
    """:func:`machine_facts`: what results store (as JSON) and compare about the machine that measured them."""

    cpu_model: str
    arch: str
    cores_logical: int | None
    cores_physical: int | None
    cpu_max_mhz: float | None
    memory_gb: float
    os: str
    hostname: str
    python: str
    torch: str | None
    executorch: str | None
    edgekit: str | None
    machine_id: str  # machine_id() of the facts above


class CommitFacts(TypedDict):
    """:func:`commit_facts`: the checkout a benchmark ran from (all None outside a repository)."""

    sha: str | None
    short: str | None
    dirty: bool | None
    branch: str | None


def software_versions() -> dict[str, str | None]:
    """The versions that change what a build produces (read from package metadata: no imports)."""
    from ._version import __version__

    return {
        "edgekit": __version__,
        "torch": package_version("torch"),
        "executorch": package_version("executorch"),
        "torchao": package_version("torchao"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def machine_facts() -> MachineFacts:
    """CPU, cores, frequency, memory, OS and the versions that change measured figures."""
    import psutil

    freq = None
    try:
        f = psutil.cpu_freq()
        freq = round(f.max or f.current, 1) if f else None
    except (OSError, NotImplementedError, AttributeError):
        pass
    cpu, arch, cores, host = cpu_model(), platform.machine(), psutil.cpu_count(logical=True), socket.gethostname()
    return {
        "cpu_model": cpu,
        "arch": arch,
        "cores_logical": cores,
        "cores_physical": psutil.cpu_count(logical=False),
        "cpu_max_mhz": freq,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "hostname": host,
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "executorch": package_version("executorch"),
        "edgekit": package_version("edgekit"),
        "machine_id": machine_id({"cpu_model": cpu, "arch": arch, "cores_logical": cores, "hostname": host}),
    }


#: Hardware facts that must agree for two measurements to be comparable. The OS string (kernel version)
#: and software versions are compared too, but only warned about: that is what runs are compared *for*.
COMPARABLE_KEYS = ("cpu_model", "arch", "cores_logical", "memory_gb")


def machine_id(facts: Mapping[str, object]) -> str:
    """A short stable id of the hardware + OS (not the software versions, which runs compare on purpose)."""
    text = "|".join(str(facts.get(k)) for k in ("cpu_model", "arch", "cores_logical", "hostname"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def commit_facts(cwd: str | os.PathLike | None = None) -> CommitFacts:
    """The git commit of the working tree (sha, dirty flag), or nulls outside a repository."""

    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "short": None, "dirty": None, "branch": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "short": sha[:10], "dirty": bool(status), "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def commit_label(cwd: str | os.PathLike | None = None) -> str:
    """:func:`commit_facts` as a benchmark result's header says it: the short sha, ``+changes`` when tracked files
    differ from it (``unknown`` outside a repository)."""
    facts = commit_facts(cwd)
    return (facts["short"] or "unknown") + ("+changes" if facts["dirty"] else "")
