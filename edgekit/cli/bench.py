"""``edgekit bench``: run suites, store runs, compare them against baselines, write reports.

The commands parse and show; the library decides: a failed item raises from ``BenchRun.raise_for_errors``, a
regression from ``Comparison.raise_for_regressions`` (exit 1), after the results were shown and stored.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import paths
from .._options import Finite

_STORE_OPTION = click.option(
    "--store",
    type=click.Path(),
    default=str(paths.BENCH_STORE),
    show_default=True,
    help="Where runs and baselines are stored.",
)


@click.group()
def bench() -> None:
    """Run benchmark suites, store results, compare against baselines, write reports."""


@bench.command("run")
@click.argument("suite_file", metavar="SUITE")
@click.option("--save-as", metavar="NAME", help="Also save the run as the named baseline NAME.")
@_STORE_OPTION
@click.option(
    "--cache",
    default=str(paths.BUILD_CACHE),
    show_default=True,
    envvar="EDGEKIT_BUILD_CACHE",
    metavar="PATH|URL",
    help="Content-addressed build cache: a folder or an fsspec URL (file://, s3://, gs://, memory://).",
)
@click.option(
    "--executor",
    metavar="local[:N]|inline|dask://HOST:PORT|tls://HOST:PORT",
    envvar="EDGEKIT_EXECUTOR",
    help="Where builds run (default: a local process pool sized by cores and free memory; inline: in this process).",
)
@click.option("--no-save", is_flag=True, help="Do not store the run (print it only).")
@click.option(
    "--device", "device_names", metavar="NAME[,NAME...]", help="Profile on these devices (each build made once here)."
)
@click.option("--devices-tag", metavar="TAG", help="Profile on every device with this tag.")
@click.option(
    "--devices", "devices_file", type=click.Path(dir_okay=False), envvar="EDGEKIT_DEVICES", help="Devices file."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run(s) as JSON.")
def bench_run(
    suite_file: str,
    save_as: str | None,
    store: str,
    cache: str,
    executor: str | None,
    no_save: bool,
    device_names: str | None,
    devices_tag: str | None,
    devices_file: str | None,
    as_json: bool,
) -> None:
    """Build and profile every model × target × threads of SUITE and store one run file (one per device)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..bench.run import run_suite, run_suite_on_devices
    from ..bench.store import save_run
    from ..bench.suite import load_suite
    from . import render

    suite = load_suite(suite_file)
    devices = _devices(device_names, devices_tag, devices_file)
    con = render.console()
    n = len(suite.items()) * max(1, len(devices))
    con.print(
        f"[bold]edgekit bench run[/] {suite.name}: {n} item(s)" + (f" on {len(devices)} device(s)" if devices else "")
    )
    failures: list[str] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=con
    ) as bar:
        task = bar.add_task("starting", total=n)

        def progress(label: str, i: int, _: int) -> None:
            bar.update(task, description=label, completed=max(0, i - (0 if devices else 1)))

        if devices:
            runs, failures = run_suite_on_devices(suite, devices, cache=cache, executor=executor, progress=progress)
        else:
            runs = [run_suite(suite, cache=cache, executor=executor, progress=progress)]
        bar.update(task, description="done", completed=n)
    paths = [] if no_save else [p for run in runs for p in save_run(run, Path(store), save_as)]
    if as_json:
        click.echo(_json(runs[0].to_dict() if not devices else [r.to_dict() for r in runs]))
    else:
        for run in runs:
            render.bench_run(run)
    for note in dict.fromkeys(n for run in runs for n in run.notes):
        con.print(f"[dim]{note}[/]")
    for p in paths:
        con.print(f"saved {p}")
    for line in failures:
        con.print(f"[red]device failed:[/] {line}")
    for run in runs:
        run.raise_for_errors()
    if failures:
        from ..errors import BenchError

        raise BenchError(
            f"{len(failures)} device(s) produced no run; the others were measured and saved", failures[0][:200]
        )


def _devices(names: str | None, tag: str | None, devices_file: str | None) -> list:
    from ..errors import UsageError

    if names and tag:
        raise UsageError("give --device or --devices-tag, not both")
    if tag:
        from ..device.devices import devices_with_tag

        return devices_with_tag(tag, devices_file)
    if not names:
        return []
    from ..device.devices import resolve_device

    return [resolve_device(n.strip(), devices_file) for n in names.split(",") if n.strip()]


@bench.command("compare")
@click.option(
    "--baseline",
    "-b",
    default="previous",
    show_default=True,
    metavar="NAME|FILE|latest|previous",
    help="The reference run.",
)
@click.option(
    "--run", "-r", "run_ref", default="latest", show_default=True, metavar="FILE|latest", help="The run to judge."
)
@click.option(
    "--fail-on",
    multiple=True,
    metavar="METRIC:PCT",
    help="Gate on these metrics with these thresholds (default: every metric at its default).",
)
@click.option("--allow-machine-mismatch", is_flag=True, help="Compare runs from different machines anyway.")
@click.option(
    "--alpha",
    type=Finite(0, 1, min_open=True),
    default=0.002,
    show_default=True,
    help="Significance level of the Mann-Whitney U test.",
)
@_STORE_OPTION
@click.option("--all", "show_all", is_flag=True, help="Show every metric of every item (default: p50 + changes).")
@click.option("--device", metavar="NAME", help="Compare the runs of this device (from bench run --device).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def bench_compare(
    baseline: str,
    run_ref: str,
    fail_on: tuple,
    allow_machine_mismatch: bool,
    alpha: float,
    store: str,
    show_all: bool,
    device: str | None,
    as_json: bool,
) -> None:
    """Compare a run with a baseline; exit 1 on a significant regression beyond its threshold.

    \b
    Metrics: latency_p50 (10%), latency_p90 (15%), peak_rss (10%), size (2%), accuracy (1 point), sqnr (3 dB).
    Example:  edgekit bench compare --baseline main --fail-on latency_p50:10% --fail-on size:5%
    """
    from ..bench.compare import compare_runs, parse_fail_on
    from ..bench.store import load_pair
    from . import render

    thresholds = parse_fail_on(fail_on)
    base, run = load_pair(baseline, run_ref, Path(store), device)
    cmp = compare_runs(
        base, run, fail_on=thresholds or None, allow_machine_mismatch=allow_machine_mismatch, alpha=alpha
    )
    if as_json:
        click.echo(_json(cmp.to_dict()))
    else:
        render.comparison(cmp, show_all)
    cmp.raise_for_regressions()


@bench.command("report")
@click.argument("runs", nargs=-1, metavar="[RUN...]")
@click.option("--out", "-o", type=click.Path(), default="report", show_default=True, help="Report folder (replaced).")
@click.option("--baseline", "-b", metavar="NAME|FILE|previous", help="Add a comparison with this baseline.")
@click.option("--allow-machine-mismatch", is_flag=True, help="Put runs from different machines in one report anyway.")
@click.option("--device", metavar="NAME", help="Report the runs of this device (from bench run --device).")
@click.option(
    "--all-devices", is_flag=True, help="One section per device: the newest run of every device in the store."
)
@_STORE_OPTION
def bench_report(
    runs: tuple,
    out: str,
    baseline: str | None,
    allow_machine_mismatch: bool,
    device: str | None,
    all_devices: bool,
    store: str,
) -> None:
    """Write Markdown + self-contained HTML with plots for RUNs (default: the latest run)."""
    from ..bench.compare import compare_runs
    from ..bench.report import write_report
    from ..bench.store import latest_per_device, load_run, resolve

    if all_devices:
        loaded = latest_per_device(Path(store))
    else:
        loaded = [load_run(resolve(r, Path(store), device=device)) for r in (runs or ("latest",))]
    cmp = None
    if baseline:
        base = load_run(resolve(baseline, Path(store), loaded[-1].machine.machine_id, device=device))
        cmp = compare_runs(base, loaded[-1], allow_machine_mismatch=allow_machine_mismatch)
    paths = write_report(loaded, Path(out), cmp)
    click.echo(f"wrote {paths['html']} and {paths['markdown']}")


@bench.command("list")
@_STORE_OPTION
def bench_list(store: str) -> None:
    """List stored runs and named baselines."""
    from ..bench.store import list_baselines, list_runs

    for p in list_runs(Path(store)):
        click.echo(str(p))
    for name in list_baselines(Path(store)):
        click.echo(f"baseline {name}")


def _json(data: object) -> str:
    import json

    return json.dumps(data, indent=2, allow_nan=False)


@click.group()
def cache() -> None:
    """The shared, content-addressed build cache (a folder or an fsspec URL)."""


_CACHE_OPTION = click.option(
    "--cache",
    "url",
    default=str(paths.BUILD_CACHE),
    show_default=True,
    envvar="EDGEKIT_BUILD_CACHE",
    metavar="PATH|URL",
    help="The cache: a folder or an fsspec URL.",
)


@cache.command("ls")
@_CACHE_OPTION
def cache_ls(url: str) -> None:
    """List complete entries, oldest first."""
    from ..builds import BuildCache
    from . import render

    entries = BuildCache(url).entries()
    if not entries:
        click.echo(f"no entries in {url}", err=True)
        return
    t = render.table(
        None, ["key", "model", "target", "size KiB", "modified"], left=("key", "model", "target", "modified")
    )
    for e in entries:
        t.add_row(
            e.key,
            e.model or "?",
            e.target or "?",
            f"{e.size_bytes / 1024:.1f}",
            e.modified.isoformat(timespec="seconds") if e.modified else "?",
        )
    render.console(stderr=False).print(t)


@cache.command("du")
@_CACHE_OPTION
def cache_du(url: str) -> None:
    """Entries and every sub-folder (calibration records, tune measurements, build attempts), with their sizes."""
    from ..builds import BuildCache
    from . import render

    usage = BuildCache(url).usage()
    t = render.table(f"{url}", ["part", "holds", "files", "MiB"], left=("part", "holds"))
    for u in usage:
        t.add_row(u.part, u.what, str(u.files), f"{u.size_bytes / 2**20:.1f}")
    t.add_row(
        "total", "", str(sum(u.files for u in usage)), f"{sum(u.size_bytes for u in usage) / 2**20:.1f}", style="bold"
    )
    render.console(stderr=False).print(t)


@cache.command("prune")
@_CACHE_OPTION
@click.option("--older-than", default="30d", show_default=True, metavar="AGE", help="e.g. 30d, 12h, 90m.")
def cache_prune(url: str, older_than: str) -> None:
    """Remove entries, and files of every sub-folder, older than AGE (and what killed builds left half-written)."""
    from ..builds import BuildCache, parse_age

    gone, files = BuildCache(url).prune(parse_age(older_than))
    click.echo(
        f"removed {len(gone)} entr{'y' if len(gone) == 1 else 'ies'} and {files} other file(s) older than {older_than}"
    )
