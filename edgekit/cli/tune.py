"""``edgekit tune``: the command parses and shows; :func:`edgekit.tune.tune` searches and decides."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

import click

from .. import paths
from .._options import Finite, given_flags
from .options import emit_json, fidelity_budgets


def _ratios(value: str) -> tuple[float, ...]:
    if value.strip().lower() == "none":
        return ()
    try:
        ratios = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of ratios like 0.25,0.5") from None
    if not all(0 < r < 1 for r in ratios):
        raise click.BadParameter(f"{value!r}: every ratio must be between 0 and 1 (exclusive)")
    return ratios


def _precisions(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple:
    from ..targets import QuantScheme

    if not value:
        return ()
    names = {q.value: q for q in QuantScheme} | {"fp32": QuantScheme.NONE}
    out = []
    for v in (v.strip() for v in value.split(",")):
        if v not in names:
            raise click.BadParameter(
                f"{v!r} is not a precision; valid: fp32, {', '.join(q.value for q in QuantScheme if q is not QuantScheme.NONE)}"
            )
        out.append(names[v])
    return tuple(out)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value)
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{value!r} is not a duration like 90s, 30m or 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@click.command()
@click.argument("model")
@click.option("--input", "-i", "inputs", multiple=True, metavar="SHAPE[:DTYPE]", help="Example input, as for build.")
@click.option(
    "--calibration",
    "-c",
    type=click.Path(),
    help="Calibration data (required for a model: tuning on random ranges is meaningless; a decoder takes none).",
)
@click.option(
    "--eval",
    "eval_data",
    type=click.Path(),
    help="Held-out data; with labels, the accuracy budget is checked on it (a decoder: a UTF-8 .txt file).",
)
@click.option(
    "--finetune", type=click.Path(), help="Labelled training data: recovery fine-tuning for the prune candidates."
)
@click.option(
    "--target",
    "-t",
    "base_target",
    default="xnnpack-int8",
    show_default=True,
    help="Base target: its backend, threads, budgets and power model are kept; tune varies precision and pruning.",
)
@click.option(
    "--max-accuracy-drop",
    type=Finite(0, 1),
    metavar="FRACTION",
    help="Budget: top-1 accuracy drop against your model as handed in (needs labelled --eval).",
)
@click.option(
    "--min-sqnr",
    type=Finite(),
    metavar="DB",
    help="Budget: output SQNR against your model, eager fp32 as handed in (default 30 dB).",
)
@click.option(
    "--objective",
    type=click.Choice(["p50", "size", "peak_rss"]),
    default="p50",
    show_default=True,
    help="What the chosen program is the best at, within the budget.",
)
@click.option(
    "--threads", type=click.IntRange(1), default=1, show_default=True, help="Threads each candidate is measured at."
)
@click.option(
    "--precisions",
    callback=_precisions,
    metavar="P,P,...",
    help="Only these plain precisions (fp32, int8-static-per-channel, int8-static-per-tensor, "
    "int8-dynamic-per-channel, fp16); default: all (fp16 where the CPU has fp16 arithmetic).",
)
@click.option(
    "--prune-ratios",
    default="0.25,0.5,0.7",
    show_default=True,
    callback=lambda c, p, v: _ratios(v),
    metavar="R,R,...|none",
    help="Structured prune ratios to try on the best precision (none: no pruning).",
)
@click.option("--runs", type=click.IntRange(5), default=100, show_default=True, help="Timed runs per measurement.")
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Interleaved rounds in which the two best are re-measured before one is chosen.",
)
@click.option(
    "--time-budget", callback=_duration, metavar="DURATION", help="Stop starting builds after this long (e.g. 30m)."
)
@click.option(
    "--cache",
    default=str(paths.BUILD_CACHE),
    show_default=True,
    envvar="EDGEKIT_BUILD_CACHE",
    metavar="PATH|URL",
    help="Content-addressed build cache (a re-run resumes from it).",
)
@click.option(
    "--executor",
    metavar="local[:N]|inline|dask://HOST:PORT|tls://HOST:PORT",
    envvar="EDGEKIT_EXECUTOR",
    help="Where builds run (inline: in this process, no worker start-up: quickest for small models).",
)
@click.option(
    "--max-ppl-increase",
    type=Finite(0),
    metavar="PCT",
    help="Decoders: budget on the program's perplexity over your model's, in percent (default 50).",
)
@fidelity_budgets("Decoders", "a candidate misses the budget")
@click.option(
    "--linears", default="8da4w,int8", show_default=True, metavar="P,P", help="Decoders: linear precisions to try."
)
@click.option(
    "--group-sizes",
    default="32,64,128",
    show_default=True,
    metavar="G,G,...",
    help="Decoders: int4 group sizes to try (multiples of 32).",
)
@click.option(
    "--embeddings",
    default="int4,int8",
    show_default=True,
    metavar="P,P",
    help="Decoders: embedding table precisions to try.",
)
@click.option("--max-seq-len", type=click.IntRange(8, 32768), help="Decoders: the programs' KV cache (as for build).")
@click.option("--prompt-len", type=click.IntRange(1), default=128, show_default=True, help="Decoders: prefill tokens.")
@click.option("--gen-len", type=click.IntRange(2), default=128, show_default=True, help="Decoders: decode steps.")
@click.option("--out", "-o", type=click.Path(), required=True, help="Package folder for the chosen program.")
@click.option("--force", is_flag=True, help="Replace an existing package.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the chosen package's manifest (with its tune section) as JSON."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def tune(
    model: str,
    inputs: tuple,
    calibration: str | None,
    eval_data: str | None,
    finetune: str | None,
    base_target: str,
    max_accuracy_drop: float | None,
    min_sqnr: float | None,
    objective: str,
    threads: int,
    precisions: tuple,
    prune_ratios: tuple,
    runs: int,
    rounds: int,
    time_budget: float | None,
    cache: str,
    executor: str | None,
    max_ppl_increase: float | None,
    max_kld: float | None,
    min_top1: float | None,
    linears: str,
    group_sizes: str,
    embeddings: str,
    max_seq_len: int | None,
    prompt_len: int,
    gen_len: int,
    out: str,
    force: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Search recipes for MODEL and keep the fastest program within the accuracy budget.

    Candidates: fp32, int8 per-channel, int8 per-tensor, int8 dynamic, fp16 (only on a CPU with fp16 arithmetic); mixed precision (the most sensitive layers
    kept in fp32) when static int8 misses the budget; structured pruning of the best precision. Each is built
    (cached), verified and profiled with the native runner; the two best are re-measured in interleaved rounds and
    the faster wins only when Mann-Whitney says so at alpha 0.01 (else the smaller program). OUT is a normal package
    with a tune section in its manifest and tune.html (Pareto plot).

    A decoder (hf:DIR or gguf:FILE of a causal LM) is tuned as a generation program instead: int4 (8da4w) linears at
    each --group-sizes and int8 linears, each with an int4 or int8 embedding table; the fastest decode within
    the budget — --max-ppl-increase, and --max-kld / --min-top1 if given: llama-perplexity's figures over --eval text,
    against your model — wins, the smaller program on a tie.

    \b
    Example:
      edgekit tune mypkg.nets:make_net -i 1x3x224x224 -c calib.npz --eval test.npz --max-accuracy-drop 0.01 -o build/best
      edgekit tune gguf:SmolLM2.gguf --eval heldout.txt --max-ppl-increase 40 -o build/llm
    """
    from .. import kinds

    values = locals()  # (a comprehension has locals of its own)
    args = TuneArgs(**{f.name: values[f.name] for f in dataclasses.fields(TuneArgs)})
    kinds.step(kinds.for_tune(model), "tune_command")(args)


@dataclass(frozen=True)
class TuneArgs:
    """What ``edgekit tune`` was given, for the kind of program it searches (:mod:`edgekit.kinds`)."""

    model: str
    inputs: tuple[str, ...]
    calibration: str | None
    eval_data: str | None
    finetune: str | None
    base_target: str
    max_accuracy_drop: float | None
    min_sqnr: float | None
    objective: str
    threads: int
    precisions: tuple[str, ...]
    prune_ratios: tuple[float, ...]
    runs: int
    rounds: int
    time_budget: float | None
    cache: str
    executor: str | None
    max_ppl_increase: float | None
    max_kld: float | None
    min_top1: float | None
    linears: str
    group_sizes: str
    embeddings: str
    max_seq_len: int | None
    prompt_len: int
    gen_len: int
    out: str
    force: bool
    as_json: bool
    quiet: bool


#: the options of a generation program's search, and of a model's
GENERATION_ONLY = (
    "max_ppl_increase",
    "max_kld",
    "min_top1",
    "linears",
    "group_sizes",
    "embeddings",
    "max_seq_len",
    "prompt_len",
    "gen_len",
)
MODEL_ONLY = (
    "inputs", "calibration", "finetune", "base_target", "max_accuracy_drop", "min_sqnr", "objective", "precisions",
    "prune_ratios", "runs", "time_budget",
)  # fmt: skip


def tune_tensor(a: TuneArgs) -> None:
    """The tensor kind's ``edgekit tune``: recipes × precisions × prune ratios within the accuracy budget."""
    wrong = given_flags(GENERATION_ONLY)
    if wrong:
        raise click.UsageError(f"{', '.join(wrong)} apply(ies) to decoders (hf:/gguf: causal language models) only")
    from ..models import parse_input_spec
    from ..tune.run import Budget, TuneOptions
    from ..tune.run import tune as run_tune

    specs = [parse_input_spec(s) for s in a.inputs]
    opts = TuneOptions(
        objective=a.objective,
        threads=a.threads,
        runs=a.runs,
        rounds=a.rounds,
        time_budget_s=a.time_budget,
        cache=a.cache,
        executor=a.executor,
        prune_ratios=a.prune_ratios,
        precisions=a.precisions,
    )
    _search_and_show(
        lambda bar: run_tune(
            a.model,
            calibration=a.calibration,
            out=a.out,
            inputs=specs,
            eval=a.eval_data,
            finetune=a.finetune,
            base_target=a.base_target,
            budget=Budget(max_accuracy_drop=a.max_accuracy_drop, min_sqnr_db=a.min_sqnr),
            options=opts,
            force=a.force,
            progress=bar,
        ),
        a.quiet,
        a.as_json,
    )


def tune_generation_model(a: TuneArgs) -> None:
    """The generation kind's ``edgekit tune``: the fastest decode within the fidelity budget."""
    wrong = given_flags(MODEL_ONLY)
    if wrong:
        raise click.UsageError(
            f"{', '.join(wrong)} do(es) not apply to a decoder: tune searches its generation programs by "
            "--max-ppl-increase, --max-kld, --min-top1, --linears, --group-sizes and --embeddings"
        )
    from ..tune.gen_recipes import DEFAULT_MAX_PPL_INCREASE
    from ..tune.generation import tune_generation

    _search_and_show(
        lambda bar: tune_generation(
            a.model,
            out=a.out,
            eval=a.eval_data,
            max_ppl_increase=DEFAULT_MAX_PPL_INCREASE if a.max_ppl_increase is None else a.max_ppl_increase,
            max_kld=a.max_kld,
            min_top1=a.min_top1,
            linears=_list(a.linears, "--linears"),
            group_sizes=_list(a.group_sizes, "--group-sizes", int),
            embeddings=_list(a.embeddings, "--embeddings"),
            max_seq_len=a.max_seq_len,
            prompt_len=a.prompt_len,
            gen_len=a.gen_len,
            rounds=a.rounds,
            threads=a.threads,
            cache=a.cache,
            executor=a.executor,
            force=a.force,
            progress=bar,
        ),
        a.quiet,
        a.as_json,
    )


def _search_and_show(search: Callable[[Any], Any], quiet: bool, as_json: bool) -> None:
    """Run ``search(progress)`` under a progress bar; show the candidates (on a budget miss too) or the JSON."""
    from ..errors import BudgetError
    from . import render

    bar = render.TuneProgress(quiet)
    try:
        result = search(bar)
    except BudgetError as exc:
        bar.close()
        if getattr(exc, "candidates", None):
            render.tune_table(exc.candidates, None)
        raise
    finally:
        bar.close()
    if as_json:
        emit_json(result.manifest.to_dict())
        return
    render.tune_table(result.manifest.tune.candidates, result)


def _list(value: str, option: str, cast: type = str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list", param_hint=option) from None
