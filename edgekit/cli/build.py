"""``edgekit build``: options parsed into a build request, the build run with progress, its summary or manifest shown."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from .._options import Finite, flag
from ..dynamic import DYNAMIC_DIM_HELP
from ..perplexity_protocol import MIN_CHUNKS
from .options import RATIO, emit_json, fidelity_budgets, multiple_of_32, parsed


@click.command()
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
    callback=parsed("parse_input_spec"),
    metavar="SHAPE[:DTYPE]",
    help="Example input, e.g. 1x3x224x224 or 1x128:int64; repeat for several inputs.",
)
@click.option(
    "--dynamic-batch",
    callback=parsed("parse_dynamic_batch"),
    metavar="MIN:MAX",
    help="Export the batch dimension as dynamic.",
)
@click.option(
    "--dynamic-dim",
    "dynamic_dims",
    multiple=True,
    callback=parsed("dynamic.parse_dynamic_dim"),
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
    "--eval-chunks",
    type=click.IntRange(MIN_CHUNKS),
    metavar="N",
    help="text-generation: chunks of min(512, the cache) tokens of the eval text that fidelity is scored on, as "
    "llama-perplexity --chunks.  [default: 4, more for a short cache, as the text allows]",
)
@click.option(
    "--group-size",
    type=click.IntRange(32),
    callback=lambda ctx, param, v: multiple_of_32(v),
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
@fidelity_budgets("text-generation", "fail")
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
    eval_chunks: int | None,
    group_size: int | None,
    max_ppl_increase: float | None,
    max_kld: float | None,
    min_top1: float | None,
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
    from .. import kinds
    from ..fileops import check_output
    from ..pipeline.request import BuildRequest, run_build
    from ..target_overrides import with_build_options
    from ..targets import load_target
    from . import render

    kind = kinds.for_build(load_target(target) if target is not None else None, task)
    base = load_target(target or kind.default_target)
    flags = {
        "max_ppl_increase_pct": max_ppl_increase,
        "max_kld": max_kld,
        "min_top1_pct": min_top1,
        "max_accuracy_drop": max_accuracy_drop,
    }
    named = {"max_ppl_increase_pct": "max_ppl_increase", "min_top1_pct": "min_top1"}  # budget field → its flag

    def spell(field: str) -> str:  # the flag the user typed, else the target file's key
        return (
            flag(named.get(field, field))
            if flags.get(field) is not None
            else f"budget.{field} of {target or base.name}"
        )

    # the budgets this kind cannot check, flags first (before an override's own checks, e.g. --max-accuracy-drop's)
    BuildRequest.check_budgets(
        kind, base.replace(**{f"budget__{k}": v for k, v in flags.items() if v is not None}), spell
    )
    tgt = with_build_options(
        base,
        has_eval=eval_data is not None,
        group_size=group_size,
        max_ppl_increase=max_ppl_increase,
        max_kld=max_kld,
        min_top1=min_top1,
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
    request = BuildRequest.of(
        model=model,
        out=out,
        target=tgt,
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
        reference_samples=reference_samples,
        reference_max_mb=reference_max_mb,
        explain=not no_explain,
        max_seq_len=max_seq_len,
        eval_chunks=eval_chunks,
    )
    renamed = {"eval": "eval_data", "explain": "no_explain"}  # request fields whose flag's parameter is named apart
    request.check_applies(kind, lambda field: flag(renamed.get(field, field)))  # before anything prints
    check_output(out, force)  # before the slow imports
    progress = render.StageProgress(quiet)
    if not quiet:
        render.console().print(f"[bold]edgekit build[/] {model} → {out} [dim](target {tgt.name})[/]")
    try:
        result = run_build(dataclasses.replace(request, progress=progress))
    finally:
        progress.close()
    if as_json:
        emit_json(result.manifest.to_dict())
    else:
        kinds.step(kinds.of_manifest(result.manifest), "render_build")(result)
