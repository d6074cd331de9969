"""``edgekit tune`` on a decoder: the fastest generation program within a fidelity budget (perplexity increase, and
optionally mean KLD and same top-1, on llama.cpp's protocol against the model handed in).

Candidates: int4 linears (8da4w) at each group size, int8 linears (8da8w), each with an int4 or an int8 embedding
table; the output layer is int8 in all of them (see :mod:`edgekit.pipeline.generation`). Every candidate is built
through the build queue into the content-addressed cache (an interrupted tune resumes), verified against the model
handed in (llama.cpp's KL-divergence protocol over the eval text, through the KV cache); those within the budget are
measured by the generation worker (cached per build, machine and settings), decode tokens/s being the objective. The
two fastest are then re-measured in interleaved rounds (:func:`edgekit.tune.search.decide`, as for any model): the
faster wins only when Mann-Whitney on their decode steps says they differ at α = 0.01, else the smaller program.

What a build would refuse is refused before the first one starts: a missing or unsupported model, an eval file that
is not text, a cache the model cannot hold; a group size that does not divide the model's layer widths skips those
candidates, with the reason in the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypedDict

from .. import paths
from ..errors import BudgetError, UsageError
from ..manifest_tune import CandidateStatus
from .gen_recipes import (
    ALIASES,
    DEFAULT_MAX_PPL_INCREASE,
    EMBEDDINGS,
    GROUP_SIZES,
    LINEARS,
    GenBudget,
    GenRecipe,
    TriedRecipe,
    plan,
)
from .search import MeasureResult

if TYPE_CHECKING:
    from ..builds import BuildCache
    from ..profile.generation import GenerationProfile
    from .search import TuneResult


class ProfileSettings(TypedDict):
    """How a candidate's decode speed is measured (also part of its measurement's cache key)."""

    prompt_len: int
    gen_len: int
    rounds: int
    threads: int
    engine: str  # native | python, resolved before any measurement: a cached one is never the other engine's


def tune_generation(
    model: str,
    *,
    out: str | Path,
    eval: str | Path | None = None,  # noqa: A002 - the CLI's --eval
    max_ppl_increase: float = DEFAULT_MAX_PPL_INCREASE,
    max_kld: float | None = None,
    min_top1: float | None = None,
    linears: Sequence[str] = LINEARS,
    group_sizes: Sequence[int] = GROUP_SIZES,
    embeddings: Sequence[str] = EMBEDDINGS,
    max_seq_len: int | None = None,
    prompt_len: int = 128,
    gen_len: int = 128,
    rounds: int = 3,
    threads: int = 1,
    cache: str | Path = paths.BUILD_CACHE,
    executor: str | None = None,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> TuneResult:
    """Build and measure the candidates (see the module docstring); write the chosen one as a package at ``out``
    with a ``tune`` section. Returns a :class:`~edgekit.tune.search.TuneResult`.

    Raises:
        UsageError: an unknown precision, a group size that is not a multiple of 32, a budget below 0.
        BudgetError: no candidate is within the perplexity budget (the closest is named); nothing is written.
    """
    from ..builds import BuildCache, BuildQueue, ModelEntry, build_key, measurement_key, versions
    from ..fileops import check_output
    from ..machine import machine_facts
    from .search import TuneOptions, decide

    budget = GenBudget(max_ppl_increase, max_kld, min_top1)
    recipes = _check(budget, linears, group_sizes, embeddings, prompt_len, gen_len)
    check_output(Path(out), force)
    _check_eval(eval)
    say = progress or (lambda *a: None)
    tried = [TriedRecipe(r) for r in recipes]
    say("reading the model's config", 0, 2 * len(tried))
    _check_model(model, tried, max_seq_len, prompt_len + gen_len, eval)
    store = BuildCache(cache)
    store.check_writable()
    facts = machine_facts()
    vers = versions(facts)
    entry = ModelEntry(model, (), None, None if eval is None else str(Path(eval).resolve()), name="tune")
    notes: list[str] = []
    todo = [t for t in tried if t.status is CandidateStatus.PENDING]
    total, done = 2 * len(todo), 0
    targets = {id(t): t.recipe.target() for t in todo}
    keys = {id(t): build_key(entry, targets[id(t)], vers, extra=f"max_seq_len={max_seq_len}") for t in todo}
    queue = BuildQueue(store, executor, notes)
    try:
        building = []
        for t in todo:
            hit = queue.cached(keys[id(t)])
            if hit is None:
                building.append(t)
            else:
                done += 1
                t.take(hit)
                say(f"built {t.recipe.name} (cached)", done, total)
        by_key = {keys[id(t)]: t for t in building}
        options = (("max_seq_len", max_seq_len),)
        jobs = [queue.job(entry, targets[id(t)], keys[id(t)], options) for t in building]
        if jobs:
            say(f"building {len(jobs)} candidate(s)", done, total)
            for job, built in queue.run(jobs):
                done += 1
                by_key[job.key].take(built)
                say(f"built {by_key[job.key].recipe.name}", done, total)
    finally:
        queue.close()  # its workers would hold memory and cores while decode is timed
    from ..runner.native import pick_engine
    from ..runner.protocol import Engine

    # the engine every candidate is measured in (and its measurements cached under): the native runner wherever a
    # compiler is, what a device runs, else the Python worker, said in the notes
    engine, _, missing = pick_engine(Engine.AUTO)
    if missing is not None:
        notes.append(f"using the python engine: {missing}")
    settings: ProfileSettings = {
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "rounds": rounds,
        "threads": threads,
        "engine": engine.value,
    }
    for t in todo:
        done += 1
        if t.manifest is None:
            continue
        _judge(t, budget)
        if t.status is CandidateStatus.WITHIN:  # over the budget: not worth the time to measure
            say(f"measuring {t.recipe.name}", done, total)
            _measure(t, store, measurement_key(keys[id(t)], settings, facts["machine_id"]), settings)
    within = sorted((t for t in tried if t.status == CandidateStatus.WITHIN), key=_speed_key)
    if not within:
        raise _no_candidate(tried, budget)

    def remeasure(t: TriedRecipe) -> list[float]:
        """Fresh decode steps (never the cache): the two best are compared side by side, interleaved."""
        say(f"re-measuring {t.recipe.name}", done, total)
        return list(_profile(t, {**settings, "rounds": 1}).decode_samples_ms)

    opts = TuneOptions(objective="p50", threads=threads, rounds=rounds)
    chosen, why, p = decide(within[0], within[1] if len(within) > 1 else None, opts, remeasure)
    why = why.replace("p50", "decode step p50").replace("latency difference", "decode speed difference")
    chosen.status, chosen.reason = CandidateStatus.CHOSEN, "see the decision"
    for t in within:
        if t is not chosen:
            t.reason = (
                f"decode {t.profile.decode_tokens_per_s:.1f} vs {chosen.profile.decode_tokens_per_s:.1f} "
                f"tokens/s, {t.manifest.program.shipped_bytes / 2**20:.1f} vs "
                f"{chosen.manifest.program.shipped_bytes / 2**20:.1f} MiB"
            )
    return _write(model, tried, chosen, why, p, budget, threads, notes, Path(out), force)


def _check_eval(eval_path: str | Path | None) -> None:
    """The eval file exists and is text (a generation build scores held-out text), before any build."""
    from ..errors import DataError

    if eval_path is None:
        return
    path = Path(eval_path)
    if not path.is_file():
        raise UsageError(f"the eval text {path} does not exist", "pass a UTF-8 .txt file of held-out text")
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the 1 MiB boundary
            raise DataError(
                f"--eval {path} is not UTF-8 text: a decoder is scored on held-out text",
                "pass a .txt file (the data formats of --eval are for models that take tensors)",
            ) from None


def _check_model(
    model: str, tried: list[TriedRecipe], max_seq_len: int | None, needed: int, eval_path: str | Path | None
) -> None:
    """The model is a supported decoder (a GGUF is converted once, as its builds would), the cache fits it and the
    profile's tokens, the eval text holds llama.cpp's chunks, and each int4 group size divides the layer widths (else
    those candidates are skipped)."""
    from ..causal import decoder_config, layer_widths
    from ..pipeline.generation import DEFAULT_MAX_SEQ_LEN, model_context_len

    config, folder, _ = decoder_config(model)
    limit = model_context_len(config)
    if max_seq_len is not None and limit is not None and max_seq_len > limit:
        raise UsageError(
            f"--max-seq-len {max_seq_len} is longer than the {limit} tokens this model attends over",
            f"use at most {limit}",
        )
    cache = max_seq_len if max_seq_len is not None else min(DEFAULT_MAX_SEQ_LEN, limit or DEFAULT_MAX_SEQ_LEN)
    if needed > cache:
        raise UsageError(
            f"--prompt-len + --gen-len = {needed} tokens do not fit the programs' {cache}-token cache",
            "lower them" + (", or raise --max-seq-len" if limit is None or needed <= limit else ""),
        )
    if eval_path is not None:  # what each build would refuse, before the first one starts
        import transformers

        from ..pipeline.generation.references import read_eval_text

        read_eval_text(eval_path, transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True), cache)
    widths = sorted(layer_widths(config))
    for t in tried:
        bad = [w for w in widths if w % t.recipe.group_size]
        if t.uses_int4 and bad:
            t.status = CandidateStatus.SKIPPED
            t.reason = (
                f"group size {t.recipe.group_size} does not divide the layer width(s) {', '.join(map(str, bad))} "
                f"(widths {', '.join(map(str, widths))})"
            )


def _check(
    budget: GenBudget,
    linears: Sequence[str],
    group_sizes: Sequence[int],
    embeddings: Sequence[str],
    prompt_len: int,
    gen_len: int,
) -> list[GenRecipe]:
    import math

    linears = [ALIASES.get(v, v) for v in linears]

    for value, what, hi, example in (
        (budget.max_ppl_increase, "--max-ppl-increase", None, "25"),
        (budget.max_kld, "--max-kld", None, "0.05"),
        (budget.min_top1, "--min-top1", 100, "90"),
    ):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if value is not None and not (ok and (hi is None or value <= hi)):
            limits = "≥ 0" if hi is None else f"in [0, {hi}]"
            raise UsageError(f"{what} must be a number {limits}, got {value!r}", f"e.g. {what} {example}")
    for value, valid, what in ((linears, LINEARS, "--linears"), (embeddings, EMBEDDINGS, "--embeddings")):
        bad = [v for v in value if v not in valid]
        if bad or not value:
            raise UsageError(f"{what} {','.join(map(str, value)) or '(none)'}: valid values are {', '.join(valid)}")
    bad_g = [g for g in group_sizes if not isinstance(g, int) or g < 32 or g % 32]
    if bad_g or not group_sizes:
        raise UsageError(
            f"--group-sizes {','.join(map(str, group_sizes)) or '(none)'}: each must be a multiple of 32 "
            "(XNNPACK's int4 kernels)",
            "e.g. --group-sizes 32,64,128",
        )
    if prompt_len < 1 or gen_len < 2:
        raise UsageError(f"--prompt-len must be ≥ 1 and --gen-len ≥ 2, got {prompt_len} and {gen_len}")
    return plan(linears, group_sizes, embeddings)


def _profile(t: TriedRecipe, settings: ProfileSettings) -> GenerationProfile:
    from ..profile.generation import profile_generation

    return profile_generation(
        t.folder,
        prompt_len=settings["prompt_len"],
        gen_len=settings["gen_len"],
        runs=settings["rounds"],
        warmup=1,
        threads=settings["threads"],
        engine=settings["engine"],
    )


def _measure(t: TriedRecipe, store: BuildCache, key: str, settings: ProfileSettings) -> None:
    """Decode and prefill speed from the generation worker (cached per build, machine and settings), for ranking."""
    from ..errors import EdgekitError

    cached = store.measurement(key)
    if isinstance(cached, dict) and isinstance(cached.get("samples"), list) and cached.get("decode_tokens_per_s"):
        t.profile = MeasureResult.from_dict(cached)
        return
    try:
        p = _profile(t, settings)
    except EdgekitError as exc:  # one candidate's failed measurement is its own failure, not the tune's
        t.status, t.reason = CandidateStatus.FAILED, f"within the budget, but its measurement failed: {exc}"
        return
    if p.check.status != "passed":
        t.status = CandidateStatus.FAILED
        t.reason = f"its answers in the worker were not checked ({p.check.status}: {p.check.note})"
        return
    t.profile = MeasureResult(
        p.decode_ms.p50,
        p.decode_ms.p90,
        p.peak_rss_mb,
        list(p.decode_samples_ms),
        decode_tokens_per_s=p.decode_tokens_per_s,
        prefill_tokens_per_s=p.prefill_tokens_per_s,
    )
    store.put_measurement(key, t.profile.to_dict())


def _judge(t: TriedRecipe, budget: GenBudget) -> None:
    """Within or over the budget (against the model handed in, from the build's own verify)."""
    misses = budget.misses(t.manifest.generation)
    t.status = CandidateStatus.OVER if misses else CandidateStatus.WITHIN
    t.reason = "; ".join(misses) + " (not measured)" if misses else "within the budget"


def _speed_key(t: TriedRecipe) -> tuple[float, int]:
    return (-t.profile.decode_tokens_per_s, t.manifest.program.shipped_bytes)


def _no_candidate(tried: list[TriedRecipe], budget: GenBudget) -> BudgetError:
    built = [t for t in tried if t.manifest is not None and t.status is CandidateStatus.OVER]
    failed = [t for t in tried if t.manifest is not None and t.status is CandidateStatus.FAILED]
    if failed:  # within the budget, but not measurable: say so rather than blame the budget
        err = BudgetError(
            f"{failed[0].recipe.name}: {failed[0].reason}",
            "see the table; rerun once the cause is fixed (the builds are cached)",
        )
    elif built:
        closest = min(built, key=lambda t: (len(budget.misses(t.manifest.generation)), t.increase))
        err = BudgetError(
            f"no candidate is within the budget ({budget.describe()}): the closest, {closest.recipe.name}: "
            + "; ".join(budget.misses(closest.manifest.generation)),
            "loosen the budget, or build xnnpack-llm-fp32 (your model itself)",
        )
    else:
        first = next((t.reason for t in tried if t.reason), "no candidate was built")
        err = BudgetError(f"no candidate could be built: {first}")
    err.candidates = [t.record() for t in tried]
    return err


def _write(
    model: str,
    tried: list[TriedRecipe],
    chosen: TriedRecipe,
    why: str,
    p: float | None,
    budget: GenBudget,
    threads: int,
    notes: list[str],
    out: Path,
    force: bool,
) -> TuneResult:
    from ..manifest_tune import TuneSection
    from .write import write_package

    g = chosen.manifest.generation
    section = TuneSection(
        objective="decode_tokens_per_s",
        budget=budget.to_dict(),
        threads=threads,
        candidates=[t.record() for t in tried],
        decision=f"{chosen.recipe.name}: {why}",
        mann_whitney_p=p,
        fidelity=(
            (g.fidelity.summary() if g.fidelity else f"perplexity {g.ppl_increase_pct:+.1f}%")
            + f"; text: {g.eval_data}; against your model (fp32, as handed in); budget {budget.describe()}"
        ),
    )
    return write_package(model, section, chosen, notes, out, force)
