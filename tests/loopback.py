"""A private sshd on 127.0.0.1 for tests and benchmarks (not part of the installed edgekit: it runs sshd with
``StrictModes no`` and its clients skip host-key checks, which only a throwaway loopback device may): a real ssh
device without touching the system's sshd.

It has its own host key, its own authorized key (generated), no PAM, and listens on free loopback ports; the
second port (``old_glibc_port``) makes ``getconf`` report glibc 2.31, to exercise the glibc check. Needs the
``openssh-server`` package and root (sshd wants ``/run/sshd``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from edgekit.device.devices import DeviceError

SSHD = Path("/usr/sbin/sshd")
#: an aarch64 board emulated here: qemu-user with a Cortex-A76 (its default -cpu max computes wrong int8 results)
QEMU = "qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu"
#: the same emulator with its default -cpu max: XNNPACK picks SME int8 kernels qemu 7.2 emulates wrongly (a board to
#: catch)
QEMU_MAX = "qemu-aarch64 -L /usr/aarch64-linux-gnu"


def _missing() -> list[str]:
    return [
        tool
        for tool in ("sshd", "ssh", "aarch64-linux-gnu-g++", "qemu-aarch64")
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()
    ]


def _wait_for_system_packages(timeout: float = 600.0) -> None:
    """`make test` installs the system packages in the background (its pid in .system-packages.pid until it ends)."""
    marker = Path(__file__).resolve().parent.parent / ".system-packages.pid"
    deadline = time.monotonic() + timeout
    while marker.exists() and time.monotonic() < deadline:
        try:
            os.kill(int(marker.read_text().strip()), 0)
        except (ValueError, ProcessLookupError, PermissionError):
            break  # it ended without removing the marker
        time.sleep(1)


def require_device_tools() -> None:
    """Fail the calling test module (not a skip: a missing prerequisite is a failure that says what to install) unless
    sshd, ssh, the aarch64 cross compiler and qemu-aarch64 are here, after waiting for `make test`'s background apt."""
    import pytest

    if _missing():
        _wait_for_system_packages()
    if missing := _missing():
        pytest.fail(
            f"device tests need {', '.join(missing)}: apt-get install -y openssh-server g++-aarch64-linux-gnu "
            "qemu-user (make test does it when run as root)",
            pytrace=False,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LoopbackSshd:
    folder: Path
    port: int
    old_glibc_port: int
    key: Path  # the client key sshd accepts

    def ssh_options(self, key: Path | None = None) -> list[str]:
        return [
            "-i",
            str(key or self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ]

    def device_toml(
        self, name: str, workdir: str | Path, *, port: int | None = None, extra: str = "", key: Path | None = None
    ) -> str:
        """A ``[[device]]`` table for this sshd (``extra``: more TOML lines, e.g. exec_prefix or tags)."""
        opts = ", ".join(f'"{o}"' for o in self.ssh_options(key))
        return (
            f'[[device]]\nname = "{name}"\nhost = "root@127.0.0.1"\nport = {port or self.port}\n'
            f'workdir = "{workdir}"\nssh_options = [{opts}]\n{extra}\n'
        )


@contextlib.contextmanager
def private_sshd(folder: str | Path) -> Iterator[LoopbackSshd]:
    """Start a private sshd (stopped on exit).

    Raises:
        DeviceError: sshd is not installed, or did not start (its log's last line).
    """
    if not SSHD.exists() or not shutil.which("ssh-keygen"):
        raise DeviceError("a loopback device needs OpenSSH's server", "apt-get install -y openssh-server")
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "key", "other_key"):
        if not (d / name).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "key.pub", d / "authorized_keys")
    (d / "fakebin").mkdir(exist_ok=True)
    (d / "fakebin" / "getconf").write_text('#!/bin/sh\necho "glibc 2.31"\n')
    (d / "fakebin" / "getconf").chmod(0o755)
    port, old = free_port(), free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nPort {old}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"StrictModes no\nPermitRootLogin prohibit-password\nMatch LocalPort {old}\n    SetEnv PATH={d}/fakebin:/usr/bin:/bin\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    (d / "sshd.pid").unlink(missing_ok=True)
    subprocess.run([str(SSHD), "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")], check=False)
    for _ in range(200):
        if (d / "sshd.pid").exists():
            break
        time.sleep(0.05)
    else:
        log = (d / "sshd.log").read_text().strip().splitlines() if (d / "sshd.log").exists() else ["no log"]
        raise DeviceError(f"the private sshd did not start: {log[-1] if log else 'no log'}", "run as root")
    try:
        yield LoopbackSshd(d, port, old, d / "key")
    finally:
        subprocess.run(["kill", (d / "sshd.pid").read_text().strip()], check=False)
