"""What a profile shows: latency, memory, energy and operator tables, a generation program's tokens per second, a
device's facts, and ``edgekit generate``'s figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .console import console, fmt, table, warn

if TYPE_CHECKING:
    from ..profile.generation import GenerationProfile


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
    if r0.fidelity is not None:
        con.print(f"[bold]fidelity[/] (when built, llama-perplexity's protocol): {r0.fidelity.summary()}")
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
    for r in results:
        if r.ops is not None:
            con.print(_step_table(r))
    if r0.ops is not None:
        con.print(f"[dim]{r0.ops.note}[/]")
    warn([n for r in results for n in r.notes])


def _step_table(r: GenerationProfile, shown: float = 0.005) -> Any:
    """A generation profile's ``--ops``: its traced decode step by kind of work, beside its prefill call (kinds that
    only the prefill has come last); kinds under half a percent of both are folded into one row."""
    o = r.ops
    assert o is not None
    decode = {s.kind: s for s in o.decode}
    prefill = {s.kind: s for s in o.prefill}
    t = table(
        f"where a decode step goes ({r.threads} thread(s); traced: decode step {o.decode_ms:.2f} ms, median of "
        f"{o.decode_steps}, untraced {r.decode_ms.p50:.2f} ms; prefill of {o.prefill_tokens} tokens {o.prefill_ms:.1f} "
        f"ms traced inside the program, TTFT untraced {r.ttft_ms.p50:.1f} ms with inputs and argmax)",
        ["kind of work", "decode ms", "share", "calls/step", "prefill ms", "share"],
        left=("kind of work",),
    )
    folded = [0.0, 0.0, 0.0, 0.0, 0]  # decode ms, share, prefill ms, share, kinds
    for kind in [*decode, *(k for k in prefill if k not in decode)]:
        d, p = decode.get(kind), prefill.get(kind)
        if (d is None or d.share < shown) and (p is None or p.share < shown):
            for i, x in enumerate((d and d.ms, d and d.share, p and p.ms, p and p.share)):
                folded[i] += x or 0.0
            folded[4] += 1
            continue
        derived = (d or p).derived
        t.add_row(
            kind + (" [dim](derived)[/]" if derived else ""),
            "–" if d is None else f"{d.ms:.3f}",
            "–" if d is None else f"[bold]{d.share:.1%}[/]",
            "–" if d is None or derived else str(d.calls),
            "–" if p is None else f"{p.ms:.2f}",
            "–" if p is None else f"{p.share:.1%}",
        )
    if folded[4]:
        t.add_row(
            f"{folded[4]} other kinds",
            f"{folded[0]:.3f}",
            f"{folded[1]:.1%}",
            "",
            f"{folded[2]:.2f}",
            f"{folded[3]:.1%}",
        )
    return t


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
