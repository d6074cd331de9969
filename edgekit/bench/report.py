"""Benchmark reports: Markdown and a self-contained HTML page (plots embedded), written atomically.

Plots (matplotlib, Agg): latency distributions per model × target × threads (box plots of the raw samples,
one panel per model), and size vs p50 latency across targets (accuracy in the labels). With a comparison,
its table too.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..errors import BenchError
from ..fileops import staged_output
from ..htmlreport import CSS, fig_png, html_table
from .compare import Comparison
from .document import BenchRun, BuildFigures


def latency_plot(runs: list[BenchRun]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r.model for run in runs for r in run.results})
    fig, axes = plt.subplots(len(models), 1, figsize=(9, 2.6 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        data, labels = [], []
        for run in runs:
            tag = (f"{run.device}: " if run.device else "") + (run.name or Path(run.path or "run").stem[:22])
            for r in sorted((r for r in run.results if r.model == model), key=lambda r: (r.target, r.threads)):
                data.append(r.samples_ms)
                labels.append(f"{r.target}\n{r.threads}t" + (f"\n{tag}" if len(runs) > 1 or run.device else ""))
        ax.boxplot(data, vert=False, tick_labels=labels, showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
        ax.set_title(f"{model}: latency per run (ms)", fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png = fig_png(fig)
    plt.close(fig)
    return png


def scatter_plot(run: BenchRun) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    models = sorted({r.model for r in run.results})
    targets = sorted({r.target for r in run.results})
    markers = "osD^vP*X"
    cmap = plt.get_cmap("tab10")
    for r in run.results:
        if r.threads != min(x.threads for x in run.results if x.model == r.model):
            continue  # one point per model × target: its lowest thread count
        m, t = models.index(r.model), targets.index(r.target)
        x, y = r.latency_ms.p50, r.build.size_bytes / 1024
        ax.scatter(x, y, marker=markers[m % len(markers)], color=cmap(t % 10), s=60, label=f"{r.model} / {r.target}")
        acc = r.build.accuracy
        if acc is not None:
            ax.annotate(f"{acc:.1%}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("p50 latency (ms, log)")
    ax.set_ylabel("program size, .pte + .ptd (KiB, log)")
    ax.set_title("size vs latency across targets (labels: top-1 accuracy through the program)", fontsize=10, loc="left")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best", ncol=1)
    fig.tight_layout()
    png = fig_png(fig)
    plt.close(fig)
    return png


def _fmt(v: object, spec: str = ".4g") -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def summary_rows(run: BenchRun) -> list[list[str]]:
    rows = []
    for r in sorted(run.results, key=lambda r: (r.model, r.target, r.threads)):
        lat, b = r.latency_ms, r.build
        rows.append(
            [
                r.model,
                r.target,
                str(r.threads),
                _fmt(lat.p50),
                _fmt(lat.p90),
                _fmt(lat.p99),
                f"{lat.ci95_median[0]:.4g}–{lat.ci95_median[1]:.4g}",
                _fmt(r.memory.get("peak_rss_mb"), ".1f"),
                f"{b.size_bytes / 1024:.1f}",
                _quality_cell(b),
                "exact" if b.sqnr_db is None else f"{b.sqnr_db:.1f}",
                _check_cell(r.check),
                "yes" if b.cached else "no",
            ]
        )
    return rows


SUMMARY_HEAD = [
    "model",
    "target",
    "threads",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p50 95% CI",
    "peak RSS MiB",
    "size KiB",
    "accuracy / ppl",
    "SQNR dB",
    "answers",
    "cached build",
]


def _quality_cell(b: BuildFigures) -> str:
    """Top-1 accuracy, or for a generation program its perplexity and how far above the model's it is."""
    if b.perplexity is not None:
        kld = "" if b.kld_mean is None else f", KLD {b.kld_mean:.3g}, top-1 {100 * b.same_top1:.0f}%"
        return f"ppl {b.perplexity:.3g} ({b.ppl_increase_pct:+.1f}%{kld})"
    return "–" if b.accuracy is None else f"{b.accuracy:.2%}"


def generation_lines(run: BenchRun) -> list[str]:
    """Per text-generation item: what its latency columns mean and its tokens per second, a line each."""
    out = []
    for r in sorted(run.results, key=lambda r: (r.model, r.target, r.threads)):
        g = r.generation
        if g:
            out.append(
                f"- {r.model} × {r.target} × {r.threads}: decode {g['decode_tokens_per_s']:.1f} tokens/s (the latency "
                f"columns: ms per generated token), prefill {g['prefill_tokens_per_s']:.1f} tokens/s, time to first "
                f"token {g['ttft_ms']:.1f} ms; prompt {g['prompt_len']}, {g['gen_len']} generated, {g['rounds']} rounds"
            )
    return out


def _check_cell(check: dict[str, object] | None) -> str:
    """The reference check where the item was measured (a failed one is an error of the run, not an item)."""
    if not check:
        return "–"
    if check["status"] == "passed":
        if check.get("kld") is not None:
            return f"checked (KLD {check['kld']:.3g})"
        return "checked" + (f" ({check['worst_sqnr_db']:.1f} dB)" if check.get("worst_sqnr_db") is not None else "")
    return "not checked"


COMPARE_HEAD = ["model", "target", "threads", "metric", "base", "new", "ratio / Δ", "95% CI", "p", "noise", "verdict"]


def compare_rows(cmp: Comparison) -> list[list[str]]:
    out = []
    for r in cmp.rows:
        change = f"{r['ratio']:.3f}×" if r.get("ratio") is not None else f"{r['change']:+.4g}"
        ci = f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}" if r.get("ci95") else "–"
        p = f"{r['p_value']:.2g}" if r.get("p_value") is not None else "–"
        noise = f"±{r['noise_pct']:.1f}%" if r.get("noise_pct") is not None else "–"
        out.append(
            [
                r["model"],
                r["target"],
                str(r["threads"]),
                r["metric"],
                _fmt(r["base"]),
                _fmt(r["new"]),
                change,
                ci,
                p,
                noise,
                r["verdict"] + ("" if r["gated"] else " (not gated)"),
            ]
        )
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _meta(run: BenchRun) -> str:
    m, c = run.machine, run.commit or {}
    where = f"device {run.device}: " if run.device else ""
    return (
        f"{where}{m.cpu_model} · {m.cores_logical} cores · {m.os} · Python {m.python} · torch {m.torch} · "
        f"executorch {m.executorch} · edgekit {m.edgekit} · commit {c.get('short') or '–'}"
        f"{' (dirty)' if c.get('dirty') else ''} · {run.created} · suite {run.suite.get('name', '?')} · {run.wall_seconds} s"
    )


def explanation_lines(run: BenchRun) -> list[str]:
    """Per item: its slowest modules and its least faithful ones (edgekit explain's), a line each, so a regression
    points at a layer; ``edgekit explain PKG`` gives the whole table."""
    out = []
    for r in sorted(run.results, key=lambda r: (r.model, r.target, r.threads)):
        e = r.explain
        if not e:
            continue
        item = f"{r.model} × {r.target} × {r.threads}"
        if e.get("slowest"):
            out.append(f"- {item}: slowest " + "; ".join(e["slowest"]))
        if e.get("least_faithful"):
            out.append(f"- {item}: least faithful " + "; ".join(e["least_faithful"]))
        if e.get("note"):
            out.append(f"- {item}: {e['note']}")
    return out


def write_report(runs: list[BenchRun], out: str | Path, comparison: Comparison | None = None) -> dict[str, Path]:
    """Write ``report.md`` (+ PNGs) and a self-contained ``index.html`` into ``out`` (replaced atomically).

    Raises:
        BenchError: no runs to report.
    """
    out = Path(out)
    if not runs:
        raise BenchError("no runs to report", "run `edgekit bench run SUITE` first, or pass run files")
    latest = runs[-1]
    lat_png, sc_png = latency_plot(runs), scatter_plot(latest)
    name = latest.suite.get("name", "?")
    # One section per device (the newest run of each): a fleet run reads as one report.
    newest = {r.device: r for r in runs}
    md = [f"# edgekit benchmark report: {name}", ""]
    body = [f"<h1>edgekit benchmark report: {html.escape(name)}</h1>"]
    for device, run in newest.items():
        title = "Results" if len(newest) == 1 else f"Results on {device or 'this machine'}"
        md += [f"## {title}", "", _meta(run), "", _md_table(SUMMARY_HEAD, summary_rows(run)), ""]
        body += [
            f"<h2>{html.escape(title)}</h2>",
            f"<p class=meta>{html.escape(_meta(run))}</p>",
            html_table(SUMMARY_HEAD, summary_rows(run)),
        ]
        gen = generation_lines(run)
        if gen:
            md += ["### Text generation", "", *gen, ""]
            body += ["<h3>Text generation</h3><ul>"]
            body += [f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in gen] + ["</ul>"]
        lines = explanation_lines(run)
        if lines:
            md += ["### Where each item's time goes, and where it stops being faithful", "", *lines, ""]
            body += ["<h3>Where each item's time goes, and where it stops being faithful</h3><ul>"]
            body += [f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in lines] + ["</ul>"]
    md += [
        "## Latency distributions",
        "",
        "![latency](latency.png)",
        "",
        "## Size vs latency",
        "",
        "![size vs latency](size_vs_latency.png)",
        "",
    ]
    errors = [e for run in newest.values() for e in run.errors]
    if errors:
        md += ["## Failed items", ""] + [f"- {e.model} × {e.target} × {e.threads}: {e.error}" for e in errors] + [""]
        body += (
            ["<h2>Failed items</h2><ul>"]
            + [f"<li>{html.escape(e.model)} × {html.escape(e.target)}: {html.escape(e.error)}</li>" for e in errors]
            + ["</ul>"]
        )
    b64 = {name: base64.b64encode(png).decode() for name, png in (("lat", lat_png), ("sc", sc_png))}
    body += [
        "<h2>Size vs latency</h2>",
        f'<img alt="size vs latency" src="data:image/png;base64,{b64["sc"]}">',
        "<h2>Latency distributions</h2>",
        f'<img alt="latency distributions" src="data:image/png;base64,{b64["lat"]}">',
    ]
    if comparison is not None:
        verdict = f"{len(comparison.regressions)} regression(s)" if comparison.regressions else "no regression"
        rows = compare_rows(comparison)
        key_rows = [r for r in rows if r[3] == "latency_p50" or not r[-1].startswith("unchanged")]
        md += [f"## Comparison with {comparison.baseline}: {verdict}", "", _md_table(COMPARE_HEAD, rows), ""]
        md += [f"- warning: {w}" for w in comparison.warnings] + [""]
        body += [
            f"<h2>Comparison with {html.escape(comparison.baseline)}: {verdict}</h2>",
            "<p class=meta>median latency of every item, and every other metric that changed</p>",
            html_table(COMPARE_HEAD, key_rows, verdict_col=10),
            f"<details><summary>all {len(rows)} comparisons</summary>",
            html_table(COMPARE_HEAD, rows, verdict_col=10),
            "</details>",
        ]
        body += [f"<p class=warn>warning: {html.escape(w)}</p>" for w in comparison.warnings]
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>edgekit report {html.escape(name)}"
        f"</title><style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
    with staged_output(out, force=True, marker="index.html") as tmp:  # a report folder is regenerated: replace it whole
        (tmp / "report.md").write_text("\n".join(md), encoding="utf-8")
        (tmp / "index.html").write_text(page, encoding="utf-8")
        (tmp / "latency.png").write_bytes(lat_png)
        (tmp / "size_vs_latency.png").write_bytes(sc_png)
    return {"markdown": out / "report.md", "html": out / "index.html"}
