"""The content-addressed build cache, on any fsspec filesystem: a folder, NFS, ``file://``, ``s3://``, ``gs://``,
``memory://``.

One entry per build key (the content hash of model source, data, target and versions)::

    <root>/<key>/model.pte
    <root>/<key>/manifest.json
    <root>/<key>/COMMITTED        written last: the program's sha256. No marker, no entry.

On a local filesystem an entry is written into a temp folder and renamed into place; elsewhere (object stores have
no rename) the data goes first and the marker last, so a reader never takes half a package. Readers check the
program's sha256 against the marker and the manifest; a corrupt entry is removed and rebuilt, and said once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fs import temp_name
from ..errors import EdgekitError
from ..manifest import MANIFEST_NAME, PTE_NAME

MARKER = "COMMITTED"


class CacheError(EdgekitError):
    """The cache location cannot be used (unknown scheme, missing driver, not writable)."""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    size_bytes: int
    modified: _dt.datetime | None
    model: str | None
    target: str | None


class BuildCache:
    """A build cache at ``url`` (a plain path is a local folder)."""

    def __init__(self, url: str | Path):
        import fsspec

        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:
            scheme = self.url.split("://", 1)[0] if "://" in self.url else "file"
            raise CacheError(f"cache {self.url}: no fsspec driver for {scheme}:// ({exc})",
                             f"install the driver for {scheme} (e.g. pip install s3fs / gcsfs), or use a folder") from None
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.warnings: list[str] = []

    # ------------------------------------------------------------------------------------------- checks
    def check_writable(self) -> None:
        """Probe the location once (a marker written and removed).

        Raises:
            CacheError: the location cannot be written.
        """
        probe = f"{self.root}/.probe-{os.getpid()}"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except (OSError, PermissionError) as exc:
            raise CacheError(f"cache {self.url} is not writable ({exc})", "choose a writable --cache location") from None

    # ------------------------------------------------------------------------------------------ entries
    def _path(self, key: str, name: str = "") -> str:
        return f"{self.root}/{key}" + (f"/{name}" if name else "")

    def get(self, key: str, mirror: Path) -> Path | None:
        """The package folder of ``key`` on this machine (a local cache's own folder, else a copy under ``mirror``),
        or None when there is no complete, intact entry (a corrupt one is removed, with a warning)."""
        try:
            marker = self.fs.cat_file(self._path(key, MARKER)).decode().strip()
        except (FileNotFoundError, OSError):
            return None
        folder = Path(self._path(key)) if self.local else mirror / key
        if not self.local:
            tmp = mirror / temp_name(key)
            tmp.mkdir(parents=True)
            for name in (PTE_NAME, MANIFEST_NAME):
                self.fs.get_file(self._path(key, name), str(tmp / name))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        pte = folder / PTE_NAME
        actual = hashlib.sha256(pte.read_bytes()).hexdigest() if pte.is_file() else "missing"
        if actual != marker:
            self.warnings.append(f"cache entry {key} is corrupt (sha256 {actual[:12]}… ≠ {marker[:12]}…): rebuilt")
            self.remove(key)
            return None
        return folder

    def put(self, key: str, package: Path) -> None:
        """Store a built package under ``key`` (atomically, see the module docstring)."""
        sha = hashlib.sha256((package / PTE_NAME).read_bytes()).hexdigest()
        if self.local:
            final = Path(self._path(key))
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / temp_name(key)
            tmp.mkdir()
            for name in (PTE_NAME, MANIFEST_NAME):
                shutil.copyfile(package / name, tmp / name)
            (tmp / MARKER).write_text(sha + "\n")
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            return
        self.fs.makedirs(self._path(key), exist_ok=True)
        for name in (PTE_NAME, MANIFEST_NAME):
            self.fs.put_file(str(package / name), self._path(key, name))
        self.fs.pipe_file(self._path(key, MARKER), (sha + "\n").encode())  # last: the entry exists from here on

    def remove(self, key: str) -> None:
        try:
            self.fs.rm(self._path(key), recursive=True)
        except FileNotFoundError:
            pass

    def entries(self) -> list[CacheEntry]:
        """Complete entries, oldest first."""
        import json

        out = []
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        except FileNotFoundError:
            return []
        for key in names:
            if key.startswith(".") or not self.fs.exists(self._path(key, MARKER)):
                continue
            info = self.fs.info(self._path(key, MARKER))
            size = sum(self.fs.size(self._path(key, n)) or 0 for n in (PTE_NAME, MANIFEST_NAME))
            try:
                m: Any = json.loads(self.fs.cat_file(self._path(key, MANIFEST_NAME)))
                model, target = m["model"]["spec"], m["target"]["name"]
            except (ValueError, KeyError, OSError):
                model = target = None
            out.append(CacheEntry(key, size, _modified(info), model, target))
        return sorted(out, key=lambda e: e.modified or _dt.datetime.min.replace(tzinfo=_dt.timezone.utc))

    def prune(self, older_than: _dt.timedelta) -> list[CacheEntry]:
        cutoff = _dt.datetime.now(_dt.timezone.utc) - older_than
        gone = [e for e in self.entries() if e.modified is not None and e.modified < cutoff]
        for e in gone:
            self.remove(e.key)
        return gone


def _modified(info: dict) -> _dt.datetime | None:
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
    from ..errors import UsageError

    units = {"d": "days", "h": "hours", "m": "minutes"}
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in units or not t[:-1].isdigit():
        raise UsageError(f"--older-than {text!r} is not an age", "e.g. 30d, 12h or 90m")
    return _dt.timedelta(**{units[t[-1]]: int(t[:-1])})
