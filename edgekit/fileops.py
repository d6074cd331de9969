"""Files that are whole or absent: atomic JSON writes, staged output folders, and cleaning up after dead builds.

Every temporary file or folder edgekit makes beside its destination is named ``.<name>.<pid>.<token>.tmp``, so a
later run (or ``edgekit clean``) can tell the leftovers of a killed process (its pid is gone) from the work of a
live one, and remove only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .errors import ContractError, EdgekitError, OutputExistsError

if TYPE_CHECKING:
    from ._contract import Json

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")
PACKAGE_MARKER = "manifest.json"
#: the name suffix of an output moved aside while its replacement is renamed in (where the system cannot swap two
#: folders atomically): a backup whose output is missing is put back, never removed
PREVIOUS = "~previous"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


def is_plain_name(value: str) -> bool:
    """Whether ``value`` can be part of a file name as it is: letters, digits and ``. _ - @``, starting with a letter or a
    digit, no ``..``. Names from config files and run documents (devices, baselines, machine ids) are data: one that
    is not plain is refused, never turned into a path."""
    return isinstance(value, str) and bool(_PLAIN_NAME.fullmatch(value)) and ".." not in value


def temp_name(name: str) -> str:
    """A sibling name for a temporary copy of ``name`` that records this process's pid."""
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_temps(folder: str | Path) -> list[Path]:
    """Temporary files and folders in ``folder`` left by edgekit processes that no longer run."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for entry in folder.iterdir():
        m = _TEMP_RE.match(entry.name)
        if m and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            out.append(entry)
    return sorted(out)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove :func:`stale_temps` of ``folder``; returns what was removed. A killed replacement's backup of an output
    (``.OUT~previous.PID.TOKEN.tmp``) whose output is missing is renamed back to OUT instead: the kill came between
    moving the old package aside and renaming the new one in, and the old one is the last complete package."""
    removed = []
    for entry in stale_temps(folder):
        name = _TEMP_RE.match(entry.name)["name"]
        if name.endswith(PREVIOUS):
            target = entry.with_name(name.removesuffix(PREVIOUS))
            if not target.exists() and not target.is_symlink():
                try:
                    os.rename(entry, target)
                except OSError:  # another process restored it first
                    pass
                continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
        except OSError:  # another cleaner got there first, or no permission: leave it
            continue
    return removed


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False, with nothing changed,
    where the system or the filesystem cannot.

    Raises:
        OSError: the swap was possible but failed (a missing path, permissions).
    """
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not Linux, or a libc without it
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def write_json(path: str | Path, data: object) -> None:
    """Write JSON via a temp file and rename, so readers never see half a file; never writes NaN.

    Raises:
        ContractError: ``data`` holds a non-finite number (strict JSON parsers reject NaN).
        EdgekitError: the file cannot be written.
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise ContractError(f"refusing to write {path}: it would hold NaN or infinity", "please report it") from None
    tmp = path.with_name(temp_name(path.name))
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgekitError(
            f"cannot write {path}: {exc.strerror or exc}", "check the path and its permissions"
        ) from None


def read_json(path: str | Path, what: str, error: type[EdgekitError] = EdgekitError, hint: str | None = None) -> Json:
    """Parse a JSON file, or raise ``error`` naming ``what`` it should have been."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist", hint) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what} {p} is corrupt or unreadable ({str(exc)[:120]})", hint) from None


def check_output(out: str | Path, force: bool, *, marker: str | tuple[str, ...] = PACKAGE_MARKER) -> None:
    """Fail before any work when ``out`` cannot become an edgekit output folder (one that holds ``marker``, or one
    of several).

    ``out`` may be absent, an empty folder, or (with ``force``) an earlier output of the same kind (it holds
    ``marker``). A regular file, or a folder that holds something else, is never replaced, even with ``force``. The parent must be a writable folder:
    this is probed by creating it and a temp entry in it.

    Raises:
        OutputExistsError: ``out`` exists and may not be replaced.
        EdgekitError: the parent is a file or cannot be written.
    """
    out = Path(out)
    if out.absolute().parent.is_dir():  # a killed replacement may have moved OUT aside: put it back first
        remove_stale_temps(out.absolute().parent)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputExistsError(
            f"{out} exists and is not a folder; edgekit never replaces it, even with --force",
            "choose another output path",
        )
    if out.is_dir() and any(out.iterdir()):
        markers = (marker,) if isinstance(marker, str) else tuple(marker)
        if not any((out / m).is_file() for m in markers):
            what = "an edgekit package" if marker == PACKAGE_MARKER else f"an edgekit output (no {markers[0]})"
            raise OutputExistsError(
                f"{out} is a folder that is not {what}; edgekit never replaces it, even with --force",
                "choose another output path, or empty that folder",
            )
        if not force:
            raise OutputExistsError(
                f"output folder {out} already exists", "pass --force to replace it, or choose another -o"
            )
    parent = out.absolute().parent
    for p in [parent, *parent.parents]:
        if p.exists() and not p.is_dir():
            raise EdgekitError(f"cannot write {out}: {p} is a file, not a folder", "choose another output path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / temp_name(out.name)
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise EdgekitError(
            f"cannot write {out}: {exc.strerror or exc} in {parent}", "choose a writable output location"
        ) from None


@contextlib.contextmanager
def exclusive(lock: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created, with its folder, when missing) for the block: two
    processes filling one cache entry at once, one fills it, the other waits and then finds it filled."""
    import fcntl

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def staged_output(out: str | Path, force: bool, *, marker: str | tuple[str, ...] = PACKAGE_MARKER) -> Iterator[Path]:
    """Yield a temp folder next to ``out``; on success swap it into place, on failure remove it.

    A failed build never leaves a half-written package, and a replaced package is swapped, not mixed: the old and the
    new folder trade places in one atomic step (:func:`exchange`), so a process killed at any moment leaves OUT as
    either the old or the new complete package. Where the filesystem cannot swap, the old package is moved aside
    under a recognisable name first, and a kill between the two renames is undone by the next start (or
    ``edgekit clean``), which puts the old package back. The leftovers of killed processes are handled first.
    """
    out = Path(out)
    check_output(out, force, marker=marker)
    tmp = out.parent / temp_name(out.name)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not out.exists():
        os.replace(tmp, out)
    elif exchange(tmp, out):  # tmp now holds the old package
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        old = out.parent / temp_name(out.name + PREVIOUS)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
