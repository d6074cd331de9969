"""Stage 6: write ``model.pte`` and ``manifest.json`` to a temp folder and move it into place atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import OutputExistsError

PTE_NAME = "model.pte"
MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1


def check_output(out: Path, force: bool) -> None:
    """Fail early (before any work) when ``out`` exists and ``force`` is not set."""
    if out.exists() and not force:
        raise OutputExistsError(f"output folder {out} already exists", "pass --force to replace it, or choose another -o")


@contextlib.contextmanager
def staged_output(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temp folder next to ``out``; on success rename it to ``out``, on failure remove it.

    A failed build never leaves a half-written package, and a replaced package is swapped, not mixed.
    """
    out = Path(out)
    check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def write_json(path: Path, data: dict) -> None:
    """Write JSON via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
