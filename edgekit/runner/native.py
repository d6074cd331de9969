"""Compile and cache the native runner against the C++ runtime that the executorch wheel ships.

The wheel carries headers (``executorch/include``), shared libraries (``executorch/lib``) and a CMake config
(``share/cmake``) whose comments document the flags used here: C++17, ``C10_USING_CUSTOM_GENERATED_MACROS``,
``ET_EVENT_TRACER_ENABLED`` (the libraries are built with it) and ``ET_USE_THREADPOOL``; each
registration-only library linked with ``--no-as-needed`` so its kernels and delegate register. The
CMake route needs CMake 3.28 for its imported targets, so the compiler is called directly.

The binary is cached per executorch version and hash of (source, flags, compiler), and rebuilt when any
changes. ``EDGEKIT_CACHE`` overrides the cache root (default ``~/.cache/edgekit``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..backends import runtime_libraries
from ..errors import ProfileError
from ..fileops import exclusive
from .protocol import Engine

SOURCE = Path(__file__).with_name("runner.cpp")
#: a generation program's mode, in the same binary
GENERATION_SOURCE = Path(__file__).with_name("runner_generation.cpp")
#: compiled into the same binary: ExecuTorch's llama:: cache and attention kernels, for generation programs
LLM_OPS = Path(__file__).with_name("llm_ops.cpp")
SOURCES = (SOURCE, GENERATION_SOURCE, LLM_OPS)
#: what both modes share (included by the sources, so part of every compiled runner's key)
HEADERS = (Path(__file__).with_name("runner.h"),)
#: the runtime, its kernels, threadpool and ETDump, then every backend family's own libraries (edgekit.backends)
LIBS = (
    "executorch",
    "executorch_kernels_optimized",
    "executorch_kernels_quantized",
    *runtime_libraries(),
    "executorch_threadpool",
    "executorch_etdump",
)
DEFINES = ("C10_USING_CUSTOM_GENERATED_MACROS", "ET_EVENT_TRACER_ENABLED", "ET_USE_THREADPOOL")


class NativeUnavailable(ProfileError):
    """The native engine cannot be used here (no compiler, or the wheel lacks its C++ runtime)."""


def executorch_dir() -> Path:
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise NativeUnavailable("executorch is not installed", "pip install executorch==1.5.1")
    return Path(list(spec.submodule_search_locations)[0])


def executorch_version() -> str:
    from importlib.metadata import version

    return version("executorch")


def find_compiler() -> str | None:
    """``$CXX``, else g++, else clang++ (None when there is none)."""
    cxx = os.environ.get("CXX")
    if cxx and shutil.which(cxx):
        return shutil.which(cxx)
    return shutil.which("g++") or shutil.which("clang++")


def compile_command(cxx: str, out: Path, et: Path | None = None, rpath: str | None = None) -> list[str]:
    """The compiler call for the runner against the executorch tree ``et`` (default: this wheel's), with the
    libraries found at ``rpath`` at run time (default: that tree's lib/; a bundle uses ``$ORIGIN/lib``)."""
    et = et or executorch_dir()
    lib = (et / "lib").resolve()
    cmd = [cxx, "-std=c++17", "-O2", "-DNDEBUG"]
    cmd += [f"-D{d}" for d in DEFINES]
    cmd += [f"-I{et / 'include'}", f"-I{et / 'include/executorch/runtime/core/portable_type/c10'}"]
    cmd += [*map(str, SOURCES), "-o", str(out), f"-L{lib}", "-Wl,--no-as-needed"]
    cmd += [f"-l{name}" for name in LIBS]
    cmd += ["-Wl,--as-needed", f"-Wl,-rpath,{rpath or lib}", "-lpthread"]
    return cmd


def sources_digest(command: list[str]) -> Any:
    """A sha256 over the runner's sources (their bytes, not their paths) and ``command`` with each source path
    replaced by its name: the start of every cache key of a compiled runner, here or in a bundle."""
    digest = hashlib.sha256()
    for source in (*SOURCES, *HEADERS):
        digest.update(source.read_bytes())
    names = {str(s): s.name for s in SOURCES}
    digest.update(" ".join(names.get(c, c) for c in command).encode())
    return digest


def compile_runner(cmd: list[str], out: Path) -> None:
    """Run ``cmd`` (from :func:`compile_command`) to write ``out`` atomically.

    Raises:
        NativeUnavailable: compilation failed (its first error line).
    """
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    proc = subprocess.run(
        [*cmd[: cmd.index("-o") + 1], str(tmp), *cmd[cmd.index("-o") + 2 :]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise NativeUnavailable(f"compiling the native runner failed: {first}", "use --engine python, or report this")
    os.replace(tmp, out)


def cache_root() -> Path:
    from ..paths import user_cache

    return user_cache()


def compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return cxx


def runner_key(cxx: str) -> Any:
    """The sha256 a compiled runner is cached under: its sources, its compiler call against this executorch tree
    (another tree changes -I and -rpath, and the key), and the compiler ``cxx``."""
    digest = sources_digest(compile_command("CXX", Path("OUT")))
    digest.update(compiler_id(cxx).encode())
    return digest


def runner_path(rebuild: bool = False) -> Path:
    """Path of the compiled runner, compiling it first when needed.

    Raises:
        NativeUnavailable: no compiler, missing runtime files, or compilation failed (with its first error).
    """
    cxx = find_compiler()
    if cxx is None:
        raise NativeUnavailable(
            "no C++ compiler found for the native engine", "install g++ (or set CXX); using --engine python meanwhile"
        )
    et = executorch_dir()
    missing = [f"lib{n}.so" for n in LIBS if not (et / "lib" / f"lib{n}.so").exists()]
    if not (et / "include").is_dir() or missing:
        raise NativeUnavailable(
            f"this executorch wheel lacks its C++ runtime ({', '.join(missing) or 'include/'})",
            "install the executorch wheel from PyPI, or use --engine python",
        )
    # an install elsewhere against the same executorch tree (a wheel installed into a venv that uses this one's
    # packages) shares the runner
    folder = cache_root() / "native-runner" / f"executorch-{executorch_version()}-{runner_key(cxx).hexdigest()[:16]}"
    binary = folder / "edgekit-runner"
    if binary.exists() and not rebuild:
        return binary
    with exclusive(folder / ".lock"):  # two profilers starting at once compile once
        if binary.exists() and not rebuild:
            return binary
        compile_runner(compile_command(cxx, binary), binary)
    return binary


def pick_engine(requested: Engine) -> tuple[Engine, Path | None, NativeUnavailable | None]:
    """The engine a profile runs in, for every kind of program: ``python`` as asked; ``native`` with its compiled runner
    (NativeUnavailable when it cannot be had); ``auto`` the native runner wherever a compiler is, else ``python`` with
    the reason native was not used (the caller says it, or refuses what needs native)."""
    if requested is Engine.PYTHON:
        return Engine.PYTHON, None, None
    try:
        return Engine.NATIVE, runner_path(), None
    except NativeUnavailable as exc:
        if requested is Engine.NATIVE:
            raise
        return Engine.PYTHON, None, exc
