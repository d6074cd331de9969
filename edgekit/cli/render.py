"""What people read: tables and progress lines for the CLI (rich). Machines get ``--json`` instead.

Results go to stdout, progress and warnings to stderr, so ``--json`` output stays clean. Nothing here decides an
outcome: the library raises for budgets and regressions, the CLI only shows.
"""

from __future__ import annotations

from typing import Any

#: Wide enough that tables are not squeezed when output is piped or captured.
PIPE_WIDTH = 160
#: The narrowest a prose column (a reason, a description) gets when a table is squeezed.
PROSE_MIN_WIDTH = 24


def console(stderr: bool = True) -> Any:
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not con.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        con = Console(stderr=stderr, highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    return con


def table(
    title: str | None, columns: list[str], left: tuple[str, ...] = (), wrap: tuple[str, ...] = (), **kwargs: Any
) -> Any:
    """A rich table; ``left`` columns are left-aligned, the rest numbers; only the ``wrap`` columns wrap (prose), so a
    narrow terminal squeezes the prose, never a figure or its header."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", **kwargs)
    for col in columns:
        t.add_column(
            col,
            justify="left" if col in left else "right",
            no_wrap=col not in wrap,
            min_width=PROSE_MIN_WIDTH if col in wrap and col.strip() else None,
        )
    return t


def warn(messages: Any) -> None:
    con = console()
    for w in dict.fromkeys(messages):
        con.print(f"[yellow]warning:[/] {w}")


def fmt(v: Any, unit: str = "", digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}g}{unit}"


def fmt_db(v: Any) -> str:
    return "exact" if v is None else f"{v:.1f} dB"


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


# ------------------------------------------------------------------------------------------------ build
def _prune_rows(p: Any) -> list[tuple[str, str]]:
    rows = [("pruning", p.summary)]
    if p.structured_ratio or p.layers:
        rows.append(
            (
                "params / MACs",
                f"{p.params_before:,} → {p.params_after:,} ({p.params_ratio:.0%}) / "
                f"{p.macs_before:,} → {p.macs_after:,} ({p.macs_ratio:.0%})",
            )
        )
    pruned = [r for r in p.layers if r["out_after"] != r["out_before"]]
    if pruned:
        shown = ", ".join(f"{r['layer']} {r['out_before']}→{r['out_after']}" for r in pruned[:6])
        rows.append(
            ("channels kept", shown + (f" (+{len(pruned) - 6} more in the manifest)" if len(pruned) > 6 else ""))
        )
    if p.finetune:
        f = p.finetune
        rows.append(
            (
                "fine-tune",
                f"{f.epochs} epoch(s) on {f.samples} samples, loss {f.epoch_losses[0]} → {f.epoch_losses[-1]}",
            )
        )
    return rows


def _fidelity(v: Any) -> str:
    """The verify figures that mean something for what the output is (VerifySection.task)."""
    if v.task == "embed":
        nn = f", nearest-neighbour agreement {v.nn_agreement:.1%}" if v.nn_agreement is not None else ""
        return f"cosine mean {v.cosine_similarity:.5f}, min {v.cosine_min:.5f}{nn}, SQNR {fmt_db(v.sqnr_db)}"
    if v.task == "regress":
        return f"SQNR {fmt_db(v.sqnr_db)}, max |err| {v.max_abs_error:.3g}"
    top1 = f", top-1 agreement {v.top1_agreement:.1%}" if v.top1_agreement is not None else ""
    return f"SQNR {fmt_db(v.sqnr_db)}, cosine {v.cosine_similarity:.5f}, max |err| {v.max_abs_error:.3g}{top1}"


def build_summary(result: Any) -> None:
    """The build's manifest, one line per thing a user checks."""
    m = result.manifest
    v, d, prog = m.verify, m.program.delegation, m.program
    t = table(f"edgekit build → {result.out_dir}", ["", " "], left=("", " "), wrap=(" ",), show_header=False)
    t.columns[0].style = "bold"
    t.add_row("model", m.model.spec)
    emb = (
        f", embeddings={m.quantize.embeddings} ({len(m.quantize.embedding_tables)} table(s))"
        if m.quantize.embedding_tables
        else ""
    )
    t.add_row("target", f"{m.target['name']} ({m.target['backend']}, quantize={m.quantize.scheme}{emb})")
    if m.quantize.applied and m.quantize.calibration_samples is None:  # fp16: a cast, nothing calibrated
        t.add_row("precision", m.quantize.quantizer or m.quantize.scheme)
    elif m.quantize.applied:
        reused = (
            ", observers loaded from an earlier build's calibration record" if m.quantize.calibration_reused else ""
        )
        t.add_row("calibration", f"{m.quantize.calibration} ({m.quantize.calibration_samples} samples{reused})")
    if m.prune.applied:
        for row in _prune_rows(m.prune):
            t.add_row(*row)
        sc = prog.size_comparison
        if sc:
            t.add_row(
                "sparsity",
                f"{m.prune.sparsity_achieved:.1%} zeros; deflated program "
                f"{sc.without_sparsity['deflate_bytes'] / 1024:.1f} → {sc.with_sparsity['deflate_bytes'] / 1024:.1f} KiB "
                "(not faster: dense kernels)",
            )
    t.add_row(
        "program",
        f"{prog.size_bytes / 1024:.1f} KiB ({prog.compressed_size_bytes / 1024:.1f} KiB deflated), "
        f"sha256 {prog.sha256[:12]}…",
    )
    t.add_row("planned memory", f"{prog.planned_memory.planned_bytes / 1024:.1f} KiB")
    t.add_row(
        "delegation",
        f"{d.delegated_partitions} partition(s), {d.delegated_nodes} nodes delegated, "
        f"{d.portable_nodes} on portable kernels",
    )
    for op in d.portable_ops:
        why = "; ".join(d.portable_reasons.get(op, [])) or "no reason recorded"
        t.add_row("", f"[dim]portable: {op} ×{d.by_operator[op]['portable']} — {why}[/]")
    for r in m.model.dynamic_dims:
        t.add_row("dynamic", f"{','.join(r.inputs)} dimension {r.dim}: {r.min}..{r.program_max or r.max}")
    against = "your model" if v.reference in ("original", "the eager model") else v.reference  # older packages said so
    t.add_row("verify", f"vs {against}, {v.samples} samples from {v.data}: " + _fidelity(v))
    if v.lowering is not None:
        low = v.lowering
        top1 = f", top-1 agreement {low.top1_agreement:.1%}" if low.top1_agreement is not None else ""
        t.add_row(
            "",
            f"[dim]vs the pruned model (what was exported; says whether lowering worked): SQNR "
            f"{fmt_db(low.sqnr_db)}, cosine min {low.cosine_min:.5f}{top1}[/]",
        )
    for c in v.at_sizes:
        sizes = ", ".join(f"{k} = {n}" for k, n in c.sizes.items())
        t.add_row("", f"at {sizes}: {c.samples} samples, SQNR {fmt_db(c.sqnr_db)}, cosine min {c.cosine_min:.5f}")
    if v.task:
        t.add_row("output kind", f"{v.task} ({v.task_reason})")
    if v.accuracy_note:
        t.add_row("accuracy", v.accuracy_note)
    if v.accuracy:
        a = v.accuracy
        pruned = f" → pruned eager {a.pruned_eager:.2%}" if a.pruned_eager is not None else ""
        t.add_row(
            "accuracy", f"your model {a.eager:.2%}{pruned} → program {a.program:.2%} (drop {a.drop * 100:+.2f} pts)"
        )
    t.add_row("time", f"{m.timings_s['total']:.1f} s")
    console(stderr=False).print(t)
    warn(m.warnings)


def generation_summary(result: Any) -> None:
    """A generation build: what the program holds and how close it stays to your model (the figures for this task)."""
    m = result.manifest
    g, prog = m.generation, m.program
    t = table(f"edgekit build → {result.out_dir}", ["", " "], left=("", " "), wrap=(" ",), show_header=False)
    t.columns[0].style = "bold"
    src = f" ({g.source['file']}, {g.source['file_type']})" if g.source else ""
    t.add_row("model", f"{m.model.spec}{src}: {g.architecture}, vocabulary {g.vocab_size}")
    t.add_row("target", f"{m.target['name']}: linears {g.linears}, embedding table {g.embeddings}")
    t.add_row(
        "program",
        f"{prog.size_bytes / 2**20:.1f} MiB"
        + (f" + {prog.data.file} {prog.data.size_bytes / 2**20:.1f} MiB (the tied table, once)" if prog.data else "")
        + f", KV cache {g.max_context_len} tokens ({g.cache}); sha256 {prog.sha256[:12]}…",
    )
    t.add_row(
        "perplexity",
        f"your model {g.perplexity_eager:.3f} → program {g.perplexity_program:.3f} ({g.ppl_increase_pct:+.2f}%) over "
        f"{g.eval_tokens} tokens of {g.eval_data}",
    )
    t.add_row("next token", f"the program's top token is your model's at {g.next_token_agreement:.1%} of positions")
    gr = g.greedy
    t.add_row(
        "greedy",
        f"{gr.matching}/{gr.new_tokens} tokens as your model's ({gr.prefix} before the first difference) after a "
        f"{gr.prompt_tokens}-token prompt",
    )
    t.add_row("", f"[dim]program: {gr.program_text!r}[/]")
    for c in m.budget.checks:
        t.add_row("budget", f"{c.name} {c.value} (limit {c.limit}) {'ok' if c.ok else 'EXCEEDED'}")
    t.add_row("time", ", ".join(f"{k} {v:.1f} s" for k, v in m.timings_s.items()))
    console(stderr=False).print(t)
    warn(m.warnings)


def generation_report(results: list) -> None:
    """``edgekit profile`` of a generation package: one row per thread count."""
    r0 = results[0]
    con = console(stderr=False)
    con.print(
        f"[bold]edgekit profile[/] {r0.package}  [dim]{r0.model}, target {r0.target}; prompt {r0.prompt_len} tokens, "
        f"{r0.gen_len} generated, {r0.runs} round(s); {r0.engine_note or r0.engine}[/]"
    )
    if r0.device:
        facts = r0.device.get("facts", {})
        con.print(
            f"[bold]device[/] {r0.device['name']} ({r0.device.get('host', '?')}): {facts.get('arch', '?')}, "
            f"{facts.get('cores_logical', '?')} core(s), {facts.get('cpu_model', '?')}"
        )
    c = r0.check
    if c.status == "passed":
        if c.kld is not None:
            con.print(f"[green]✓[/] answers checked: {c.note}")
        else:
            con.print(f"[green]✓[/] answers checked: {c.matching}/{c.tokens} top tokens as when built ({c.note})")
    else:
        con.print(f"[yellow]answers not checked[/] ({c.note})")
    t = table(
        "generation",
        ["threads", "load ms", "TTFT ms (p50)", "prefill tok/s", "decode tok/s", "token ms p50", "p90", "peak RSS MiB",
         "Δ MiB", "CPU s/token", "J/token"],
    )  # fmt: skip
    for r in results:
        t.add_row(
            str(r.threads),
            f"{r.load_ms:.1f}",
            f"{r.ttft_ms.p50:.2f}",
            f"[bold]{r.prefill_tokens_per_s:.1f}[/]",
            f"[bold]{r.decode_tokens_per_s:.1f}[/]",
            f"{r.decode_ms.p50:.3f}",
            f"{r.decode_ms.p90:.3f}",
            f"{r.peak_rss_mb:.1f}",
            f"{r.peak_delta_mb:.1f}",
            f"{r.cpu_s_per_token:.5f}",
            "–" if r.joules_per_token is None else f"{r.joules_per_token:.4f}",
        )
    con.print(t)
    con.print(
        f"[dim]TTFT: the prefill call of {r0.prompt_len} tokens; decode tok/s: 1000 / the median step; peak RSS of the "
        f"worker, Δ above its {r0.baseline_rss_mb:.0f} MiB baseline ("
        + ("the runner and its libraries" if r0.engine == "native" else "Python, torch and the ExecuTorch runtime")
        + "). "
        f"J/token: {r0.joules_note}.[/]"
    )
    warn([n for r in results for n in r.notes])


def generate_stats(stats: dict) -> None:
    """The figures after ``edgekit generate``'s text (on stderr: stdout holds the text only)."""
    dec = stats.get("decode_tokens_per_s")
    pre = stats.get("prefill_tokens_per_s")
    console().print(
        f"[dim]{stats['prompt_tokens']} prompt tokens, {stats['generated_tokens']} generated (stopped: {stats['stop']}); "
        f"time to first token {stats['ttft_ms']:.1f} ms"
        + (f", prefill {pre:.1f} tok/s" if pre else "")
        + (f", decode {dec:.1f} tok/s" if dec else "")
        + f"; peak RSS {stats['peak_rss_kb'] / 1024:.0f} MiB[/]"
    )


# ---------------------------------------------------------------------------------------------- profile
def _latency_table(results: list) -> Any:
    t = table(
        "latency (ms): timed runs",
        ["threads", "runs", "p50", "p50 95% CI", "p90", "p99", "mean ± std", "min", "max", "outliers"],
    )
    for r in results:
        s = r.latency_ms
        t.add_row(
            f"{r.threads['effective']}",
            str(s.count),
            f"[bold]{fmt(s.p50)}[/]",
            f"{s.ci95_median[0]:.4g}–{s.ci95_median[1]:.4g}",
            fmt(s.p90),
            fmt(s.p99),
            f"{fmt(s.mean)} ± {fmt(s.std, digits=2)}",
            fmt(s.min),
            fmt(s.max),
            str(s.outliers),
        )
    return t


def _memory_table(results: list) -> Any:
    t = table(
        "memory (MiB, resident set of the worker)",
        ["threads", "baseline", "after load", "peak", "load Δ", "peak Δ", "USS peak", "planned", ".pte"],
    )
    for r in results:
        m = r.memory
        t.add_row(
            f"{r.threads['effective']}",
            fmt(m.baseline_rss_mb),
            fmt(m.load_rss_mb),
            fmt(m.peak_rss_mb),
            fmt(m.load_delta_mb),
            fmt(m.peak_delta_mb),
            fmt(m.uss_mb),
            fmt(m.planned_mb),
            fmt(m.pte_size_mb),
        )
    return t


def _energy_table(results: list) -> Any:
    t = table(
        "energy proxies (timed runs)", ["threads", "CPU s/run", "CPU util.", "ctx sw. vol/invol", "J/run", "source"]
    )
    for r in results:
        e = r.energy
        t.add_row(
            f"{r.threads['effective']}",
            fmt(e.cpu_seconds_per_run),
            f"{e.cpu_utilization:.2f}",
            f"{e.voluntary_ctx_switches}/{e.involuntary_ctx_switches}",
            fmt(e.joules_per_run),
            e.joules_source,
        )
    return t


def _ops_table(r: Any) -> Any:
    t = table(
        f"top operators by time ({r.threads['effective']} thread(s), {r.ops['runs']} traced runs)",
        ["operator", "kind", "calls/run", "mean ms", "share"],
        left=("operator", "kind"),
    )
    for op in r.ops["ops"][:15]:
        t.add_row(op["name"], op["kind"], f"{op['calls_per_run']:g}", f"{op['mean_ms']:.4f}", f"{op['share']:.1%}")
    return t


def profile_report(results: list) -> None:
    """Latency, memory, energy (and operators) for people: one row per thread setting."""
    con = console(stderr=False)
    first = results[0]
    subj = first.subject
    title = subj.get("package") or subj.get("pte") or f"eager {subj.get('eager')}"
    where = f"on device {first.device['name']} " if first.device else ""
    con.print(
        f"[bold]edgekit profile[/] {title}  [dim]{where}engine {first.engine}, inputs {subj.get('input_source')}, "
        f"{first.machine['cpu_model']}[/]"
    )
    check = first.check
    if check is not None and check.status == "passed":
        worst = min((c.sqnr_db for c in check.outputs if c.sqnr_db is not None), default=None)
        con.print(
            f"[green]✓[/] answers checked: {check.note}"
            + (f" (worst output {worst:.1f} dB SQNR)" if worst is not None else " (identical)")
        )
    elif check is not None and check.status in ("absent", "skipped"):
        con.print(f"[yellow]answers not checked:[/] {check.note}")
    con.print(_latency_table(results))
    for r in results:
        p = r.phases
        con.print(
            f"[dim]{r.threads['effective']} thread(s): load {fmt(p.load_ms)} ms · first run {fmt(p.first_run_ms)} ms · "
            f"warm-up {p.warmup_runs} runs, mean {fmt(p.warmup_mean_ms)} ms[/]"
        )
    con.print(f"[dim]percentiles: {first.latency_ms.percentile_method}; CI: {first.latency_ms.ci_method}[/]")
    con.print(_memory_table(results))
    con.print(f"[dim]baseline: {first.memory.baseline_note}[/]")
    con.print(_energy_table(results))
    e = first.energy
    con.print(f"[dim]{e.joules_note}" + (f"; inputs {e.estimate_inputs}" if e.estimate_inputs else "") + "[/]")
    for r in results:
        n = r.noise
        if n:
            con.print(
                f"[dim]{r.threads['effective']} thread(s): noise floor (a fixed reference workload, timed before and "
                f"after) {n.reference_before_ms:.3f} → {n.reference_after_ms:.3f} ms (drift {n.drift_pct:+.1f}%): the "
                "machine's own movement during the profile[/]"
            )
    if first.device:
        _device_lines(con, results)
    if e.cpu_freq_mhz:
        top = e.cpu_freq_mhz.get("max")
        con.print(f"[dim]CPU frequency: {e.cpu_freq_mhz['current']} MHz now" + (f" (max {top})" if top else "") + "[/]")
    for r in results:
        if r.ops:
            con.print(_ops_table(r))
            con.print(f"[dim]{r.ops['note']}[/]")
        for c in r.budget.get("checks", []):
            con.print(
                f"budget {c['name']}: {c['value']} (limit {c['limit']}) "
                + ("[green]ok[/]" if c["ok"] else "[red]EXCEEDED[/]")
            )
    warn(w for r in results for w in r.warnings)


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


def _device_lines(con: Any, results: list) -> None:
    for r in results:
        d = r.device
        b, a = d["before"], d["after"]
        temps = ", ".join(
            f"{k} {v:g}→{a.get('thermal_c', {}).get(k, float('nan')):g} °C"
            for k, v in list(b.get("thermal_c", {}).items())[:3]
        )
        freqs = ", ".join(
            f"{k} {v:g}→{a.get('cpu_freq_mhz', {}).get(k, float('nan')):g} MHz"
            for k, v in list(b.get("cpu_freq_mhz", {}).items())[:2]
        )
        sent = d["bytes_sent"]
        con.print(
            f"[dim]device {d['name']} ({d['facts']['arch']}, glibc {d['facts']['glibc']}): "
            f"{temps or 'no thermal zones readable'}; {freqs or 'no CPU frequency readable'}; sent "
            f"{sent['bundle'] / 1024:.0f} KiB of bundle + {sent['program_and_inputs'] / 1024:.0f} KiB of program and inputs[/]"
        )


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
