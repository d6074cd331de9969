"""Stored benchmark runs: one JSON file per run, with raw samples, machine facts and the commit.

Layout under the store root (default ``.edgekit/bench``)::

    <machine-id>/<UTC timestamp>_<commit>_<run id>.json   every run, newest last by name (the run id keeps two
                                                          runs in one second apart)
    baselines/<NAME>.json                          runs saved with --save-as NAME (<NAME>@<device>.json for a device)
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .. import paths
from ..errors import BenchError
from ..fileops import is_plain_name, read_json, write_json
from .document import BenchRun, run_from_dict

DEFAULT_ROOT = paths.BENCH_STORE


def save_run(run: BenchRun, root: Path = DEFAULT_ROOT, name: str | None = None) -> list[Path]:
    """Write the run under its machine id (and as baseline ``name``); returns the paths written."""
    for what, value in (("machine id", run.machine.machine_id), ("device name", run.device)):
        if value is not None and not is_plain_name(value):  # both become part of a path below the store
            raise BenchError(f"the run's {what} {value!r} is not a plain name", "use letters, digits and . _ - @")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = (run.commit or {}).get("short") or "nocommit"
    dirty = "-dirty" if (run.commit or {}).get("dirty") else ""
    paths = [Path(root) / run.machine.machine_id / f"{stamp}_{commit}{dirty}_{run.run_id[:8]}.json"]
    if name:
        if not is_plain_name(name) or "@" in name:
            raise BenchError(
                f"baseline name {name!r} has characters that do not belong in a file name", "use letters, digits, - _ ."
            )
        paths.append(Path(root) / "baselines" / (f"{name}@{run.device}.json" if run.device else f"{name}.json"))
    data = run.replace(name=name).to_dict()
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json(p, data)
    return paths


def load_run(path: str | Path) -> BenchRun:
    """Read and validate a run file.

    Raises:
        BenchError: missing, not JSON, not an edgekit run, or a missing/mistyped field (names the file and field).
    """
    p = Path(path)
    data = read_json(p, "run file", BenchError, "delete it and run the suite again")
    return run_from_dict(data, str(p))


def list_runs(root: Path = DEFAULT_ROOT, machine_id: str | None = None, device: str | None = None) -> list[Path]:
    """Run files, oldest first (names start with a UTC timestamp); with ``device``, only that device's runs."""
    root = Path(root)
    dirs = (
        [root / machine_id]
        if machine_id
        else [d for d in root.iterdir() if d.is_dir() and d.name != "baselines"]
        if root.is_dir()
        else []
    )
    files = [f for d in dirs if d.is_dir() for f in d.glob("*.json") if not f.name.startswith(".")]
    if device is not None:
        files = [f for f in files if _device_of(f) == device]
    # By the UTC second in the name, then by when the file was written (two runs within one second).
    return sorted(files, key=lambda f: (f.name.split("_")[0], f.stat().st_mtime_ns))


def _device_of(path: Path) -> str | None:
    try:
        return read_json(path, "run file", BenchError).get("device")
    except (BenchError, AttributeError):
        return None


def list_baselines(root: Path = DEFAULT_ROOT) -> list[str]:
    d = Path(root) / "baselines"
    return sorted(f.stem for f in d.glob("*.json")) if d.is_dir() else []


def resolve(
    ref: str | None,
    root: Path = DEFAULT_ROOT,
    machine_id: str | None = None,
    *,
    default: str = "latest",
    device: str | None = None,
) -> Path:
    """A run reference → a file: ``latest``, ``previous``, a baseline NAME, or a path.

    Raises:
        BenchError: nothing matches; the message lists the available baselines and runs.
    """
    ref = ref or default
    if ref in ("latest", "previous"):
        runs = list_runs(root, device=device) if device else (list_runs(root, machine_id) or list_runs(root))
        need = 1 if ref == "latest" else 2
        if len(runs) < need:
            raise BenchError(
                f"no {'' if ref == 'latest' else 'previous '}run stored under {root}"
                + (f" for device {device}" if device else f" for machine {machine_id}" if machine_id else ""),
                "run `edgekit bench run SUITE` first" + (" twice" if need == 2 else ""),
            )
        return runs[-need]
    p = Path(ref)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise BenchError(f"run file {p} does not exist", _available(root))
        return p
    for named in ([Path(root) / "baselines" / f"{ref}@{device}.json"] if device else []) + [
        Path(root) / "baselines" / f"{ref}.json"
    ]:
        if named.is_file():
            return named
    raise BenchError(f"no baseline named {ref!r}", _available(root))


def _available(root: Path) -> str:
    names = list_baselines(root)
    runs = list_runs(root)
    return (
        "available baselines: " + (", ".join(names) if names else "none") + f"; {len(runs)} stored run(s), "
        "refer to them as latest / previous or by path; save one with `edgekit bench run SUITE --save-as NAME`"
    )


def load_pair(
    baseline: str, run_ref: str, root: Path = DEFAULT_ROOT, device: str | None = None
) -> tuple[BenchRun, BenchRun]:
    """The baseline and the run to judge, by reference; the baseline is looked up for the run's machine.

    Raises:
        BenchError: a reference matches nothing (the available ones are listed).
        UsageError: both references name the same run.
    """
    from ..errors import UsageError

    run = load_run(resolve(run_ref, root, default="latest", device=device))
    base = load_run(resolve(baseline, root, run.machine.machine_id, default="previous", device=device))
    if Path(base.path).resolve() == Path(run.path).resolve() or base.run_id == run.run_id:
        raise UsageError(
            f"the baseline ({base.path}) and the run ({run.path}) are the same run",
            "run the suite again, or pass --baseline NAME / --run FILE",
        )
    return base, run


def latest_per_device(root: Path = DEFAULT_ROOT) -> list[BenchRun]:
    """The newest run of every device in the store (runs made here count as one device, ``None``)."""
    newest: dict[str | None, Path] = {}
    for path in list_runs(root):
        newest[_device_of(path)] = path
    if not newest:
        raise BenchError(f"no run stored under {root}", "run `edgekit bench run SUITE --device NAME` first")
    return [load_run(p) for p in newest.values()]
