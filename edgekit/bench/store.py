"""Stored benchmark runs: one JSON file per run, with raw samples, machine facts and the commit.

Layout under the store root (default ``.edgekit/bench``)::

    <machine-id>/<UTC timestamp>_<commit>.json     every run, newest last by name
    baselines/<NAME>.json                          runs saved with --save-as NAME
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from ..errors import BenchError
from ..pipeline.package import write_json

RUN_SCHEMA_VERSION = 1
RUN_KIND = "edgekit-bench-run"
DEFAULT_ROOT = Path(".edgekit") / "bench"


def save_run(run: dict, root: Path = DEFAULT_ROOT, name: str | None = None) -> list[Path]:
    """Write the run under its machine id (and as baseline ``name``); returns the paths written."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = (run.get("commit") or {}).get("short") or "nocommit"
    dirty = "-dirty" if (run.get("commit") or {}).get("dirty") else ""
    paths = [Path(root) / run["machine"]["machine_id"] / f"{stamp}_{commit}{dirty}.json"]
    if name:
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise BenchError(f"baseline name {name!r} has characters that do not belong in a file name", "use letters, digits, - _ .")
        paths.append(Path(root) / "baselines" / f"{name}.json")
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json(p, {**run, "name": name})
    return paths


def load_run(path: str | Path) -> dict:
    """Read and check a run file.

    Raises:
        BenchError: missing, not JSON, or not an edgekit run (names the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"run file {p} does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BenchError(f"run file {p} is corrupt ({str(exc)[:120]})", "delete it and run the suite again") from None
    if not isinstance(data, dict) or data.get("kind") != RUN_KIND or not isinstance(data.get("results"), list):
        raise BenchError(f"run file {p} is not an edgekit benchmark run", "pass a file written by `edgekit bench run`")
    if data.get("schema_version") != RUN_SCHEMA_VERSION:
        raise BenchError(f"run file {p} has schema_version {data.get('schema_version')!r}; this edgekit reads {RUN_SCHEMA_VERSION}")
    for r in data["results"]:
        if not isinstance(r, dict) or not {"model", "target", "threads", "samples_ms"} <= set(r):
            raise BenchError(f"run file {p} is corrupt (a result lacks model/target/threads/samples_ms)", "run the suite again")
    data["_path"] = str(p)
    return data


def list_runs(root: Path = DEFAULT_ROOT, machine_id: str | None = None) -> list[Path]:
    """Run files, oldest first (names start with a UTC timestamp)."""
    root = Path(root)
    dirs = [root / machine_id] if machine_id else [d for d in root.iterdir() if d.is_dir() and d.name != "baselines"] if root.is_dir() else []
    files = [f for d in dirs if d.is_dir() for f in d.glob("*.json")]
    return sorted(files, key=lambda f: f.name)


def list_baselines(root: Path = DEFAULT_ROOT) -> list[str]:
    d = Path(root) / "baselines"
    return sorted(f.stem for f in d.glob("*.json")) if d.is_dir() else []


def resolve(ref: str | None, root: Path = DEFAULT_ROOT, machine_id: str | None = None, *, default: str = "latest") -> Path:
    """A run reference → a file: ``latest``, ``previous``, a baseline NAME, or a path.

    Raises:
        BenchError: nothing matches; the message lists the available baselines and runs.
    """
    ref = ref or default
    if ref in ("latest", "previous"):
        runs = list_runs(root, machine_id) or list_runs(root)
        need = 1 if ref == "latest" else 2
        if len(runs) < need:
            raise BenchError(f"no {'' if ref == 'latest' else 'previous '}run stored under {root}" +
                             (f" for machine {machine_id}" if machine_id else ""),
                             "run `edgekit bench run SUITE` first" + (" twice" if need == 2 else ""))
        return runs[-need]
    p = Path(ref)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise BenchError(f"run file {p} does not exist", _available(root))
        return p
    named = Path(root) / "baselines" / f"{ref}.json"
    if named.is_file():
        return named
    raise BenchError(f"no baseline named {ref!r}", _available(root))


def _available(root: Path) -> str:
    names = list_baselines(root)
    runs = list_runs(root)
    return ("available baselines: " + (", ".join(names) if names else "none") + f"; {len(runs)} stored run(s), "
            "refer to them as latest / previous or by path; save one with `edgekit bench run SUITE --save-as NAME`")
