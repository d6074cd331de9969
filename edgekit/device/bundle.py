"""Runner bundles: the native runner compiled for one CPU architecture, with its shared libraries beside it.

A bundle is a folder a device can run as it is (``./edgekit-runner``, libraries found through ``$ORIGIN/lib``)::

    edgekit-runner        the measured process (runner.cpp), no Python, no torch
    lib/*.so              the executorch wheel's runtime, XNNPACK, kernels, threadpool, ETDump for that arch
    bundle.json           arch, executorch version, worker protocol, glibc floor, sha256 of every file

The host's architecture compiles against the installed executorch wheel. Another architecture compiles with its
cross compiler (Debian's ``g++-aarch64-linux-gnu``) against the matching wheel, fetched once with
``pip download`` for the installed executorch version and cached (``$EDGEKIT_CACHE``, default ``~/.cache/edgekit``).
Bundles are cached by content: the same source, compiler and wheel give the same bundle.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from ..errors import EdgekitError, UsageError
from ..fileops import exclusive, read_json, staged_output, temp_name, write_json
from ..runner.native import (
    LIBS,
    NativeUnavailable,
    cache_root,
    compile_command,
    compile_runner,
    compiler_id,
    executorch_dir,
    executorch_version,
    sources_digest,
)
from ..runner.protocol import PROTOCOL_VERSION

BUNDLE_MARKER = "bundle.json"
RUNNER_NAME = "edgekit-runner"


@dataclass(frozen=True)
class ArchSpec:
    name: str
    compilers: tuple[str, ...]  # tried in order
    wheel_platform: str
    apt_package: str
    qemu: str | None  # how this host runs it when it is not the host's arch


ARCHES = {
    a.name: a
    for a in (
        ArchSpec(
            "x86_64",
            ("x86_64-linux-gnu-g++", "g++", "clang++"),
            "manylinux_2_28_x86_64",
            "g++-x86-64-linux-gnu",
            "qemu-x86_64 -L /usr/x86_64-linux-gnu",
        ),
        # qemu's default -cpu max makes XNNPACK pick SME int8 kernels that qemu 7.2 emulates wrongly: cortex-a76 is exact.
        ArchSpec(
            "aarch64",
            ("aarch64-linux-gnu-g++",),
            "manylinux_2_28_aarch64",
            "g++-aarch64-linux-gnu",
            "qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu",
        ),
    )
}
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}


class BundleError(EdgekitError):
    """A runner bundle cannot be built, is damaged, or does not fit a device."""


def normalize_arch(arch: str) -> str:
    """``uname -m`` spellings → a known arch name.

    Raises:
        UsageError: an arch edgekit has no runner for (the known ones are listed).
    """
    name = ARCH_ALIASES.get(arch.strip().lower(), arch.strip().lower())
    if name not in ARCHES:
        raise UsageError(f"no runner bundle for arch {arch!r}", "edgekit builds bundles for: " + ", ".join(ARCHES))
    return name


def host_arch() -> str:
    return ARCH_ALIASES.get(platform.machine().lower(), platform.machine().lower())


def _compiler(spec: ArchSpec) -> str:
    native = spec.name == host_arch()
    env = os.environ.get("CXX") if native else None
    for cxx in ((env,) if env else ()) + spec.compilers:
        if cxx and shutil.which(cxx):
            return shutil.which(cxx)
    raise BundleError(
        f"no C++ compiler for {spec.name} found (looked for {', '.join(spec.compilers)})",
        f"install one: apt-get install -y {spec.apt_package if not native else 'g++'}",
    )


def _wheel_tree(spec: ArchSpec) -> Path:
    """The executorch tree (include/, lib/) for ``spec``: this wheel on the host's arch, else the matching wheel's,
    downloaded once with pip and cached."""
    if spec.name == host_arch():
        return executorch_dir()
    version = executorch_version()
    root = cache_root() / "wheels" / f"executorch-{version}-{spec.name}"
    tree = root / "executorch"
    if (tree / "lib" / "libexecutorch.so").is_file():
        return tree
    with exclusive(root / ".lock"):  # two device profiles on a fresh cache: one downloads, the other waits
        if not (tree / "lib" / "libexecutorch.so").is_file():
            _fetch_wheel_tree(spec, version, root, tree)
    return tree


def _fetch_wheel_tree(spec: ArchSpec, version: str, root: Path, tree: Path) -> None:
    """Download the executorch wheel for ``spec`` and unpack its include/ and lib/ into ``tree`` (under the
    caller's lock; the unpacking is staged under a temp name, so a killed fetch leaves only what the cleaner
    removes)."""
    download, staging = root / temp_name("download"), root / temp_name("executorch")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        spec.wheel_platform,
        "--python-version",
        f"{sys.version_info.major}.{sys.version_info.minor}",
        f"executorch=={version}",
        "-d",
        str(download),
        "--quiet",
        "--disable-pip-version-check",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        wheels = list(download.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            err = next((ln for ln in proc.stderr.splitlines() if "ERROR" in ln), proc.stderr.strip()[-200:])
            raise BundleError(
                f"could not download the executorch {version} wheel for {spec.name}: {err}",
                "check the network and that PyPI has a wheel for that platform",
            )
        with zipfile.ZipFile(wheels[0]) as z:
            for name in z.namelist():
                if name.startswith(("executorch/include/", "executorch/lib/")) and not name.endswith("/"):
                    z.extract(name, staging)
        shutil.rmtree(tree, ignore_errors=True)  # a tree without its libexecutorch.so is a broken earlier copy
        os.replace(staging / "executorch", tree)
    finally:
        shutil.rmtree(download, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def glibc_floor(paths: list[Path]) -> str:
    """The newest ``GLIBC_x.y`` symbol version any of these ELF files asks for: the device needs at least that."""
    best = (0, 0)
    for p in paths:
        for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)", p.read_bytes()):
            best = max(best, (int(m[1]), int(m[2])))
    return f"{best[0]}.{best[1]}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(spec: ArchSpec, cxx: str, tree: Path) -> str:
    h = sources_digest(compile_command("CXX", Path("OUT"), Path("ET"), "$ORIGIN/lib"))
    h.update(f"{spec.name}|{compiler_id(cxx)}|{executorch_version()}|{PROTOCOL_VERSION}".encode())
    for name in LIBS:
        h.update(_sha256(tree / "lib" / f"lib{name}.so").encode())
    return h.hexdigest()[:16]


def build_bundle(arch: str | None = None, out: str | Path | None = None, *, force: bool = False) -> Path:
    """Build (or reuse from the cache) the runner bundle for ``arch`` (default: this machine's).

    Args:
        arch: ``x86_64`` or ``aarch64`` (``uname -m`` spellings are accepted).
        out: also copy the bundle to this folder.
        force: replace an existing bundle at ``out``.

    Returns:
        The bundle folder (``out``, or the cached one).

    Raises:
        BundleError: no cross compiler (the apt-get command is named), the wheel could not be fetched, or
            compilation failed.
    """
    spec = ARCHES[normalize_arch(arch or host_arch())]
    cxx = _compiler(spec)
    tree = _wheel_tree(spec)
    folder = cache_root() / "bundles" / f"{spec.name}-{_digest(spec, cxx, tree)}"
    with exclusive(folder.parent / f".{folder.name}.lock"):  # two profiles needing it at once compile it once
        if not (folder / BUNDLE_MARKER).is_file():
            _compile_bundle(spec, cxx, tree, folder)
    if out is None:
        return folder
    with staged_output(out, force, marker=BUNDLE_MARKER) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
    return Path(out)


def _compile_bundle(spec: ArchSpec, cxx: str, tree: Path, folder: Path) -> None:
    """The runner compiled for ``spec`` against the wheel ``tree``, its libraries beside it, into ``folder``."""
    with staged_output(folder, True, marker=BUNDLE_MARKER) as tmp:
        (tmp / "lib").mkdir()
        try:
            compile_runner(compile_command(cxx, tmp / RUNNER_NAME, tree, "$ORIGIN/lib"), tmp / RUNNER_NAME)
        except NativeUnavailable as exc:
            raise BundleError(exc.message.replace("native runner", f"{spec.name} runner"), "report this") from None
        for name in LIBS:
            shutil.copy2(tree / "lib" / f"lib{name}.so", tmp / "lib" / f"lib{name}.so")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        write_json(
            tmp / BUNDLE_MARKER,
            {
                "schema_version": 1,
                "arch": spec.name,
                "executorch": executorch_version(),
                "protocol": PROTOCOL_VERSION,
                "glibc_floor": glibc_floor(files),
                "compiler": compiler_id(cxx),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "files": {str(p.relative_to(tmp)): _sha256(p) for p in files},
            },
        )


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on this machine."""

    path: Path
    arch: str
    executorch: str
    protocol: int
    glibc_floor: str
    files: dict[str, str]  # file (relative to the bundle) → sha256

    @property
    def bundle_id(self) -> str:
        """Content hash of the bundle: where it is cached on a device."""
        return hashlib.sha256(repr(sorted(self.files.items())).encode()).hexdigest()[:16]


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read ``bundle.json`` and (``verify``) check every file's sha256.

    Raises:
        BundleError: not a bundle, a file missing or changed, or a bundle for another worker protocol.
    """
    p = Path(path)
    meta = read_json(p / BUNDLE_MARKER, "runner bundle file", BundleError, "build one with `edgekit runner build`")
    try:
        b = Bundle(
            p,
            str(meta["arch"]),
            str(meta["executorch"]),
            int(meta["protocol"]),
            str(meta["glibc_floor"]),
            dict(meta["files"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{p / BUNDLE_MARKER} is not a runner bundle description ({exc})", "rebuild it") from None
    if b.protocol != PROTOCOL_VERSION:
        raise BundleError(
            f"bundle {p} speaks worker protocol {b.protocol}, this edgekit {PROTOCOL_VERSION}",
            f"rebuild it: edgekit runner build --arch {b.arch}",
        )
    if verify:
        for rel, digest in b.files.items():
            f = p / rel
            if not f.is_file() or _sha256(f) != digest:
                raise BundleError(
                    f"bundle {p} is damaged: {rel} is missing or changed",
                    f"rebuild it: edgekit runner build --arch {b.arch}",
                )
    return b


CHECK_PROGRAM = Path(__file__).with_name("check.pte")  # Linear(16,16)-ReLU-Linear(16,4), fp32, XNNPACK


class BundleCheck(TypedDict):
    """:func:`check_bundle`: the bundle ran the built-in program and computed what eager PyTorch does."""

    bundle: str
    arch: str
    executorch: str
    glibc_floor: str
    emulated: bool
    exec_prefix: str | None
    outputs: list[float]
    max_abs_error: float
    p50_ms: float


def check_bundle(path: str | Path, exec_prefix: str | None = None, timeout: float = 120) -> BundleCheck:
    """Run a bundle on the built-in tiny program and compare its outputs with eager PyTorch's (shipped beside it).

    A bundle for another arch runs through qemu-user when ``exec_prefix`` is not given (the result says so).

    Raises:
        BundleError: damaged bundle, no way to run its arch here, or it ran and computed something else.
    """
    import json
    import shlex
    import tempfile

    import numpy as np

    b = read_bundle(path)
    spec = ARCHES[b.arch]
    if exec_prefix is None and b.arch != host_arch():
        exec_prefix = spec.qemu
        if not shutil.which(exec_prefix.split()[0]):
            raise BundleError(
                f"cannot run an {b.arch} bundle on this {host_arch()} machine without {exec_prefix.split()[0]}",
                "apt-get install -y qemu-user, or check the bundle on a device: edgekit profile --device",
            )
    expected = json.loads(CHECK_PROGRAM.with_suffix(".json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        np.arange(16, dtype=np.float32).tofile(t / "in.bin")
        cmd = [
            *shlex.split(exec_prefix or ""),
            str(b.path / RUNNER_NAME),
            "--model",
            str(CHECK_PROGRAM),
            "--inputs",
            str(t / "in.bin"),
            "--result",
            str(t / "r.json"),
            "--outputs",
            str(t / "out.bin"),
            "--runs",
            "20",
            "--warmup",
            "2",
            "--threads",
            "1",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            err = next((ln[7:] for ln in p.stderr.splitlines() if ln.startswith("@error ")), p.stderr.strip()[-200:])
            raise BundleError(
                f"bundle {b.path} failed to run ({err or f'exit code {p.returncode}'})",
                f"rebuild it: edgekit runner build --arch {b.arch}",
            )
        got = np.fromfile(t / "out.bin", np.float32)
        result = json.loads((t / "r.json").read_text())
    if got.shape != (4,) or not np.allclose(got, expected["expected"], rtol=1e-4, atol=1e-5):
        raise BundleError(
            f"bundle {b.path} computes wrong outputs {got.tolist()} (expected {expected['expected']})",
            "under qemu use -cpu cortex-a76 (its default -cpu max emulates SME kernels wrongly)",
        )
    samples = sorted(result["samples_ms"])
    return {
        "bundle": str(b.path),
        "arch": b.arch,
        "executorch": b.executorch,
        "glibc_floor": b.glibc_floor,
        "emulated": bool(exec_prefix),
        "exec_prefix": exec_prefix,
        "outputs": got.tolist(),
        "max_abs_error": float(np.abs(got - np.asarray(expected["expected"])).max()),
        "p50_ms": samples[len(samples) // 2],
    }
