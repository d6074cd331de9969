"""The tune table (rows for people, same figures in the manifest) and its HTML page with the Pareto plot,
in the style of ``bench report``."""

from __future__ import annotations

import base64
import html

from ..htmlreport import CSS, fig_png, html_table
from ..manifest_tune import CandidateStatus, TuneCandidate, TuneSection

HEAD = [
    "candidate",
    "status",
    "p50 ms",
    "p90 ms",
    "peak RSS MiB",
    "size KiB",
    "vs your model",
    "vs pruned model",
    "build s",
    "why",
]


#: the table of a decoder's tune (edgekit.tune.generation): speed is decode tokens/s, fidelity is perplexity
HEAD_GENERATION = [
    "candidate",
    "status",
    "decode tok/s",
    "decode p50 ms",
    "peak RSS MiB",
    "size MiB",
    "perplexity vs your model",
    "mean KLD",
    "same top-1",
    "build s",
    "why",
]


def table(candidates: list[TuneCandidate]) -> tuple[list[str], list[list[str]]]:
    """The header and rows that fit the candidates: a decoder's, or a model's."""
    if any("linears" in c.recipe for c in candidates):  # a GenRecipe's; a model's recipes name a scheme
        return HEAD_GENERATION, generation_rows(candidates)
    return HEAD, rows(candidates)


def generation_rows(candidates: list[TuneCandidate]) -> list[list[str]]:
    return [
        [
            c.name,
            c.status.value,
            _f(c.decode_tokens_per_s, ".1f"),
            _f(c.p50_ms, ".3g"),
            _f(c.peak_rss_mb, ".1f"),
            _f(None if c.size_bytes is None else c.size_bytes / 2**20, ".1f"),
            "–" if c.perplexity is None else f"{c.perplexity:.3f} ({c.ppl_increase_pct:+.1f}%)",
            _f(c.kld_mean, ".4f"),
            "–" if c.same_top1 is None else f"{100 * c.same_top1:.1f}%",
            ("cached" if c.cached else _f(c.build_s, ".1f")),
            c.reason,
        ]
        for c in candidates
    ]


def _f(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def vs_your_model(c: TuneCandidate) -> str:
    """The budget's figures against the model the user handed in: accuracy drop (with labels) and SQNR."""
    if c.p50_ms is None and c.sqnr_db is None and c.accuracy_drop is None:
        return "–"
    parts = [] if c.accuracy_drop is None else [f"drop {c.accuracy_drop * 100:.2f} pts"]
    return ", ".join(parts + ["exact" if c.sqnr_db is None else f"{c.sqnr_db:.1f} dB"])


def rows(candidates: list[TuneCandidate]) -> list[list[str]]:
    out = []
    for c in candidates:
        lowering = (
            "–"
            if not c.recipe.get("prune") or c.size_bytes is None
            else ("exact" if c.lowering_sqnr_db is None else f"{c.lowering_sqnr_db:.1f} dB")
        )
        out.append(
            [
                c.name,
                c.status.value,
                _f(c.p50_ms, ".4g"),
                _f(c.p90_ms, ".4g"),
                _f(c.peak_rss_mb, ".1f"),
                _f(None if c.size_bytes is None else c.size_bytes / 1024, ".1f"),
                vs_your_model(c),
                lowering,
                ("cached" if c.cached else _f(c.build_s, ".1f")),
                c.reason,
            ]
        )
    return out


def pareto(candidates: list[TuneCandidate]) -> list[TuneCandidate]:
    """The candidates no other one beats on both p50 and size."""
    pts = [c for c in candidates if c.p50_ms is not None and c.size_bytes is not None]
    return [
        c
        for c in pts
        if not any(
            o is not c
            and o.p50_ms <= c.p50_ms
            and o.size_bytes <= c.size_bytes
            and (o.p50_ms < c.p50_ms or o.size_bytes < c.size_bytes)
            for o in pts
        )
    ]


def pareto_plot(candidates: list[TuneCandidate], title: str, generation: bool = False) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    front = pareto(candidates)
    for c in candidates:
        if c.p50_ms is None or c.size_bytes is None:
            continue
        within = c.status in (CandidateStatus.CHOSEN, CandidateStatus.WITHIN)
        ax.scatter(
            c.size_bytes / 1024,
            c.p50_ms,
            s=70 if c.status == CandidateStatus.CHOSEN else 35,
            c="#2a7" if c.status == CandidateStatus.CHOSEN else ("#37c" if within else "#bbb"),
            marker="*" if c.status == CandidateStatus.CHOSEN else "o",
            zorder=3,
        )
        ax.annotate(c.name, (c.size_bytes / 1024, c.p50_ms), fontsize=7, xytext=(4, 3), textcoords="offset points")
    line = sorted(front, key=lambda c: c.size_bytes)
    ax.plot([c.size_bytes / 1024 for c in line], [c.p50_ms for c in line], "--", color="#999", lw=1, zorder=2)
    ax.set_xlabel("program size (KiB)")
    ax.set_ylabel("decode step p50 (ms)" if generation else "p50 latency (ms)")
    ax.set_title(
        title + "\n(blue: within budget, grey: over budget or not measured, star: chosen; dashed: Pareto front)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    png = fig_png(fig)
    plt.close(fig)
    return png


def html_page(model: str, section: TuneSection, meta: str) -> str:
    generation = section.objective == "decode_tokens_per_s"
    png = base64.b64encode(pareto_plot(section.candidates, model, generation)).decode()
    budget = ", ".join(f"{k} {v:g}" for k, v in section.budget.items())
    body = [
        f"<h1>edgekit tune: {html.escape(model)}</h1>",
        f"<p class=meta>{html.escape(meta)}</p>",
        f"<p>objective <b>{html.escape(section.objective)}</b> at {section.threads} thread(s), budget "
        f"{html.escape(budget)}. <b>Decision:</b> {html.escape(section.decision)}</p>",
        f"<p><b>Fidelity:</b> {html.escape(section.fidelity or 'not recorded (a package from an older edgekit)')}. "
        + (
            "Every perplexity compares a program with the model you handed in (fp32), over the same held-out text; "
            "p50 is the median decode step.</p>"
            if generation
            else "Every figure in the column <i>vs your model</i> compares a program with the model you handed in; "
            "<i>vs pruned model</i> only says whether lowering kept what pruning left.</p>"
        ),
        f'<img alt="Pareto plot" src="data:image/png;base64,{png}">',
        "<h2>Candidates</h2>",
        html_table(*table(section.candidates), verdict_col=1),
    ]
    style = CSS + "tr.chosen td{background:#dfd}tr.over td,tr.failed td{background:#fdd}tr.skipped td{color:#888}"
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>edgekit tune {html.escape(model)}</title>"
        f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
