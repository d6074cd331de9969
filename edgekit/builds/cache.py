"""The content-addressed build cache, on any fsspec filesystem: a folder, NFS, ``file://``, ``s3://``, ``gs://``,
``memory://``. Its layout, the one place it is written down::

    <root>/<key>/model.pte               one entry per build key (the content hash of model source, data, target and
    <root>/<key>/manifest.json           versions: edgekit.builds.keys)
    <root>/<key>/COMMITTED               written last: the program's sha256. No marker, no entry.
    <root>/.calibration/<record>/*.pt    calibration records (pipeline.calibration), append-only shards: one file per
                                         write, read as their union, so concurrent builds never lose each other's
    <root>/.measurements/<key>.json      ``edgekit tune``'s measurement of a build, per machine and settings
    <root>/.attempts/<key>/<run>.<worker>  which workers started a build in which run (a second one: a worker died)

Every write is whole or absent. On a local filesystem a file or an entry is written under a temp name
(``.NAME.PID.TOKEN.tmp``, what ``edgekit clean`` recognises) and renamed into place; object stores have no rename but
write each object whole, so a single file is put directly and an entry's data goes first with its marker last.
Readers check an entry's sha256 against its marker; a corrupt entry is removed and rebuilt, and said once. ``prune``
and ``usage`` cover every sub-folder.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .._contract import Json
from ..errors import EdgekitError, UsageError
from ..fileops import exclusive, remove_stale_temps, temp_name
from ..manifest import MANIFEST_NAME, PTE_NAME, read_manifest
from ..program import data_file_problem, sha256_file

if TYPE_CHECKING:
    from ..manifest import ProgramData
    from ..pipeline.calibration import ObserverStates

MARKER = "COMMITTED"
CALIBRATION_DIR = ".calibration"
MEASUREMENTS_DIR = ".measurements"
ATTEMPTS_DIR = ".attempts"
#: every sub-folder beside the entries, with what it holds (``edgekit cache du`` shows each)
SUBFOLDERS = {
    CALIBRATION_DIR: "calibration records",
    MEASUREMENTS_DIR: "tune measurements",
    ATTEMPTS_DIR: "build attempts",
}


class CacheError(EdgekitError):
    """The cache location cannot be used (unknown scheme, missing driver, not writable)."""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    size_bytes: int
    modified: _dt.datetime | None
    model: str | None
    target: str | None


@dataclass(frozen=True)
class Usage:
    """What one part of the cache holds: ``entries`` (builds) or a sub-folder."""

    part: str
    what: str
    files: int
    size_bytes: int


def _sha256(path: Path) -> str:
    return sha256_file(path) if path.is_file() else "missing"


def _data(folder: Path) -> ProgramData | None:
    """The manifest's ``program.data`` of the package in ``folder`` (None without one, or without a readable manifest:
    the program's own check decides then)."""
    try:
        return read_manifest(folder).program.data
    except EdgekitError:
        return None


class BuildCache:
    """A build cache at ``url`` (a plain path is a local folder)."""

    def __init__(self, url: str | Path):
        import fsspec

        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:
            scheme = self.url.split("://", 1)[0] if "://" in self.url else "file"
            raise CacheError(
                f"cache {self.url}: no fsspec driver for {scheme}:// ({exc})",
                f"install the driver for {scheme} (e.g. pip install s3fs / gcsfs), or use a folder",
            ) from None
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.warnings: list[str] = []

    # ------------------------------------------------------------------------------------------- checks
    def check_writable(self) -> None:
        """Probe the location once (a file written and removed).

        Raises:
            CacheError: the location cannot be written.
        """
        probe = self.path(temp_name("probe"))
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except (OSError, PermissionError) as exc:
            raise CacheError(
                f"cache {self.url} is not writable ({exc})", "choose a writable --cache location"
            ) from None
        if self.local:  # what killed builds left behind (their pid is gone)
            remove_stale_temps(self.root)

    # ------------------------------------------------------------------------------------------- files
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def write_file(self, rel: str, data: bytes) -> None:
        """Write ``rel`` (a path below the root) whole: a temp name and a rename here, one object put elsewhere."""
        final = self.path(rel)
        folder, name = final.rsplit("/", 1)
        self.fs.makedirs(folder, exist_ok=True)
        if not self.local:
            self.fs.pipe_file(final, data)
            return
        tmp = Path(folder) / temp_name(name)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def read_file(self, rel: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(rel))
        except (FileNotFoundError, OSError):
            return None

    def write_json(self, rel: str, data: object) -> None:
        self.write_file(rel, json.dumps(data, allow_nan=False).encode())

    def read_json(self, rel: str) -> Json:
        """The JSON at ``rel``, or None when it is missing or unreadable (then the caller measures again)."""
        raw = self.read_file(rel)
        try:
            return None if raw is None else json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None

    # ------------------------------------------------------------------------------------------ entries
    def get(self, key: str, mirror: Path) -> Path | None:
        """The package folder of ``key`` on this machine (a local cache's own folder, else a copy under ``mirror``),
        or None when there is no complete, intact entry (a corrupt one is removed, with a warning)."""
        raw = self.read_file(f"{key}/{MARKER}")
        if raw is None:
            return None
        marker = raw.decode(errors="replace").strip()
        folder = Path(self.path(key)) if self.local else mirror / key
        if not self.local:
            # two processes (or threads) reading one remote entry: one copies it, the other then finds the copy
            # intact and reads it too, instead of deleting the folder under the first one's feet
            with exclusive(mirror / f".{key}.lock"):
                if _sha256(folder / PTE_NAME) != marker:
                    self._copy_entry(key, folder, mirror)
        actual = _sha256(folder / PTE_NAME)
        problem = None if actual == marker else f"sha256 {actual[:12]}… ≠ {marker[:12]}…"
        data = _data(folder) if problem is None else None  # the program's external weights, when it has any
        if data is not None and data_file_problem(folder, data) is not None:
            problem = f"its {data.file} is not the manifest's"
        if problem is not None:
            self.warnings.append(f"cache entry {key} is corrupt ({problem}): rebuilt")
            self.remove(key)
            return None
        return folder

    def _copy_entry(self, key: str, folder: Path, mirror: Path) -> None:
        tmp = mirror / temp_name(key)
        tmp.mkdir(parents=True)
        self.fs.get_file(self.path(key, MANIFEST_NAME), str(tmp / MANIFEST_NAME))
        for name in _package_files(tmp):
            self.fs.get_file(self.path(key, name), str(tmp / name))
        shutil.rmtree(folder, ignore_errors=True)  # an older copy of an entry built again
        os.replace(tmp, folder)

    def put(self, key: str, package: Path) -> None:
        """Store a built package under ``key`` (atomically, see the module docstring)."""
        sha = _sha256(package / PTE_NAME)
        names = [MANIFEST_NAME, *_package_files(package)]
        if self.local:
            final = Path(self.path(key))
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / temp_name(key)
            tmp.mkdir()
            for name in names:
                shutil.copyfile(package / name, tmp / name)
            (tmp / MARKER).write_text(sha + "\n")
            if final.exists():  # another worker finished the same build first: its entry is as good as this one
                shutil.rmtree(tmp, ignore_errors=True)
                return
            try:
                os.replace(tmp, final)
            except OSError:  # it appeared in between
                shutil.rmtree(tmp, ignore_errors=True)
            return
        self.fs.makedirs(self.path(key), exist_ok=True)
        for name in names:
            self.fs.put_file(str(package / name), self.path(key, name))
        self.fs.pipe_file(self.path(key, MARKER), (sha + "\n").encode())  # last: the entry exists from here on

    def remove(self, key: str) -> None:
        try:
            self.fs.rm(self.path(key), recursive=True)
        except FileNotFoundError:
            pass

    def _names(self, folder: str) -> list[str]:
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def entries(self) -> list[CacheEntry]:
        """Complete entries, oldest first."""
        out = []
        for key in self._names(self.root):
            if key.startswith(".") or not self.fs.exists(self.path(key, MARKER)):
                continue
            info = self.fs.info(self.path(key, MARKER))
            size = sum(int(f.get("size") or 0) for f in self._files(key))
            m = self.read_json(f"{key}/{MANIFEST_NAME}")
            try:
                model, target = m["model"]["spec"], m["target"]["name"]
            except (TypeError, KeyError):
                model = target = None
            out.append(CacheEntry(key, size, _modified(info), model, target))
        return sorted(out, key=lambda e: e.modified or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc))

    def _files(self, sub: str) -> list[dict[str, object]]:  # fsspec's info of each file
        try:
            found = self.fs.find(self.path(sub), detail=True)
        except FileNotFoundError:
            return []
        return list(found.values()) if isinstance(found, dict) else []

    def usage(self) -> list[Usage]:
        """Files and bytes of the entries and of every sub-folder."""
        entries = self.entries()
        out = [Usage("entries", "builds", len(entries), sum(e.size_bytes for e in entries))]
        for sub, what in SUBFOLDERS.items():
            files = self._files(sub)
            out.append(Usage(sub, what, len(files), sum(int(f.get("size") or 0) for f in files)))
        return out

    def prune(self, older_than: _dt.timedelta) -> tuple[list[CacheEntry], int]:
        """Remove entries, and files of every sub-folder, last written more than ``older_than`` ago (and, on a local
        cache, what killed processes left half-written). Returns the entries removed and how many other files."""
        cutoff = _dt.datetime.now(_dt.timezone.utc) - older_than
        gone = [e for e in self.entries() if e.modified is not None and e.modified < cutoff]
        for e in gone:
            self.remove(e.key)
        files = 0
        for sub in SUBFOLDERS:
            for f in self._files(sub):
                when = _modified(f)
                if when is not None and when < cutoff:
                    try:
                        self.fs.rm_file(f["name"])
                        files += 1
                    except FileNotFoundError:
                        pass
        if self.local:
            for sub in ("", *SUBFOLDERS):
                for folder in [Path(self.root)] if not sub else [Path(self.path(sub)), *Path(self.path(sub)).glob("*")]:
                    files += len(remove_stale_temps(folder))
        return gone, files

    # ------------------------------------------------------------------------------------------ parts
    def calibration_records(self) -> "CalibrationRecords":
        return CalibrationRecords(self)

    def measurement(self, key: str) -> Json:  # None: not measured yet (or unreadable)
        return self.read_json(f"{MEASUREMENTS_DIR}/{key}.json")

    def put_measurement(self, key: str, data: Mapping[str, object]) -> None:
        self.write_json(f"{MEASUREMENTS_DIR}/{key}.json", data)

    def mark_attempt(self, key: str, run: str, worker: str) -> None:
        """Say that ``worker`` started building ``key`` in ``run`` (a second mark in one run: a worker died)."""
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in worker)
        self.write_file(f"{ATTEMPTS_DIR}/{key}/{run}.{safe}", b"")

    def attempts(self, key: str, run: str) -> int:
        """How many workers started ``key`` in ``run`` (at least 1); the run's marks are then removed."""
        folder = self.path(ATTEMPTS_DIR, key)
        mine = [n for n in self._names(folder) if n.startswith(run + ".")]
        for n in mine:
            try:
                self.fs.rm_file(f"{folder}/{n}")
            except FileNotFoundError:
                pass
        return max(1, len(mine))


class CalibrationRecords:
    """Calibration records (:mod:`edgekit.pipeline.calibration`) in the cache's ``.calibration/`` sub-folder.

    A record is a folder of shards: each ``put`` writes the states it adds as a file of its own and ``get`` reads their
    union. Two builds that calibrate at once never overwrite each other's states, and no lock is needed, on any
    filesystem. Shards hold tensors only and are read with ``weights_only=True``; an unreadable one is skipped."""

    def __init__(self, cache: BuildCache):
        self.cache = cache

    def get(self, key: str) -> ObserverStates | None:
        import torch

        merged: ObserverStates = {}
        folder = self.cache.path(CALIBRATION_DIR, key)
        for name in sorted(self.cache._names(folder)):
            if not name.endswith(".pt") or name.startswith("."):
                continue
            raw = self.cache.read_file(f"{CALIBRATION_DIR}/{key}/{name}")
            try:
                merged.update(torch.load(io.BytesIO(raw), weights_only=True))
            except Exception:  # unreadable (another writer's half file on a store without rename): skip it
                continue
        return merged or None

    def put(self, key: str, states: ObserverStates) -> None:
        """Add the states the record lacks (a recipe with layers in fp32 observes fewer nodes than the full one)."""
        import torch

        new = {k: v for k, v in states.items() if k not in (self.get(key) or {})}
        if not new:
            return
        buf = io.BytesIO()
        torch.save(new, buf)
        self.cache.write_file(f"{CALIBRATION_DIR}/{key}/{os.getpid()}-{secrets.token_hex(6)}.pt", buf.getvalue())


def _package_files(folder: Path) -> list[str]:
    """The files besides the manifest that the package's manifest names (:meth:`Manifest.files`: the program, its
    external weights, its reference vectors, a generation program's tokenizer files, ...); only plain names."""
    try:
        names = read_manifest(folder).files()[1:]
    except EdgekitError:
        return [PTE_NAME]
    return [n for n in names if "/" not in n and not n.startswith(".")] or [PTE_NAME]


def _modified(info: Mapping[str, object]) -> _dt.datetime | None:
    for k in ("mtime", "LastModified", "last_modified", "created"):
        v = info.get(k)
        if isinstance(v, (int, float)):
            return _dt.datetime.fromtimestamp(v, _dt.timezone.utc)
        if isinstance(v, _dt.datetime):
            return v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)
    return None


def parse_age(text: str) -> _dt.timedelta:
    """``30d``, ``12h``, ``90m`` → a timedelta.

    Raises:
        UsageError: anything else.
    """
    units = {"d": "days", "h": "hours", "m": "minutes"}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit():
        raise UsageError(f"--older-than {text!r} is not an age", "e.g. 30d, 12h or 90m")
    return _dt.timedelta(**{units[t[-1]]: int(t[:-1])})
