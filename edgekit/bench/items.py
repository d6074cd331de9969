"""One bench item: a built program measured (here or on a device) and written as a :class:`BenchItem` — the build's
figures, the profile's samples and summaries, the reference check, and, where asked, the per-module explanation; a
generation program's item carries its decode steps as samples and its TTFT and perplexity.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..builds import Built
from ..errors import BenchError, EdgekitError
from ..runner.protocol import Engine
from .document import BenchFailure, BenchItem, BuildFigures
from .suite import Suite, SuiteModel

if TYPE_CHECKING:
    from ..profile.options import ProfileOptions


def _build_figures(b: Built, **figures: Any) -> BuildFigures:
    """What every item records of its build, plus the task's own figures (accuracy and SQNR, or perplexity)."""
    prog = b.manifest.program
    return BuildFigures(
        cached=b.cached,
        seconds=round(b.seconds, 3),
        sha256=prog.sha256,
        size_bytes=prog.shipped_bytes,  # with a generation program's model.ptd
        worker=b.worker,
        attempts=b.attempts,
        peak_rss_mb=b.peak_rss_mb,
        compressed_size_bytes=prog.compressed_size_bytes,
        **figures,
    )


def _names(model: SuiteModel, target: str, threads: int) -> dict[str, str | int]:
    """What names an item in a run (its key, model, target and threads), for every kind's item."""
    return {
        "key": f"{model.name}|{Path(target).stem}|{threads}",
        "model": model.name,
        "target": Path(target).stem,
        "threads": threads,
    }


def _tensor_item(
    model: SuiteModel, target: str, threads: int, b: Built, prof: Any, explanation: dict | None = None
) -> BenchItem:
    manifest = b.manifest
    acc = manifest.verify.accuracy
    prog = manifest.program
    return BenchItem(
        **_names(model, target, threads),
        engine=prof.engine,
        build=_build_figures(
            b,
            accuracy=acc.program if acc else None,
            eager_accuracy=acc.eager if acc else None,
            sqnr_db=manifest.verify.sqnr_db,
            planned_bytes=prog.planned_memory.planned_bytes,
            delegated_partitions=prog.delegation.delegated_partitions,
        ),
        latency_ms=prof.latency_ms,
        samples_ms=list(prof.samples_ms),
        phases={"load_ms": prof.phases.load_ms, "first_run_ms": prof.phases.first_run_ms},
        memory={
            k: getattr(prof.memory, k)
            for k in ("baseline_rss_mb", "load_rss_mb", "peak_rss_mb", "peak_delta_mb", "load_delta_mb")
        },
        energy={
            "cpu_seconds_per_run": prof.energy.cpu_seconds_per_run,
            "joules_per_run": prof.energy.joules_per_run,
            "joules_source": prof.energy.joules_source,
        },
        warnings=list(prof.warnings),
        noise=prof.noise.to_dict() if prof.noise else None,
        check=_check_summary(prof.check),
        explain=explanation,
    )


def generation_item(suite: Suite, model: SuiteModel, target: str, threads: int, b: Built, device: Any) -> BenchItem:
    """A text-generation item (the generation kind's, :mod:`edgekit.kinds`): prefill and decode measured by a
    generation profile (here in the suite's engine, whose ``auto`` is the native runner where a compiler is, else the
    Python worker with ExecuTorch's llama:: kernels; on a device by the native runner); the latency samples are the
    decode steps (ms per generated token), so compare's tests gate decode speed; TTFT, peak RSS, perplexity, mean KLD
    and same top-1 beside them."""
    from ..profile.generation import profile_generation

    r, m = suite.run, b.manifest
    g = m.generation
    p = profile_generation(
        b.folder,
        prompt_len=r.prompt_len,
        gen_len=r.gen_len,
        runs=r.generation_rounds,
        warmup=1,
        threads=threads,
        timeout=max(r.timeout, 1800.0),
        engine=Engine.NATIVE if device is not None else r.engine,
        device=device,
    )
    return BenchItem(
        **_names(model, target, threads),
        engine=p.engine,
        build=_build_figures(
            b,
            perplexity=g.perplexity_program,
            ppl_increase_pct=g.ppl_increase_pct,
            kld_mean=None if g.fidelity is None else g.fidelity.kld_mean,
            same_top1=None if g.fidelity is None else g.fidelity.same_top1,
        ),
        latency_ms=p.decode_ms,
        samples_ms=list(p.decode_samples_ms),
        phases={"load_ms": p.load_ms, "first_run_ms": p.ttft_ms.p50},
        memory={
            "baseline_rss_mb": p.baseline_rss_mb,
            "load_rss_mb": p.load_rss_mb,
            "peak_rss_mb": p.peak_rss_mb,
            "peak_delta_mb": p.peak_delta_mb,
            "load_delta_mb": round(p.load_rss_mb - p.baseline_rss_mb, 1),
        },
        energy={
            "cpu_seconds_per_run": p.cpu_s_per_token,
            "joules_per_run": p.joules_per_token,
            "joules_source": p.joules_note,
        },
        warnings=list(p.notes),
        check={
            "status": p.check.status,
            "worst_sqnr_db": None,
            "samples": p.check.tokens,
            "note": p.check.note,
            "kld": p.check.kld,  # mean KL(your model ‖ program) where it was measured (None: a package before it)
            "max_kld": p.check.max_kld,
        },
        generation={
            "prompt_len": p.prompt_len,
            "gen_len": p.gen_len,
            "rounds": p.runs,
            "prefill_tokens_per_s": p.prefill_tokens_per_s,
            "decode_tokens_per_s": p.decode_tokens_per_s,
            "ttft_ms": p.ttft_ms.p50,
            "ttft_samples_ms": list(p.prefill_samples_ms),
            "per": "latency_ms and samples_ms: one decode step (a generated token); energy: per generated token",
        },
    )


def _check_summary(check: Any) -> dict | None:
    """The reference check in a run file: status, the worst output's SQNR against the user's model, the note."""
    if check is None:
        return None
    sqnrs = [c.sqnr_db for c in check.outputs if c.sqnr_db is not None]
    return {
        "status": check.status,
        "worst_sqnr_db": min(sqnrs) if sqnrs else None,
        "samples": check.samples,
        "note": check.note,
    }


def measure_item(suite: Suite, model: SuiteModel, target: str, threads: int, b: Any, device: Any = None) -> Any:
    """Profile one item of a finished build (here, or on ``device``): a BenchItem, or the BenchFailure saying why not."""
    from .. import kinds

    try:
        if not isinstance(b, Built):
            raise BenchError(b)  # the build itself failed: its error text
        return kinds.step(kinds.of_manifest(b.manifest), "bench_item")(suite, model, target, threads, b, device)
    except EdgekitError as exc:
        return BenchFailure(model.name, target, threads, str(exc))


def tensor_item(suite: Suite, model: SuiteModel, target: str, threads: int, b: Built, device: Any) -> BenchItem:
    """A model's item (the tensor kind's, :mod:`edgekit.kinds`): a profile of runs of one input, with the slowest and
    least faithful modules from an ETDump where the native runner measures here."""
    import dataclasses
    import tempfile

    from ..profile.harness import profile

    opts = _profile_options(suite, threads)
    if device is not None or suite.run.engine == "python":  # the ETDump comes from the native runner, here
        return _tensor_item(model, target, threads, b, profile(b.folder, options=opts, device=device))
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        etdump = Path(tmp) / "run.etdp"
        prof = profile(b.folder, options=dataclasses.replace(opts, ops=True, ops_runs=20, etdump_out=str(etdump)))
        return _tensor_item(model, target, threads, b, prof, _explanation_summary(b.folder, etdump, prof))


def _explanation_summary(folder: Path, etdump: Path, prof: Any) -> dict | None:
    """The item's slowest and least faithful modules (edgekit explain's), so a regression points at a layer."""
    from ..explain import explain_etdump, summary

    if not etdump.is_file():
        return None
    try:
        return summary(explain_etdump(folder, etdump, prof))
    except EdgekitError as exc:  # an explanation that cannot be made does not fail the item
        return {"slowest": [], "least_faithful": [], "note": f"no explanation: {exc}"}


def _profile_options(suite: Suite, threads: int) -> ProfileOptions:
    from ..profile.options import ProfileOptions

    r = suite.run
    return ProfileOptions(
        runs=r.runs,
        warmup=r.warmup,
        warmup_seconds=r.warmup_seconds,
        threads=threads,
        engine=r.engine,
        timeout=r.timeout,
        max_seconds=r.max_seconds,
    )
