"""What people read: tables and progress lines for the CLI (rich). Machines get ``--json`` instead. A build's summary
is in render_build, a profile's tables in render_profile, the terminal itself in console; all are shown from here.

Results go to stdout, progress and warnings to stderr, so ``--json`` output stays clean. Nothing here decides an
outcome: the library raises for budgets and regressions, the CLI only shows.
"""

from __future__ import annotations

from typing import Any

from .console import console, fmt, fmt_db, table, warn  # noqa: F401  (console and table: also the CLI's own)
from .render_build import build_summary, generation_summary  # noqa: F401
from .render_profile import generate_stats, generation_report, profile_report  # noqa: F401


class StageProgress:
    """Build progress on stderr: a spinner per running stage, then a line with its time."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.console = console()
        self._status = None

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        name = event.stage.value
        if event.state.value == "start":
            self._status = self.console.status(f"[bold]{name}[/] {event.detail}".rstrip())
            self._status.start()
            return
        self.close()
        if event.state.value == "done":
            self.console.print(f"  [green]✓[/] {name:<9} {event.seconds:7.2f} s  [dim]{event.detail}[/]")
        else:
            self.console.print(f"  [dim]–[/] {name:<9}    skip    [dim]{event.detail}[/]")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class PhaseProgress:
    """Profile progress on stderr: the worker's phase, and runs done during the timed phase."""

    def __init__(self, quiet: bool, label: str):
        self.quiet = quiet
        self.label = label
        self.status = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        text = f"[bold]{self.label}[/] {phase}" + (f" {done}/{total}" if total else "")
        if self.status is None:
            self.status = console().status(text)
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


class TuneProgress:
    """Tune progress on stderr: a bar over builds and measurements with elapsed time and an ETA (the total grows as
    the search decides what to try next)."""

    def __init__(self, quiet: bool):
        self.quiet, self.bar, self.task = quiet, None, None

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]tune[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console(),
            )
            self.bar.start()
            self.task = self.bar.add_task(what, total=max(total, 1))
        self.bar.update(self.task, description=what, completed=done, total=max(total, done, 1))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def tune_table(candidates: list, result: Any) -> None:
    """Every candidate with its figures and fate; then the decision and where the package is."""
    from ..tune.report import table as tune_rows

    head, rows = tune_rows(candidates)
    t = table("edgekit tune: candidates", head, left=("candidate", "status", "why"), wrap=("why",))
    styles = {"chosen": "bold green", "over": "red", "failed": "red", "skipped": "dim"}
    for c, row in zip(candidates, rows):
        t.add_row(*row, style=styles.get(c.status.value))
    console(stderr=False).print(t)
    if result is not None:
        console(stderr=False).print(
            f"[bold]chosen:[/] {result.manifest.tune.decision}\n"
            f"[bold]fidelity:[/] {result.manifest.tune.fidelity}\n"
            f"package: {result.out_dir} (Pareto plot: {result.out_dir / 'tune.html'})"
        )
        for note in result.notes:
            console(stderr=False).print(f"[dim]{note}[/]")


# ------------------------------------------------------------------------------------------ bench, demo
def bench_run(run: Any) -> None:
    from ..bench.report import SUMMARY_HEAD, generation_lines, summary_rows

    where = f" on device {run.device} ({run.machine.cpu_model})" if run.device else ""
    t = table(f"{run.suite['name']}{where}: {run.wall_seconds} s", SUMMARY_HEAD, left=("model", "target"))
    for row in summary_rows(run):
        t.add_row(*row)
    console(stderr=False).print(t)
    for line in generation_lines(run):
        console(stderr=False).print(line.removeprefix("- "), markup=False, highlight=False)
    con = console()
    for e in run.errors:
        con.print(f"[red]failed:[/] {e.model} × {e.target} × {e.threads}: {e.error}")


def comparison(cmp: Any, show_all: bool = False) -> None:
    from ..bench.report import COMPARE_HEAD, compare_rows

    con = console(stderr=False)
    if cmp.machine_mismatch:
        con.print(
            "[bold red]MACHINES DIFFER[/] — "
            + "; ".join(f"{k}: {a} vs {b}" for k, (a, b) in cmp.machine_mismatch.items())
        )
    t = table(f"{cmp.baseline} → {cmp.run}", COMPARE_HEAD, left=("model", "target", "metric", "verdict"))
    colors = {"regressed": "red", "improved": "green", "noisy": "yellow", "unchanged": "dim"}
    rows = compare_rows(cmp)
    shown = [r for r in rows if show_all or r[3] == "latency_p50" or not r[-1].startswith("unchanged")]
    if len(shown) < len(rows):
        t.caption = f"{len(rows) - len(shown)} unchanged rows of other metrics hidden (--all shows them)"
    for row in shown:
        t.add_row(*row[:-1], f"[{colors.get(row[-1].split()[0], '')}]{row[-1]}[/]")
    con.print(t)
    warn(cmp.warnings)
    verdict = "[bold red]REGRESSED[/]" if cmp.regressions else "[bold green]no regression[/]"
    con.print(f"{verdict} [dim](gated: {', '.join(f'{k} {v:g}' for k, v in cmp.gated.items())})[/]")


def demo(result: dict) -> None:
    t = table(
        "edgekit demo: digits CNN (scikit-learn load_digits, 360 held-out images)",
        ["variant", "accuracy", "size", "p50 latency", "SQNR vs your model"],
        left=("variant",),
    )
    for row in result["rows"]:
        t.add_row(
            row["variant"],
            f"{row['accuracy']:.2%}",
            f"{row['size_kib']:.1f} KiB",
            f"{row['p50_ms']:.4f} ms" if row.get("p50_ms") is not None else "–",
            "–" if row.get("sqnr_db", "–") == "–" else fmt_db(row["sqnr_db"]),
        )
    con = console(stderr=False)
    con.print(t)
    con.print(f"[dim]{result['timing_note']}[/]")


def targets(items: list) -> None:
    t = table(
        None,
        ["name", "backend", "quantization", "pruning", "description"],
        left=("name", "backend", "quantization", "pruning", "description"),
        wrap=("description",),
    )
    for tg in items:
        prune = (
            "none"
            if not tg.prune.active
            else f"channels {tg.prune.structured_ratio:.0%}, sparsity {tg.prune.sparsity:.0%}"
        )
        t.add_row(tg.name, tg.backend.value, tg.quantize.scheme.value, prune, tg.description)
    console(stderr=False).print(t)


# ---------------------------------------------------------------------------------------------- explain
def explanation(ex: Any, ordered: list) -> None:
    """``edgekit explain``: the module table, the slowest and least faithful modules, and the memory plan."""
    from ..explain import db_cell, fidelity_line

    con = console(stderr=False)
    con.print(
        f"[bold]edgekit explain[/] {ex.package}  [dim]{ex.model}, target {ex.target}: p50 {ex.method_p50_ms:.4f} ms "
        f"over {ex.runs} traced runs ({ex.untraced_p50_ms:.4f} ms untraced), {ex.threads} thread(s)[/]"
    )
    for note in ex.notes:
        con.print(f"[yellow]note:[/] {note}")
    t = table(
        None,
        ["#", "module", "source", "p50 ms", "share", "where", "precision", "SQNR dB", "own dB", "only it dB"],
        left=("module", "source", "where", "precision"),
        wrap=("source", "where"),
    )
    for r in ordered:
        sqnr = r.sqnr_note or ("–" if r.sqnr_db is None else f"{r.sqnr_db:.1f}")
        name = r.module + (f" ({r.cls})" if r.cls else "")
        t.add_row(
            str(r.order),
            name,
            r.source or "",
            f"{r.p50_ms:.4f}",
            f"{r.share:.1%}",
            r.where,
            r.precision,
            sqnr,
            db_cell(r.local_sqnr_db),
            db_cell(r.impact_sqnr_db),
        )
    con.print(t)
    con.print(
        f"[dim]{ex.unattributed_ms:.4f} ms per run has no module: delegate call overhead and operators no "
        f"recorded node matches. Fidelity: {ex.fidelity}. SQNR dB: at the module's output as the quantized model "
        "runs (every earlier error included); own dB: its own error, fed exact inputs; only it dB: the model's output "
        "if only this module were quantized.[/]"
    )
    slow = ex.slowest(3)
    if slow:
        con.print(
            "[bold]slowest:[/] "
            + "; ".join(
                f"{r.module} ({r.cls or '?'}) {r.share:.1%}" + (f" at {r.source.split()[0]}" if r.source else "")
                for r in slow
            )
        )
    worst = ex.least_faithful(3)
    if worst:
        con.print("[bold]least faithful:[/] " + "; ".join(fidelity_line(r) for r in worst))
    m = ex.memory
    if m is not None:
        rss = "–" if m.measured_peak_rss_mb is None else f"{m.measured_peak_rss_mb:.1f} MiB"
        con.print(
            f"[bold]memory plan:[/] arenas {m.arenas_bytes} B, {m.planned_bytes:,} B planned; largest live set "
            f"{m.peak_live_bytes:,} B at instruction {m.peak_step} of {m.steps} ({', '.join(m.peak_modules[:6])}"
            f"{' …' if len(m.peak_modules) > 6 else ''}); measured peak RSS {rss}. [dim]{m.note}.[/]"
        )
