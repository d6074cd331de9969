"""``edgekit explain --html``: one self-contained page: the module table, the time shares, and the memory plan as
tensor lifetimes over the program's instructions (one bar per planned tensor, at its arena offset)."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

from ..htmlreport import CSS, fig_png, html_table
from .model import Explanation, ModuleRow, db_cell, fidelity_line

if TYPE_CHECKING:
    from ..pipeline.explain_memory import MemoryPlan

HEAD = ["#", "module", "class", "source", "p50 ms", "share", "where", "precision", "SQNR dB", "own dB", "only it dB"]


def rows(explanation: Explanation, ordered: list[ModuleRow]) -> list[list[str]]:
    out = []
    for r in ordered:
        sqnr = r.sqnr_note or ("–" if r.sqnr_db is None else f"{r.sqnr_db:.1f}")
        out.append(
            [
                str(r.order),
                r.module,
                r.cls or "",
                r.source or "",
                f"{r.p50_ms:.4f}",
                f"{r.share:.1%}",
                r.where,
                r.precision,
                sqnr,
                db_cell(r.local_sqnr_db),
                db_cell(r.impact_sqnr_db),
            ]
        )
    return out


def _time_plot(explanation: Explanation) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = explanation.slowest(15)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.2))
    ax.barh([r.module for r in reversed(top)], [r.share * 100 for r in reversed(top)], color="#37c")
    ax.set_xlabel("share of the program's p50 run (%)")
    ax.set_title(f"slowest modules ({explanation.runs} traced runs, {explanation.threads} thread(s))", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    png = fig_png(fig)
    plt.close(fig)
    return png


def _memory_plot(plan: MemoryPlan) -> bytes:
    """Each planned tensor as a bar from its first to its last instruction, at its offset in its arena."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tensors = plan["tensors"]
    fig, (ax, live) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    colors = {}
    for t in tensors:
        mod = (t.get("module") or "(unnamed)").split(".")[0]
        color = colors.setdefault(mod, f"C{len(colors) % 10}")
        ax.broken_barh(
            [(t["start"] - 0.4, t["end"] - t["start"] + 0.8)],
            (t["offset"] / 1024, max(t["bytes"] / 1024, 0.01)),
            facecolors=color,
            edgecolor="#333",
            linewidth=0.3,
            alpha=0.8,
        )
    peak = plan["peak"]
    ax.axvline(peak["step"], color="#c33", lw=1, ls="--")
    ax.set_ylabel("arena offset (KiB)")
    ax.set_title(
        f"ExecuTorch memory plan: {len(tensors)} planned tensors, arenas {plan['arenas_bytes']} bytes "
        f"(planned total {plan['planned_bytes']:,} B); dashed: the largest live set",
        fontsize=9,
    )
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), fontsize=7, loc="upper right", ncol=2)
    live.plot(range(len(plan["live_bytes_by_step"])), [b / 1024 for b in plan["live_bytes_by_step"]], color="#333")
    live.axvline(peak["step"], color="#c33", lw=1, ls="--")
    live.set_ylabel("live KiB")
    live.set_xlabel("instruction (execution order)")
    if plan["steps"] == 1:  # a fully delegated program: one DELEGATE_CALL, its activations inside XNNPACK
        live.set_xticks([0])
        live.set_xlabel("instruction 0: one delegate call runs the whole model (its activations live inside it)")
    png = fig_png(fig)
    plt.close(fig)
    return png


def html_page(explanation: Explanation, ordered: list[ModuleRow]) -> str:
    e, plan = explanation, explanation.plan
    img = base64.b64encode(_time_plot(e)).decode()
    body = [
        f"<h1>edgekit explain: {html.escape(e.model)}</h1>",
        f"<p class=meta>{html.escape(e.package)} · target {html.escape(e.target)} · p50 {e.method_p50_ms:.4f} ms over "
        f"{e.runs} traced runs ({e.untraced_p50_ms:.4f} ms untraced) · {e.threads} thread(s)</p>",
        f"<p><b>Fidelity:</b> {html.escape(e.fidelity)}.</p>",
    ]
    body += [f"<p class=warn>{html.escape(n)}</p>" for n in e.notes]
    body.append(f'<img alt="time per module" src="data:image/png;base64,{img}">')
    worst = e.least_faithful(3)
    if worst:
        body.append("<p><b>Least faithful:</b> " + "; ".join(html.escape(fidelity_line(r)) for r in worst) + ".</p>")
    if e.memory is not None and plan:
        m = e.memory
        mem = base64.b64encode(_memory_plot(plan)).decode()
        body += [
            "<h2>Memory plan</h2>",
            f"<p>Planned arenas {m.arenas_bytes} bytes: <b>{m.planned_bytes:,} bytes planned</b> in all (the .pte's "
            f"memory plan). Largest live set: {m.peak_live_bytes:,} bytes at instruction {m.peak_step}, spanning "
            f"{html.escape(', '.join(m.peak_modules))}. Measured peak RSS of the runner: "
            f"{'–' if m.measured_peak_rss_mb is None else f'{m.measured_peak_rss_mb:.1f} MiB'}. "
            f"{html.escape(m.note)}.</p>",
            f'<img alt="memory plan" src="data:image/png;base64,{mem}">',
        ]
    body += [  # the long table last: the pictures above it are what a reader looks at first
        "<h2>Modules</h2>",
        "<p class=meta>SQNR dB: at the module's output as the quantized model runs (every earlier error included); "
        "own dB: its own error, fed exact inputs; only it dB: the model's output if only this module were "
        "quantized.</p>",
        html_table(HEAD, rows(e, ordered)),
        f"<p class=meta>{e.unattributed_ms:.4f} ms per run could not be given a module: delegate call overhead "
        "and operators no recorded node matches.</p>",
    ]
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>edgekit explain {html.escape(e.model)}</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
