"""The ``edgekit`` command line: parses options, calls the library, shows results (through :mod:`edgekit.render`).

Outcomes are decided by the library, which raises :class:`~edgekit.errors.EdgekitError` subclasses that carry their
own exit code (0 success, 1 a failure of the work, 2 a usage error); :class:`_Group` turns them into that exit
code and one line, in one place. Commands import torch only when they need it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .._options import Finite, defaulted
from .._version import __version__
from ..dynamic import DYNAMIC_DIM_HELP
from ..errors import EdgekitError, first_line
from ..runner.protocol import SELECTABLE_ENGINES


class _Group(click.Group):
    """Every command runs inside this group's ``invoke``: errors become one line and their exit code here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgekitError as exc:
            if exc.exit_code == 2:
                raise click.UsageError(str(exc)) from None  # no context: click would print the usage lines first
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing was written") from None
        except click.UsageError as exc:  # click's own (an unknown option, a bad choice): one line too, with the hint
            if exc.ctx is None:
                raise
            hint = f"see `{exc.ctx.command_path} --help`"
            raise click.UsageError(f"{exc.format_message()} (hint: {hint})") from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still one line, traceback on request
            if os.environ.get("EDGEKIT_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first_line(exc)} (hint: rerun with "
                "EDGEKIT_DEBUG=1 for the traceback, and please report it)"
            ) from None


def _parsed(parser: str):
    """A click callback that runs a library parser (``models.parse_input_spec``, ...) and reports a bad value."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        import importlib

        module, _, name = parser.rpartition(".")
        fn = getattr(importlib.import_module(f"edgekit.{module or 'models'}"), name)
        try:
            return tuple(fn(v) for v in value) if isinstance(value, tuple) else (None if value is None else fn(value))
        except EdgekitError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, allow_nan=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """Package PyTorch models as verified ExecuTorch programs and measure what they cost on a CPU."""


RATIO = Finite(0, 1, max_open=True)


def _multiple_of_32(value: int | None) -> int | None:
    if value is not None and value % 32:
        raise click.BadParameter(f"{value} is not a multiple of 32 (XNNPACK's int4 kernels); try 32, 64 or 128")
    return value


@cli.command()
@click.argument("model")
@click.option(
    "--target",
    "-t",
    help="Built-in target name or a .toml path.  [default: xnnpack-fp32; xnnpack-llm-8da4w for --task text-generation]",
)
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    callback=_parsed("parse_input_spec"),
    metavar="SHAPE[:DTYPE]",
    help="Example input, e.g. 1x3x224x224 or 1x128:int64; repeat for several inputs.",
)
@click.option(
    "--dynamic-batch",
    callback=_parsed("parse_dynamic_batch"),
    metavar="MIN:MAX",
    help="Export the batch dimension as dynamic.",
)
@click.option(
    "--dynamic-dim",
    "dynamic_dims",
    multiple=True,
    callback=_parsed("dynamic.parse_dynamic_dim"),
    metavar="INPUTS:DIM:MIN:MAX",
    help=DYNAMIC_DIM_HELP,
)
@click.option("--calibration", "-c", type=click.Path(), help="Calibration data: .npz/.npy/.pt or a folder of them.")
@click.option(
    "--eval",
    "eval_data",
    type=click.Path(),
    help="Held-out data (inputs, optional labels) for verification and accuracy.",
)
@click.option(
    "--prune-channels",
    type=RATIO,
    metavar="RATIO",
    help="Structured pruning: fraction of channels to remove (overrides the target).",
)
@click.option(
    "--sparsity",
    type=RATIO,
    metavar="RATIO",
    help="Magnitude sparsity: fraction of weights to zero (smaller download, not faster).",
)
@click.option("--prune-ignore", multiple=True, metavar="LAYER", help="Layer name to keep whole; repeatable.")
@click.option("--prune-layer", multiple=True, metavar="LAYER=RATIO", help="Per-layer channel ratio; repeatable.")
@click.option("--prune-importance", type=click.Choice(["l1", "l2"]), help="Channel ranking for structured pruning.")
@click.option(
    "--prune-scope", type=click.Choice(["layer", "global"]), help="Same ratio per layer, or one global ranking."
)
@click.option("--prune-round-to", type=click.IntRange(1), metavar="N", help="Keep channel counts multiples of N.")
@click.option("--finetune", type=click.Path(), help="Labelled training data for recovery fine-tuning after pruning.")
@click.option(
    "--finetune-epochs", type=click.IntRange(0), metavar="N", help="Fine-tuning epochs (default 3 with --finetune)."
)
@click.option("--finetune-lr", type=Finite(0, min_open=True), metavar="LR", help="Fine-tuning learning rate.")
@click.option(
    "--max-accuracy-drop",
    type=Finite(0, 1),
    metavar="FRACTION",
    help="Fail when the program's top-1 accuracy is this much below the original model's (needs --eval).",
)
@click.option(
    "--hf-output",
    type=click.Choice(["pooled", "last_hidden_state", "logits"]),
    help="hf:PATH models: what the wrapper returns (default: logits for classifiers, else pooled).",
)
@click.option(
    "--quantize-embeddings",
    type=click.Choice(["none", "int8", "int4"]),
    help="Weight-only quantization of nn.Embedding tables (overrides the target's [quantize] embeddings).",
)
@click.option(
    "--task",
    type=click.Choice(["classify", "embed", "regress", "text-generation"]),
    help="What the first output is, for the verify figures (default: guessed from the output and the data); "
    "text-generation builds a generation program from a decoder (hf:DIR or gguf:FILE) with a KV cache.",
)
@click.option(
    "--max-seq-len",
    type=click.IntRange(8, 32768),
    metavar="N",
    help="text-generation: the KV cache's length, prompt and generated tokens together.  [default: 512, or the model's context if shorter]",
)
@click.option(
    "--group-size",
    type=click.IntRange(32),
    callback=lambda ctx, param, v: _multiple_of_32(v),
    metavar="N",
    help="int4 weights (8da4w) and int4 embedding tables: values sharing one scale (overrides the target).",
)
@click.option(
    "--max-ppl-increase",
    type=Finite(0, min_open=True),
    metavar="PCT",
    help="text-generation: fail when the program's perplexity on the eval text is this many percent above your "
    "model's.",
)
@click.option(
    "--out", "-o", type=click.Path(), required=True, help="Package folder to write (model.pte + manifest.json)."
)
@click.option(
    "--force", is_flag=True, help="Replace an existing package (never a file or a folder that is not a package)."
)
@click.option(
    "--reference-samples",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    metavar="N",
    help="Input sets stored with your model's answers (reference.npz): profile checks them first, here or on a "
    "device; 0 stores none.",
)
@click.option(
    "--reference-max-mb",
    type=Finite(0, min_open=True),
    default=8.0,
    show_default=True,
    metavar="MB",
    help="The most the reference vectors may take (sets are dropped to fit).",
)
@click.option(
    "--no-explain",
    is_flag=True,
    help="Do not record explain.json (module names, per-module fidelity, memory plan for `edgekit explain`): saves a "
    "copy of the weights in memory while lowering.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def build(
    model: str,
    target: str,
    inputs: tuple,
    dynamic_batch: Any,
    dynamic_dims: tuple,
    calibration: str | None,
    eval_data: str | None,
    prune_channels: float | None,
    sparsity: float | None,
    prune_ignore: tuple,
    prune_layer: tuple,
    prune_importance: str | None,
    prune_scope: str | None,
    prune_round_to: int | None,
    finetune: str | None,
    finetune_epochs: int | None,
    finetune_lr: float | None,
    max_accuracy_drop: float | None,
    hf_output: str | None,
    quantize_embeddings: str | None,
    task: str | None,
    max_seq_len: int | None,
    group_size: int | None,
    max_ppl_increase: float | None,
    out: str,
    force: bool,
    reference_samples: int,
    reference_max_mb: float,
    no_explain: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Build MODEL into a verified ExecuTorch package: load → prune → export → quantize → lower → verify → package.

    MODEL is package.module:factory, path/to/file.py:factory, a .pt2 saved with torch.export.save, or hf:FOLDER (a
    local Hugging Face model; --calibration/--eval may then be text files, one sentence a line). With --task
    text-generation (or an xnnpack-llm-* target), MODEL is a decoder language model, hf:FOLDER or gguf:FILE, and --eval
    a text file.

    \b
    Examples:
      edgekit build mypkg.nets:make_net -i 1x3x224x224 -t xnnpack-int8 -c calib.npz -o build/net
      edgekit build gguf:SmolLM2-135M-Instruct.Q4_1.gguf --task text-generation -t xnnpack-llm-8da4w -o build/lm
    """
    from ..fileops import check_output
    from ..pipeline.build import build as run_build
    from ..target_overrides import with_build_options
    from ..targets import GENERATION, load_target
    from . import render

    generation = task == GENERATION or (target is not None and load_target(target).task == GENERATION)
    tgt = with_build_options(
        load_target(target or ("xnnpack-llm-8da4w" if generation else "xnnpack-fp32")),
        has_eval=eval_data is not None,
        group_size=group_size,
        max_ppl_increase=max_ppl_increase,
        prune_layer=prune_layer,
        prune_ignore=prune_ignore,
        max_accuracy_drop=max_accuracy_drop,
        quantize_embeddings=quantize_embeddings,
        structured_ratio=prune_channels,
        sparsity=sparsity,
        importance=prune_importance,
        scope=prune_scope,
        round_to=prune_round_to,
    )
    check_output(out, force)  # before the slow imports
    progress = render.StageProgress(quiet)
    if not quiet:
        render.console().print(f"[bold]edgekit build[/] {model} → {out} [dim](target {tgt.name})[/]")
    try:
        result = run_build(
            model,
            tgt,
            out=out,
            inputs=inputs,
            calibration=calibration,
            eval=eval_data,
            dynamic_batch=dynamic_batch,
            dynamic_dims=dynamic_dims,
            finetune=finetune,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
            force=force,
            task=task,
            hf_output=hf_output,
            progress=progress,
            reference_samples=reference_samples,
            reference_max_mb=reference_max_mb,
            explain=not no_explain,
            max_seq_len=max_seq_len,
        )
    finally:
        progress.close()
    if as_json:
        _emit_json(result.manifest.to_dict())
    elif result.manifest.generation is not None:
        render.generation_summary(result)
    else:
        render.build_summary(result)


@cli.group()
def targets() -> None:
    """List and show build targets."""


@targets.command("list")
@click.option("--json", "as_json", is_flag=True)
def targets_list(as_json: bool) -> None:
    """List the built-in targets."""
    from ..targets import list_targets
    from . import render

    items = list_targets()
    _emit_json([t.to_dict() for t in items]) if as_json else render.targets(items)


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def targets_show(name: str, as_json: bool) -> None:
    """Show a target (built-in NAME or a .toml path) as TOML."""
    from ..targets import load_target

    t = load_target(name)
    _emit_json(t.to_dict()) if as_json else click.echo(f"# {t.source}\n" + t.to_toml(), nl=False)


@cli.command()
@click.option(
    "--out", "-o", type=click.Path(), default="build/demo", show_default=True, help="Folder for the demo's packages."
)
@click.option("--force", is_flag=True, help="Replace an earlier demo folder.")
@click.option(
    "--epochs", type=click.IntRange(1, 200), default=15, show_default=True, help="Training epochs for the digits CNN."
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def demo(out: str, force: bool, epochs: int, as_json: bool) -> None:
    """Train a small CNN on scikit-learn's digits, build fp32, int8 and pruned int8 programs, compare them."""
    from ..demo import run_demo
    from . import render

    con = render.console()
    result = run_demo(out, force=force, epochs=epochs, log=lambda msg: con.print(msg))
    _emit_json(result) if as_json else render.demo(result)


@cli.command()
@click.argument("program", required=False)
@click.option("--eager", metavar="MODEL_SPEC", help="Profile an eager PyTorch model instead (needs --input).")
@click.option(
    "--input",
    "-i",
    "input_specs",
    multiple=True,
    callback=_parsed("parse_input_spec"),
    metavar="SHAPE[:DTYPE]",
    help="Input spec for --eager, e.g. 1x3x224x224.",
)
@click.option("--inputs", "inputs_file", type=click.Path(), help="Real inputs (.npz/.pt) instead of random ones.")
@click.option(
    "--batch",
    type=click.IntRange(1),
    help="Batch size to run (programs built with --dynamic-batch; default: their largest).",
)
@click.option(
    "--engine",
    type=click.Choice(SELECTABLE_ENGINES),
    default="auto",
    show_default=True,
    help="native: the C++ runner (no Python in the measured process); python: the pybindings worker. auto: native "
    "where a compiler is, except for generation programs here (python: ExecuTorch's own llama:: kernels).",
)
@click.option(
    "--threads", "threads_text", metavar="N[,N...]", help="Threadpool size; a list sweeps (default: the target's)."
)
@click.option("--cpus", metavar="LIST", help="Pin the worker to these CPUs, e.g. 0,1.")
@click.option("--runs", type=click.IntRange(1), help="Timed runs (at least; default: the target's).")
@click.option("--warmup", type=click.IntRange(0), help="Warm-up runs (at least; default: the target's).")
@click.option(
    "--warmup-seconds", type=Finite(0), default=0.5, show_default=True, help="Warm up for at least this long."
)
@click.option("--min-seconds", type=Finite(0), help="Keep timing until at least this long has passed.")
@click.option("--max-seconds", type=Finite(0), default=60.0, show_default=True, help="Stop timing after this long.")
@click.option(
    "--timeout",
    type=Finite(0, min_open=True),
    default=300.0,
    show_default=True,
    help="Kill the worker after this many seconds.",
)
@click.option("--method", default="forward", show_default=True, help="Program method to run.")
@click.option("--ops", is_flag=True, help="Also record an ETDump and print the top operators by time.")
@click.option("--target", "-t", help="Target for defaults, budgets and the power model (default: the package's).")
@click.option(
    "--device", "-d", metavar="NAME|ssh://USER@HOST[:PORT]", help="Measure on this device over ssh instead of here."
)
@click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    envvar="EDGEKIT_DEVICES",
    help="Devices file (default ~/.config/edgekit/devices.toml).",
)
@click.option(
    "--save-outputs",
    type=click.Path(dir_okay=False),
    help="Save the last run's outputs (raw bytes) to compare devices.",
)
@click.option(
    "--no-check",
    is_flag=True,
    help="Do not run the package's reference inputs first (by default a program that answers them unlike your model "
    "fails the profile).",
)
@click.option(
    "--prompt-len",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Generation programs: prompt tokens prefilled in one call.",
)
@click.option(
    "--gen-len",
    type=click.IntRange(2),
    default=128,
    show_default=True,
    help="Generation programs: tokens generated greedily after the prompt.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result(s) as JSON.")
@click.option("--out", "out_file", type=click.Path(), help="Also save the JSON to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(
    program: str | None,
    eager: str | None,
    input_specs: tuple,
    inputs_file: str | None,
    batch: int | None,
    engine: str,
    threads_text: str | None,
    cpus: str | None,
    runs: int | None,
    warmup: int | None,
    warmup_seconds: float,
    min_seconds: float | None,
    max_seconds: float,
    timeout: float,
    method: str,
    ops: bool,
    target: str | None,
    device: str | None,
    devices_file: str | None,
    save_outputs: str | None,
    no_check: bool,
    prompt_len: int,
    gen_len: int,
    as_json: bool,
    out_file: str | None,
    quiet: bool,
) -> None:
    """Measure PROGRAM (a .pte or a package folder) in an isolated worker process. A generation package (built with
    --task text-generation) reports time to first token, prefill and decode tokens per second instead.

    \b
    Examples:
      edgekit profile build/net --runs 200 --threads 2
      edgekit profile build/net --threads 1,2 --ops --json
      edgekit profile --eager mypkg.nets:make_net --input 1x3x224x224
      edgekit profile build/net --device pi5 --threads 1,4
    """
    from ..errors import UsageError
    from ..fileops import write_json
    from ..profile.harness import ProfileOptions, parse_cpus, parse_threads
    from ..profile.harness import profile as run_profile
    from . import render

    if (program is None) == (eager is None):
        raise UsageError(
            "nothing to profile" if program is None else "give PROGRAM or --eager, not both",
            "pass a .pte / package folder, or --eager MODEL_SPEC --input SHAPE",
        )
    from ..profile.generation import is_generation_package

    if program is not None and is_generation_package(program):
        from ..profile.generation import profile_generation

        ignored = [
            opt
            for opt, given in (
                ("--input", bool(input_specs)),
                ("--inputs", inputs_file is not None),
                ("--batch", batch is not None),
                ("--ops", ops),
                ("--save-outputs", save_outputs is not None),
                ("--target", target is not None),
                ("--method", method != "forward"),
                ("--min-seconds", min_seconds is not None),
            )
            if given
        ]
        if ignored:
            raise UsageError(
                f"{', '.join(ignored)} do(es) not apply to a generation program",
                "drop them: it is profiled with --prompt-len / --gen-len / --runs / --threads / --engine / --device",
            )

        gen = []
        for threads in parse_threads(threads_text) if threads_text else [1]:
            if not quiet:
                render.console().print(f"[dim]generation profile, {threads} thread(s)…[/]")
            gen.append(
                profile_generation(
                    program,
                    prompt_len=prompt_len,
                    gen_len=gen_len,
                    runs=runs or 3,
                    warmup=1 if warmup is None else warmup,
                    threads=threads,
                    cpus=parse_cpus(cpus),
                    check=not no_check,
                    # a generation profile runs hundreds of steps: 30 min unless --timeout was given
                    timeout=1800.0 if defaulted("timeout") else timeout,
                    engine=engine,
                    device=device,
                    devices_file=devices_file,
                )
            )
        data = [r.to_dict() for r in gen]
        payload = data[0] if len(data) == 1 else {"schema_version": 1, "sweep": data}
        if out_file:
            write_json(out_file, payload)
        _emit_json(payload) if as_json else render.generation_report(gen)
        return
    results = []
    for threads in parse_threads(threads_text) if threads_text else [None]:
        opts = ProfileOptions(
            runs=runs,
            warmup=warmup,
            warmup_seconds=warmup_seconds,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            threads=threads,
            cpus=parse_cpus(cpus),
            timeout=timeout,
            method=method,
            engine=engine,
            ops=ops,
            batch=batch,
            save_outputs=save_outputs,
            check=not no_check,
        )
        bar = render.PhaseProgress(quiet, f"profile ({threads or 'default'} thread(s))")
        try:
            results.append(
                run_profile(
                    program,
                    eager=eager,
                    eager_inputs=input_specs,
                    inputs=inputs_file,
                    target=target,
                    options=opts,
                    progress=bar,
                    device=device,
                    devices_file=devices_file,
                )
            )
        finally:
            bar.close()
    data = [r.to_dict() for r in results]
    payload = data[0] if len(data) == 1 else {"schema_version": 1, "sweep": data}
    if out_file:
        write_json(out_file, payload)
    _emit_json(payload) if as_json else render.profile_report(results)
    for r in results:
        r.raise_for_budget()


@cli.command()
@click.argument("package", type=click.Path())
@click.option("--prompt", "-p", required=True, help="The text to continue (write a chat template into it yourself).")
@click.option("--max-new-tokens", "-n", type=click.IntRange(1), default=128, show_default=True)
@click.option(
    "--temperature", type=Finite(0), default=0.0, show_default=True, help="0: greedy; above: sampling (--seed)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="Only the generated text.")
def generate(
    package: str, prompt: str, max_new_tokens: int, temperature: float, seed: int, threads: int, quiet: bool
) -> None:
    """Continue PROMPT with a generation package, printing the text as it is produced, then its tokens per second.

    \b
    Example:
      edgekit generate build/lm --prompt "The capital of France is" -n 32
    """
    from ..profile.generation import generate as run_generate
    from . import render

    stats = run_generate(
        package, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, threads=threads
    )
    if not quiet:
        render.generate_stats(stats)


@cli.command("explain")
@click.argument("package", type=click.Path())
@click.option(
    "--runs", type=click.IntRange(5), default=50, show_default=True, help="Traced runs (ETDump) behind the times."
)
@click.option("--threads", type=click.IntRange(1), help="Threads (default: the package's target).")
@click.option(
    "--sort",
    "sort_by",
    type=click.Choice(["order", "time", "sqnr"]),
    default="order",
    show_default=True,
    help="Execution order, slowest first, or least faithful first.",
)
@click.option("--top", type=click.IntRange(1), metavar="N", help="Only the first N rows.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write a self-contained HTML page.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def explain_cmd(
    package: str,
    runs: int,
    threads: int | None,
    sort_by: str,
    top: int | None,
    html_out: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Explain PACKAGE in your model's module names: time per module, delegated or not, quantized or not, each
    module's fidelity, and the memory plan.

    \b
    Examples:
      edgekit explain build/net --sort time --top 10
      edgekit explain build/net --sort sqnr --html explain.html
    """
    from ..explain import explain, html_page, sort_rows
    from ..fileops import temp_name
    from . import render

    bar = render.PhaseProgress(quiet, "explain")
    try:
        ex = explain(package, runs=runs, threads=threads, progress=bar)
    finally:
        bar.close()
    ordered = sort_rows(ex, sort_by)[:top] if top else sort_rows(ex, sort_by)
    if html_out:
        out = Path(html_out)
        tmp = out.with_name(temp_name(out.name))
        tmp.write_text(html_page(ex, ordered), encoding="utf-8")
        os.replace(tmp, out)
    if as_json:
        _emit_json(ex.to_dict())
        return
    render.explanation(ex, ordered)
    if html_out:
        render.console(stderr=False).print(f"HTML: {html_out}")


from .bench import bench, cache  # noqa: E402
from .device import devices, runner  # noqa: E402
from .tune import tune  # noqa: E402

for _group in (bench, cache, devices, runner, tune):
    cli.add_command(_group)


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False))
def clean(folders: tuple) -> None:
    """Remove what killed edgekit processes left behind in FOLDERS (default: the current folder).

    Only temporary files and folders named .NAME.PID.TOKEN.tmp whose process no longer runs are removed.
    """
    from ..fileops import remove_stale_temps

    removed = [p for f in (folders or (".",)) for p in remove_stale_temps(f)]
    for p in removed:
        click.echo(f"removed {p}")
    click.echo(f"{len(removed)} leftover(s) removed")


def main() -> None:
    """Console-script entry point."""
    # Like other tools that take module:attr specs (uvicorn, flask), resolve them from the working directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    cli(prog_name="edgekit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
