"""What a build shows: the summary of a package (tensor programs and generation programs)."""

from __future__ import annotations

from typing import Any

from .console import console, fmt_db, table, warn


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
    f = g.fidelity
    if f is not None:  # llama.cpp's protocol: the figures its users compare recipes and runtimes by
        t.add_row(
            "fidelity",
            f"mean KLD {f.kld_mean:.4f} ± {f.kld_se:.4f} nats (99%: {f.kld_p99:.3f}), same top-1 "
            f"{100 * f.same_top1:.1f} ± {100 * f.same_top1_se:.1f}% against your model",
        )
        t.add_row(
            "perplexity",
            f"your model {f.ppl_base:.3f} → program {f.ppl:.3f}: ratio {f.ppl_ratio:.4f} ± {f.ppl_ratio_se:.4f} "
            f"({g.ppl_increase_pct:+.2f}%)",
        )
        t.add_row(
            "",
            f"[dim]llama-perplexity --kl-divergence's protocol: {f.chunks} chunks of {f.n_ctx} tokens of {g.eval_data}, "
            f"{f.positions} predictions scored (the second half of each)[/]",
        )
    else:
        t.add_row(
            "perplexity",
            f"your model {g.perplexity_eager:.3f} → program {g.perplexity_program:.3f} ({g.ppl_increase_pct:+.2f}%) "
            f"over {g.eval_tokens} tokens of {g.eval_data}",
        )
        t.add_row("next token", f"the program's top token is your model's at {g.next_token_agreement:.1%} of positions")
    gr = g.greedy
    t.add_row(
        "greedy",
        f"{gr.matching}/{gr.new_tokens} tokens as your model's ({gr.prefix} before the first difference) after a "
        f"{gr.prompt_tokens}-token prompt (a diagnostic: free-running tokens part at the first near tie)",
    )
    t.add_row("", f"[dim]program: {gr.program_text!r}[/]")
    for c in m.budget.checks:
        t.add_row("budget", f"{c.name} {c.value} (limit {c.limit}) {'ok' if c.ok else 'EXCEEDED'}")
    t.add_row("time", ", ".join(f"{k} {v:.1f} s" for k, v in m.timings_s.items()))
    console(stderr=False).print(t)
    warn(m.warnings)
