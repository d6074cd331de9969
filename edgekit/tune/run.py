"""``tune()``: the session that builds, measures and rescues candidates, and the search around it.

See :mod:`edgekit.tune.search` for the order of the search and :mod:`edgekit.tune.recipes` for mixed precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..manifest_tune import CandidateStatus
from .search import Budget, Tried, TuneOptions, TuneResult  # noqa: F401 (TuneResult: edgekit.tune's public name)

if TYPE_CHECKING:
    from ..builds import Built
    from ..data import Dataset
    from ..specs import InputSpec, LoadedModel
    from ..targets import Target
    from .recipes import Recipe

#: a data argument of tune: a file or folder, or a ``module:function`` that returns the data (builds run elsewhere
#: and read it themselves, so it is passed on by name)
DataPath = str | Path


class _Session:
    """One tune: the model entry, the cache, the build queue (its executor started on first use) and everything tried
    so far."""

    def __init__(
        self,
        spec: str,
        inputs: Sequence[InputSpec],
        calibration: DataPath,
        eval_data: DataPath | None,
        finetune: DataPath | None,
        base: Target,
        budget: Budget,
        opts: TuneOptions,
        progress: Callable[[str, int, int], None],
        data: "_Data",
    ):
        from ..builds import BuildCache, BuildQueue, ModelEntry, versions
        from ..machine import machine_facts

        self.model = ModelEntry(
            spec,
            tuple(inputs),
            None if calibration is None else str(calibration),
            None if eval_data is None else str(eval_data),
            name="tune",
        )
        self.finetune, self.base, self.budget, self.opts, self.progress = finetune, base, budget, opts, progress
        self.data = data  # the model and data sets, loaded once (checked up front, reused by mixed precision)
        self.store = BuildCache(opts.cache)
        self.store.check_writable()
        facts = machine_facts()
        self.versions, self.machine = versions(facts), facts["machine_id"]
        self.tried: list[Tried] = []
        self.notes: list[str] = []
        self.queue = BuildQueue(self.store, opts.executor, self.notes)
        self.t0 = time.monotonic()
        self.done, self.total = 0, 0
        self.finetune_digest: str | None = None  # read once, for the prune candidates' keys

    def step(self, what: str, planned: int = 0) -> None:
        self.total += planned
        self.progress(what, self.done, max(self.total, self.done))

    def key(self, target: Target) -> str:
        from ..builds import build_key, file_digest

        if self.finetune is not None and target.prune.active:
            self.finetune_digest = self.finetune_digest or file_digest(Path(self.finetune))
            return build_key(self.model, target, self.versions, extra=f"finetune={self.finetune_digest}")
        return build_key(self.model, target, self.versions)

    def within(self) -> list[Tried]:
        """The candidates within the budget so far, best by the objective first."""
        from .search import rank_key

        return sorted(
            (t for t in self.tried if t.status == CandidateStatus.WITHIN),
            key=lambda t: rank_key(t, self.opts.objective),
        )

    def build(self, recipes: list[Recipe]) -> list[Tried]:
        """Build (or take from the cache) and measure each recipe; mark each within or over the budget."""
        from .search import elapsed_over

        items = [Tried(r) for r in recipes]
        self.tried += items
        self.step("building", 2 * len(items))
        targets = {id(t): t.recipe.target(self.base, self.opts.finetune_epochs if self.finetune else 0) for t in items}
        keys = {id(t): self.key(targets[id(t)]) for t in items}
        todo = []
        for t in items:
            hit = self.queue.cached(keys[id(t)])
            if hit is not None:
                self._take(t, hit)
            elif elapsed_over(self.t0, self.opts):
                t.status, t.reason = CandidateStatus.SKIPPED, "the --time-budget ran out first"
            else:
                todo.append(t)
        options = (("finetune", None if self.finetune is None else str(self.finetune)),)
        by_key = {keys[id(t)]: t for t in todo}
        jobs = [self.queue.job(self.model, targets[id(t)], keys[id(t)], options) for t in todo]
        for job, built in self.queue.run(jobs) if jobs else ():
            self._take(by_key[job.key], built)
        for t in items:
            self._judge(t, keys[id(t)])
        return items

    def _judge(self, t: Tried, key: str) -> None:
        """Measure a built candidate and say whether it is within the budget."""
        from ..builds import measurement_key
        from .search import measure

        if t.manifest is None:
            self.done += 1
            return
        self.step(f"measuring {t.recipe.name}")
        measure(
            t,
            self.opts,
            self.store,
            measurement_key(key, {"threads": self.opts.threads, "runs": self.opts.runs}, self.machine),
        )
        self.done += 1
        miss = self.budget.fidelity_miss(
            t.drop, t.sqnr
        )  # against the user's model, for every candidate (pruned ones too)
        unit = " dB" if self.budget.max_accuracy_drop is None else ""
        if miss is None:  # never counted as within: the budget could not be checked on this one
            t.status, t.reason = CandidateStatus.OVER, "its accuracy was not measured, so the budget cannot be checked"
        else:
            t.status = CandidateStatus.OVER if miss else CandidateStatus.WITHIN
            t.reason = f"misses the budget by {miss:.3g}{unit}" if miss else "within the budget"
            if miss and t.recipe.prune:
                t.reason = f"{self.prune_evidence()}; {t.reason}"

    def prune_evidence(self) -> str:
        """Why a pruned candidate could not be judged within the budget, and what would judge it."""
        labels = self.data.eval is not None and self.data.eval.labels is not None
        if self.budget.max_accuracy_drop is not None:
            return "pruning spends accuracy, measured against your model"
        if not labels and self.finetune is None:
            return "pruning changes the function: needs --eval with labels or --finetune to judge"
        return (
            "pruning changes the function, so its SQNR against your model stays low whatever its accuracy: judge it "
            "with --max-accuracy-drop on labelled --eval"
        )

    def _take(self, t: Tried, built: Built | str) -> None:
        self.done += 1
        self.step(f"built {t.recipe.name}")
        t.take(built)

    def close(self) -> None:
        self.queue.close()


def tune(
    model: str,
    *,
    calibration: DataPath | None,
    out: str | Path,
    inputs: Sequence[InputSpec] = (),
    eval: DataPath | None = None,  # noqa: A002
    finetune: DataPath | None = None,
    base_target: str | Path | Target = "xnnpack-int8",
    budget: Budget = Budget(),
    options: TuneOptions = TuneOptions(),
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> TuneResult:
    """Search recipes for ``model`` and write the winner as a normal package at ``out`` (with a ``tune`` section).

    Raises:
        UsageError: no calibration data, or a budget the data cannot check.
        BudgetError: no candidate meets the budget (the closest one and by how much are named); nothing is written.
    """
    from .. import kinds
    from .._noise import import_stack
    from ..errors import UsageError
    from ..fileops import check_output
    from ..targets import load_target
    from .search import check_request

    if kinds.for_tune(model) is not kinds.TENSOR:
        raise UsageError(
            f"{model} is a causal language model: its generation programs are tuned by a perplexity budget",
            "call edgekit.tune.tune_generation (the CLI routes a decoder there by itself)",
        )
    budget = check_request(calibration, eval, budget, options.objective)
    check_output(Path(out), force)
    base = load_target(base_target)
    from .. import kinds
    from ..pipeline.request import BuildRequest

    # a budget the base target carries that no candidate's build can check: refused before the data loads
    BuildRequest.check_budgets(kinds.for_build(base, None), base, lambda f: f"budget.{f} of {base_target}")
    import_stack()
    data = _load_data(model, inputs, calibration, eval, finetune, base)
    s = _Session(model, inputs, calibration, eval, finetune, base, budget, options, progress or (lambda *a: None), data)
    from ..pipeline.stages import build_scope

    try:
        # the mixed-precision scan prepares and converts the model dozens of times in this process
        with build_scope():
            return _search(s, Path(out), force)
    finally:
        s.close()


@dataclass(frozen=True)
class _Data:
    loaded: LoadedModel
    calibration: Dataset  # as many samples as the base target calibrates on
    eval: Dataset | None


def _load_data(
    model: str,
    inputs: Sequence[InputSpec],
    calibration: DataPath,
    eval_data: DataPath | None,
    finetune: DataPath | None,
    base: Target,
) -> _Data:
    """The model and every data set, checked against each other before any build starts (a wrong shape fails in
    seconds, not as one failed build per candidate); kept for mixed precision's simulation."""
    from ..data import resolve_data
    from ..models import load_model

    loaded = load_model(model, inputs)
    ex, tok = loaded.example_inputs, loaded.tokenizer
    resolve_data(finetune, ex, role="fine-tune", limit=8, tokenizer=tok)
    return _Data(
        loaded,
        resolve_data(calibration, ex, role="calibration", limit=base.quantize.calibration_samples, tokenizer=tok),
        resolve_data(eval_data, ex, role="eval", tokenizer=tok),
    )


def _search(s: _Session, out: Path, force: bool) -> TuneResult:
    from ..profile import profile
    from .search import decide, no_candidate_error, plan_precisions, prune_base, prune_recipes, rank_key

    recipes, skipped = plan_precisions(only=s.opts.precisions)
    s.build(recipes)
    _rescue(s)
    within = s.within()
    if within:
        best = prune_base(within, s.opts.objective)
        more, notes = prune_recipes(best.recipe, s.opts.prune_ratios, s.finetune is not None, _prunable(s.model.spec))
        s.notes += notes
        if more:
            s.build(more)
    within = s.within()
    records = skipped + [t.record() for t in s.tried]
    if not within:
        err = no_candidate_error(s.tried, s.budget)
        err.candidates = records  # the CLI shows the table before the error line
        raise err

    def remeasure(t: Tried) -> list[float]:
        s.step(f"re-measuring {t.recipe.name}")
        return list(
            profile(t.folder, runs=s.opts.runs, threads=s.opts.threads, warmup=10, warmup_seconds=0.1).samples_ms
        )

    chosen, why, p = decide(within[0], within[1] if len(within) > 1 else None, s.opts, remeasure)
    chosen.status, chosen.reason = CandidateStatus.CHOSEN, "see the decision"
    for t in within:
        if t is not chosen:
            t.reason = f"{s.opts.objective} {rank_key(t, s.opts.objective)[0]:.4g} vs {rank_key(chosen, s.opts.objective)[0]:.4g}"
    from .write import write_tuned

    return write_tuned(s, chosen, skipped, why, p, out, force)


def _rescue(s: _Session) -> None:
    """Quantized programs better by the objective than every one within the budget miss it. First their embedding tables stay fp32
    (one build each, where they quantized some); if none is within the budget then, the one that misses by least is
    given mixed precision (the fewest most sensitive layers in fp32)."""
    from .recipes import Recipe
    from .search import rank_key

    def score(t: Tried) -> float:
        return rank_key(t, s.opts.objective)[0]

    def over_and_faster() -> list[Tried]:  # "faster": better by the objective (p50, size or peak RSS)
        ok = [score(t) for t in s.tried if t.status == CandidateStatus.WITHIN and t.profile]
        bar = min(ok) if ok else float("inf")
        return [
            t
            for t in s.tried
            if t.status == CandidateStatus.OVER and t.profile and t.recipe.scheme.is_int8 and score(t) < bar
        ]

    tables = [t for t in over_and_faster() if t.manifest.quantize.embedding_tables and t.recipe.embeddings is None]
    if tables:
        s.build([Recipe(t.recipe.scheme, embeddings="none") for t in tables])
    candidates = [t for t in over_and_faster() if not t.recipe.fp32_layers]
    if candidates:  # still something faster than everything within the budget
        closest = min(candidates, key=lambda t: s.budget.fidelity_miss(t.drop, t.sqnr) or 0.0)
        _mixed(s, closest.recipe)


def _mixed(s: _Session, recipe: Recipe) -> bool:
    """``recipe`` misses the budget: find the fewest sensitive layers to keep in fp32 (in simulation), build that;
    whether the built program is within the budget."""
    from ..pipeline.export import export_model
    from ..pipeline.training import accuracy
    from ..targets import EmbeddingQuant
    from .recipes import Recipe, mixed_precision

    loaded, calib = s.data.loaded, s.data.calibration
    data = s.data.eval if s.data.eval is not None else calib
    reference = loaded.module
    tables = EmbeddingQuant(s.base.quantize.embeddings if recipe.embeddings is None else recipe.embeddings)
    if tables is not EmbeddingQuant.NONE:  # simulate what the build will do to the tables too (on a copy)
        from ..pipeline.quantize import quantize_embeddings

        loaded, _ = quantize_embeddings(loaded, tables)
    exported = export_model(loaded)
    if s.budget.max_accuracy_drop is not None:
        eager = accuracy(reference, data)
        meets = lambda fid: fid.accuracy is not None and eager - fid.accuracy <= s.budget.max_accuracy_drop  # noqa: E731
    else:
        meets = lambda fid: fid.sqnr_db >= s.budget.min_sqnr_db  # noqa: E731
    found = mixed_precision(
        exported,
        recipe.scheme,
        calib,
        data,
        meets,
        step=lambda what: s.step(what),
        reference=reference,
        records=s.store.calibration_records(),
    )
    worst = ", ".join(f"{n} ({db:.1f} dB)" for n, db in found.layers[:3])
    s.notes.append(f"most sensitive layers for {recipe.name} (output SQNR with only that layer quantized): {worst}")
    if found.keep is None:
        best = max((f.sqnr_db for _, f in found.tried), default=None)
        s.notes.append(
            f"mixed precision ({recipe.name}): keeping up to {len(found.tried)} layer(s) in fp32 did not meet "
            "the budget in simulation" + (f" (best output SQNR: {best:.1f} dB)" if best is not None else "")
        )
        return False
    (built,) = s.build([Recipe(recipe.scheme, found.keep, embeddings=recipe.embeddings)])
    return built.status == CandidateStatus.WITHIN


def _prunable(spec: str) -> tuple[bool, str]:
    if spec.startswith("hf:"):
        return False, "structured pruning skipped: hf: transformer models are not pruned by this edgekit"
    if spec.endswith(".pt2"):
        return False, "structured pruning skipped: a saved ExportedProgram has no nn.Module layers to prune"
    return True, ""
