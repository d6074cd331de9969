"""``edgekit tune``: the command parses and shows; :func:`edgekit.tune.tune` searches and decides."""

from __future__ import annotations

import re

import click

from .. import paths
from .._options import Finite


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
    help="Calibration data (required: tuning on random ranges is meaningless).",
)
@click.option(
    "--eval", "eval_data", type=click.Path(), help="Held-out data; with labels, the accuracy budget is checked on it."
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
@click.option("--objective", type=click.Choice(["p50", "size", "peak_rss"]), default="p50", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
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
    time_budget: float | None,
    cache: str,
    executor: str | None,
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

    \b
    Example:
      edgekit tune mypkg.nets:make_net -i 1x3x224x224 -c calib.npz --eval test.npz --max-accuracy-drop 0.01 -o build/best
    """
    from ..errors import BudgetError
    from ..models import parse_input_spec
    from ..tune.run import Budget, TuneOptions
    from ..tune.run import tune as run_tune
    from . import render

    specs = [parse_input_spec(s) for s in inputs]
    opts = TuneOptions(
        objective=objective,
        threads=threads,
        runs=runs,
        time_budget_s=time_budget,
        cache=cache,
        executor=executor,
        prune_ratios=prune_ratios,
        precisions=precisions,
    )
    bar = render.TuneProgress(quiet)
    try:
        result = run_tune(
            model,
            calibration=calibration,
            out=out,
            inputs=specs,
            eval=eval_data,
            finetune=finetune,
            base_target=base_target,
            budget=Budget(max_accuracy_drop=max_accuracy_drop, min_sqnr_db=min_sqnr),
            options=opts,
            force=force,
            progress=bar,
        )
    except BudgetError as exc:
        bar.close()
        if getattr(exc, "candidates", None):
            render.tune_table(exc.candidates, None)
        raise
    finally:
        bar.close()
    if as_json:
        import json

        click.echo(json.dumps(result.manifest.to_dict(), indent=2))
        return
    render.tune_table(result.manifest.tune.candidates, result)
