"""The devices file and the system OpenSSH client.

``~/.config/edgekit/devices.toml`` (or ``--devices FILE``) lists the boards a user measures on::

    [[device]]
    name = "pi5"                     # how commands refer to it
    host = "pi@pi5.local"            # an ssh destination: user@host, or a Host alias from ~/.ssh/config
    port = 22                        # optional (else ssh's own default or the alias's Port)
    arch = "aarch64"                 # optional: detected with `uname -m`
    workdir = ".cache/edgekit"       # optional: where bundles and runs live on the device (relative to home)
    exec_prefix = ""                 # optional: a command line the runner is started under, on the device, e.g.
                                     # "qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu"; split into words and
                                     # each word quoted, so no ; | $( ) or redirections
    ssh_options = []                 # optional: extra ssh arguments, e.g. ["-i", "~/.ssh/board_key"]
    tags = ["arm", "ci"]             # optional: for `bench run --devices-tag`
    [device.power]                   # optional: the power model for estimated joules on this device
    active_watts_per_core = 1.2
    idle_watts = 2.7

Everything goes through ``ssh`` itself, so keys, the agent, ``~/.ssh/config`` and ProxyJump work as they do in a
terminal; connections are multiplexed (ControlMaster) so each command after the first costs a round trip, not a
handshake. The device needs only sshd and a POSIX shell.
"""

from __future__ import annotations

import atexit
import dataclasses
import difflib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, overload

from .. import paths
from ..errors import ConfigError, EdgekitError, UsageError
from ..fileops import is_plain_name
from ..targets import PowerConfig

DEFAULT_DEVICES_FILE = paths.DEVICES_FILE
DEFAULT_WORKDIR = paths.DEVICE_WORKDIR
_KEYS = ("name", "host", "port", "arch", "workdir", "exec_prefix", "ssh_options", "tags", "power")


#: an ssh destination: [user@]host or a Host alias; never starting with "-" (ssh would parse it as an option)
SSH_DESTINATION = re.compile(r"(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?[A-Za-z0-9._\[\]:%-]+")


class DeviceError(EdgekitError):
    """A device cannot be reached, refused the login, or failed a command."""


@dataclass(frozen=True)
class Device:
    """One board (or emulated board) reachable over ssh."""

    name: str
    host: str
    port: int | None = None
    arch: str | None = None
    workdir: str = DEFAULT_WORKDIR
    exec_prefix: str = ""
    ssh_options: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    power: PowerConfig | None = None

    def __post_init__(self) -> None:
        for key in ("name", "host", "workdir"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"device {self.name!r}: {key} must be a non-empty string")
        # names end up in file names (a baseline is NAME@DEVICE.json) and hosts in ssh's argument list: both are data
        if not is_plain_name(self.name):
            raise ConfigError(
                f"device name {self.name!r} is not a plain name",
                "use letters, digits and . _ - @ (it becomes part of file names), starting with a letter or digit",
            )
        if self.host.startswith("-") or not SSH_DESTINATION.fullmatch(self.host):
            raise ConfigError(
                f"device {self.name!r}: host {self.host!r} is not an ssh destination",
                "give user@host, a host name or address, or a Host alias from ~/.ssh/config (it must not "
                "begin with '-': ssh would read it as an option)",
            )
        try:
            shlex.split(self.exec_prefix)
        except ValueError as exc:
            raise ConfigError(
                f"device {self.name!r}: exec_prefix {self.exec_prefix!r} cannot be split into words ({exc})",
                "write it as a command line, e.g. qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu",
            ) from None
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536
        ):
            raise ConfigError(f"device {self.name!r}: port must be 1..65535, got {self.port!r}")
        for key in ("ssh_options", "tags"):
            value = getattr(self, key)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"device {self.name!r}: {key} must be a list of strings")
            object.__setattr__(self, key, tuple(value))
        if self.arch is not None:
            from .bundle import normalize_arch

            object.__setattr__(self, "arch", normalize_arch(self.arch))
        if isinstance(self.power, dict):
            object.__setattr__(self, "power", PowerConfig(**self.power))

    @property
    def emulated(self) -> bool:
        """A device whose runs go through an emulator: its timings mean nothing, its outputs still do."""
        return "qemu" in self.exec_prefix

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["ssh_options"], d["tags"] = list(self.ssh_options), list(self.tags)
        return d


def load_devices(path: str | Path | None = None) -> list[Device]:
    """The devices of a devices file (``[]`` when the default file does not exist).

    Raises:
        ConfigError: invalid TOML, unknown keys, duplicate names or invalid values (naming the file).
    """
    explicit = path is not None
    p = Path(path or os.environ.get("EDGEKIT_DEVICES") or DEFAULT_DEVICES_FILE).expanduser()
    if not p.is_file():
        if explicit:
            raise ConfigError(f"devices file {p} does not exist", "see `edgekit devices --help` for the format")
        return []
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read it: {exc}") from None
    unknown = [k for k in data if k != "device"]
    if unknown:
        raise ConfigError(f"{p}: unknown key {unknown[0]!r}", "the file holds [[device]] tables")
    devices, seen = [], set()
    for raw in data.get("device", []):
        bad = [k for k in raw if k not in _KEYS]
        if bad:
            close = difflib.get_close_matches(bad[0], _KEYS, n=1)
            raise ConfigError(
                f"{p}: unknown key {bad[0]!r} in [[device]]" + (f" (did you mean {close[0]!r}?)" if close else ""),
                "allowed keys: " + ", ".join(_KEYS),
            )
        try:
            dev = Device(**raw)
        except TypeError as exc:
            raise ConfigError(f"{p}: a [[device]] lacks a key: {exc}", "each device needs name and host") from None
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc.message}", exc.hint) from None
        if dev.name in seen:
            raise ConfigError(f"{p}: device {dev.name!r} appears twice", "give every device a unique name")
        seen.add(dev.name)
        devices.append(dev)
    return devices


_SSH_URL = re.compile(r"^ssh://(?P<dest>(?:[\w.][\w.-]*@)?[\w.][\w.-]*)(?::(?P<port>\d+))?/?$")


def resolve_device(ref: str | Device, devices_file: str | Path | None = None) -> Device:
    """A device name from the devices file, or ``ssh://user@host[:port]``.

    Raises:
        UsageError: an unknown name (the known ones are listed) or a malformed ssh:// URL.
    """
    if isinstance(ref, Device):
        return ref
    if ref.startswith("ssh://"):
        m = _SSH_URL.match(ref)
        if not m:
            raise UsageError(f"{ref!r} is not ssh://[user@]host[:port]", "e.g. ssh://pi@192.168.1.20:22")
        return Device(name=m["dest"], host=m["dest"], port=int(m["port"]) if m["port"] else None)
    devices = load_devices(devices_file)
    for d in devices:
        if d.name == ref:
            return d
    names = [d.name for d in devices]
    close = difflib.get_close_matches(ref, names, n=1)
    raise UsageError(
        f"unknown device {ref!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        ("devices: " + ", ".join(names))
        if names
        else f"add it to {devices_file or DEFAULT_DEVICES_FILE}, or pass ssh://user@host",
    )


def devices_with_tag(tag: str, devices_file: str | Path | None = None) -> list[Device]:
    found = [d for d in load_devices(devices_file) if tag in d.tags]
    if not found:
        raise UsageError(f"no device has tag {tag!r}", "tags are set per [[device]] in the devices file")
    return found


# ------------------------------------------------------------------------------------------------ ssh
_CONTROL_DIR: str | None = None


def _control_dir() -> str:
    """A short private folder for ControlMaster sockets (unix socket paths are limited to ~100 bytes)."""
    global _CONTROL_DIR
    if _CONTROL_DIR is None:
        _CONTROL_DIR = tempfile.mkdtemp(prefix="ek-ssh-", dir="/tmp")
        atexit.register(shutil.rmtree, _CONTROL_DIR, True)
    return _CONTROL_DIR


@dataclass
class Ssh:
    """Commands on one device through the system ``ssh`` (multiplexed)."""

    device: Device
    connect_timeout: int = 10

    def base(self) -> list[str]:
        if not shutil.which("ssh"):
            raise DeviceError("the OpenSSH client (ssh) is not installed", "apt-get install -y openssh-client")
        d = self.device
        # One master connection per device definition: two devices on one host with different keys or options must
        # not share a login (ssh's own %C hashes only host, port and user).
        ident = hashlib.sha256(repr((d.host, d.port, d.ssh_options)).encode()).hexdigest()[:8]
        cmd = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={_control_dir()}/{ident}-%C",
            "-o",
            "ControlPersist=60",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
        ]
        if d.port:
            cmd += ["-p", str(d.port)]
        # "--" ends ssh's options: the destination (and the command after it) is never read as one
        return [*cmd, *(os.path.expanduser(o) if o.startswith("~") else o for o in d.ssh_options), "--", d.host]

    def command(self, script: str) -> list[str]:
        """The local argv that runs ``script`` with the device's POSIX shell."""
        return [*self.base(), "sh -c " + shlex.quote(script)]

    @overload
    def run(
        self, script: str, *, data: bytes | None = None, timeout: float = 120, binary: Literal[False] = False
    ) -> str: ...

    @overload
    def run(self, script: str, *, data: bytes | None = None, timeout: float = 120, binary: Literal[True]) -> bytes: ...

    def run(self, script: str, *, data: bytes | None = None, timeout: float = 120, binary: bool = False) -> str | bytes:
        """Run ``script`` on the device (stdin: ``data``); its stdout (bytes with ``binary``, else text).

        Raises:
            DeviceError: unreachable, authentication refused, a timeout, or the script failed (its last stderr line).
        """
        try:
            p = subprocess.run(self.command(script), input=data, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"device {self.device.name}: no answer within {timeout:g} s",
                "check the device and the network; ssh to it by hand",
            ) from None
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode == 255:
            raise ssh_error(self.device, err)
        if p.returncode != 0:
            raise remote_error(self.device, err, p.returncode)
        return p.stdout if binary else p.stdout.decode("utf-8", "replace")


def ssh_error(device: Device, stderr: str) -> DeviceError:
    """ssh's own failure (exit 255) as one line that names the device and the fix."""
    line = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "ssh exited with 255")
    where = device.host + (f":{device.port}" if device.port else "")
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return DeviceError(
            f"device {device.name}: {where} refused the login ({line})",
            f"check that `ssh {where}` works without a password prompt (a key in ssh-agent or "
            "~/.ssh/config); edgekit never types passwords",
        )
    if "Host key verification failed" in stderr:
        return DeviceError(
            f"device {device.name}: the host key of {where} is unknown or changed",
            f"connect once by hand (ssh {where}) to accept it, or fix ~/.ssh/known_hosts",
        )
    return DeviceError(
        f"device {device.name}: cannot reach {where} ({line})",
        "check the host name, the port and that sshd runs on the device",
    )


def remote_error(device: Device, stderr: str, code: int) -> DeviceError:
    line = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), f"exit code {code}")
    if "No space left on device" in stderr:
        return DeviceError(
            f"device {device.name}: its disk is full ({line})",
            f"free space in the device's workdir {device.workdir}, or set another workdir",
        )
    return DeviceError(
        f"device {device.name}: a command failed: {line}", "run `edgekit devices check` to see the device's state"
    )


# ---------------------------------------------------------------------------------------------- facts
FACTS_SCRIPT = r"""
echo "@arch $(uname -m)"
echo "@os $(uname -sr)"
echo "@hostname $(uname -n)"
echo "@glibc $(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)"
echo "@cores $(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
echo "@mem_kb $(awk '/MemTotal/{print $2}' /proc/meminfo)"
echo "@cpu $(grep -m1 -E '^(model name|Hardware|Model)' /proc/cpuinfo | cut -d: -f2-)"
echo "@governor $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo unknown)"
echo "@home $HOME"
"""


class DeviceFacts(TypedDict):
    """:func:`device_facts`: what a device is, as a device profile stores it (beside a local one's machine facts)."""

    device: str  # its name in the devices file
    host: str
    arch: str  # the arch the runner sees (an emulator's, under one)
    os: str | None
    hostname: str | None
    glibc: str | None  # major.minor; None: musl or unknown
    cores_logical: int | None
    memory_gb: float | None
    cpu_model: str
    governor: str | None
    home: str | None
    emulated: bool
    exec_prefix: str | None
    machine_id: str  # of the CPU model, arch, cores, hostname and device name


def device_facts(ssh: Ssh) -> DeviceFacts:
    """What the device is: arch, OS, glibc, cores, memory, CPU model, governor (one ssh round trip)."""
    out = ssh.run(FACTS_SCRIPT, timeout=60)
    raw = {}
    for line in out.splitlines():
        if line.startswith("@") and " " in line:
            k, v = line[1:].split(" ", 1)
            raw[k] = v.strip()
    glibc = re.search(r"(\d+\.\d+)", raw.get("glibc", ""))
    d = ssh.device
    arch, cpu = raw.get("arch", "?"), raw.get("cpu") or raw.get("arch", "?")
    if d.exec_prefix:  # the arch the runner sees is the emulated one
        arch = d.arch or arch
        cpu = f"emulated {arch} ({d.exec_prefix.split()[0]}) on {cpu}"
    cores = int(raw["cores"]) if raw.get("cores", "").isdigit() else None
    hostname = raw.get("hostname")
    return {
        "device": d.name,
        "host": d.host,
        "arch": arch,
        "os": raw.get("os"),
        "hostname": hostname,
        "glibc": glibc[1] if glibc else None,
        "cores_logical": cores,
        "memory_gb": round(int(raw["mem_kb"]) / 2**20, 1) if raw.get("mem_kb", "").isdigit() else None,
        "cpu_model": cpu,
        "governor": raw.get("governor"),
        "home": raw.get("home"),
        "emulated": d.emulated,
        "exec_prefix": d.exec_prefix or None,
        "machine_id": hashlib.sha256(
            "|".join(str(v) for v in (cpu, arch, cores, hostname, d.name)).encode()
        ).hexdigest()[:12],
    }


def glibc_ok(have: str | None, need: str) -> bool:
    if have is None:
        return True  # musl or unknown: let the run say so
    return tuple(int(x) for x in have.split(".")[:2]) >= tuple(int(x) for x in need.split(".")[:2])
