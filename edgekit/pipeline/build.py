"""``build()``: model spec → load → prune → export → quantize → lower → verify → package.

``build`` is a sequence of named steps over a small :class:`~edgekit.pipeline.state.BuildState`; each step reads what earlier steps put
there and adds its own result. The manifest is assembled once, at the end, from those results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import kinds
from .._noise import import_stack
from ..data import CALIBRATION_SEED, check_data_paths, random_dataset, resolve_data
from ..dynamic import DynamicDim, batch_dim
from ..errors import ExportError, PruneError, UsageError
from ..fileops import check_output
from ..manifest import PruneSection, QuantizeSection, SizeComparison
from ..models import DynamicBatch, InputSpec, LoadedModel, load_model
from ..targets import Backend, EmbeddingQuant, QuantScheme, Target
from .lower import deflate_size
from .stages import SilentRunner, Stage, StageEvent, StageRunner, build_scope
from .state import BuildResult, BuildState
from .tensor_verify import verify_tensor_program

if TYPE_CHECKING:
    from .export import ExportResult
    from .request import BuildRequest, DataSource, ModelSource

DEFAULT_FINETUNE_EPOCHS = 3

FP16_NOTE = "cast to float16 before export: weights and activations fp16, inputs and outputs float32"


def build(
    model: ModelSource,
    target: str | Path | Target | None = None,
    *,
    out: str | Path,
    inputs: Sequence[InputSpec] = (),
    calibration: DataSource = None,
    eval: DataSource = None,  # noqa: A002 - mirrors the CLI's --eval
    dynamic_batch: DynamicBatch | None = None,
    dynamic_dims: Sequence[DynamicDim] = (),
    finetune: DataSource = None,
    finetune_epochs: int | None = None,
    finetune_lr: float | None = None,
    force: bool = False,
    verify_samples: int = 32,
    seed: int = 0,
    task: str | None = None,
    hf_output: str | None = None,
    progress: Callable[[StageEvent], None] | None = None,
    calibration_records: object | None = None,
    reference_samples: int = 4,
    reference_max_mb: float = 8.0,
    explain: bool = True,
    max_seq_len: int | None = None,
    eval_chunks: int | None = None,
) -> BuildResult:
    """Build a verified ExecuTorch package from a PyTorch model.

    Args:
        model: a model spec (``pkg.mod:factory``, ``file.py:factory``, ``model.pt2``), an ``nn.Module``
            (with ``inputs``) or a :class:`~edgekit.models.LoadedModel`.
        target: a built-in target name, a TOML path, or a :class:`~edgekit.targets.Target` (default: xnnpack-fp32, or
            xnnpack-llm-8da4w with ``task="text-generation"``).
        out: the package folder to create (``model.pte`` + ``manifest.json``).
        inputs: input specs; override the factory's example inputs.
        calibration: calibration data (path, folder, callable or Dataset) for static quantization. Without
            it, random inputs are used, a warning is returned, and the manifest says ``calibration: random``.
        eval: held-out data for verification; with labels, accuracy of eager vs program is reported.
        dynamic_batch: export the batch dimension as dynamic within these bounds.
        dynamic_dims: more dynamic dimensions (:mod:`edgekit.dynamic`: ``input_ids,attention_mask:1:8:128``); the
            program is verified at each one's bounds and the manifest records the ranges it accepts.
        finetune: labelled training data for recovery fine-tuning after pruning (cross-entropy, Adam).
        finetune_epochs, finetune_lr: override the target's ``[prune]`` values (3 epochs when data is
            given and the target says 0).
        force: replace an existing package at ``out`` (never a file or a folder that is not a package).
        verify_samples: how many held-out samples to verify on when ``eval`` is not given.
        task: what the model's first output is (``classify``, ``embed``, ``regress``), so verification reports the
            figures that fit it; guessed from the output and the data when None.
        hf_output: for ``hf:PATH`` models, what the wrapper returns: ``pooled``, ``last_hidden_state`` or ``logits``.
        progress: called with a :class:`~edgekit.pipeline.stages.StageEvent` at each stage's start and end.
        calibration_records: where calibration records are kept (``get(key)``/``put(key, states)``: a build cache's
            :class:`~edgekit.builds.CalibrationRecords`, or :class:`~edgekit.pipeline.calibration.MemoryRecords`): a
            static int8 calibration of the same traced model on the same data stored there earlier is loaded instead of
            run again (:mod:`edgekit.pipeline.calibration`).
        reference_samples: input sets stored with the user's model's outputs in ``reference.npz``
            (:mod:`edgekit.reference`), so a profile here or on a device checks the answers first; 0 stores none.
        reference_max_mb: the most those may take (sets are dropped to fit).
        explain: record what ``edgekit explain`` needs (``explain.json``: the program's instructions in the model's
            module names, per-module fidelity, the memory plan); costs a copy of the weights in memory while lowering.
        max_seq_len: generation programs (``task="text-generation"``, or a target with that task): the KV cache's
            length, prompt and generated tokens together (default 512, or the model's context if shorter).
        eval_chunks: generation programs: how many chunks of ``min(512, max_seq_len)`` tokens of the eval text
            llama.cpp's protocol scores (``llama-perplexity --chunks``; at least 4; default: 4, or more for a short
            cache, as the text allows).

    Returns:
        A :class:`BuildResult`.

    Raises:
        EdgekitError: a subclass naming the failing stage's problem; nothing is left at ``out``.
        BudgetError: the program exceeds the target's size or accuracy budget (nothing is written).

    Example:
        >>> result = build("mypkg.nets:make_net", "xnnpack-int8", calibration="calib.npz", out="build/net")
        >>> result.manifest.verify.sqnr_db
    """
    options = dict(locals())  # every parameter is a BuildRequest field of the same name
    from .request import BuildRequest, run_build

    return run_build(BuildRequest.of(**options))


def build_tensor(request: BuildRequest) -> BuildResult:
    """The tensor kind's build (:mod:`edgekit.kinds`): a model's forward as one program, verified against the model."""
    r = request
    t_start = time.perf_counter()
    if not isinstance(r.reference_samples, int) or isinstance(r.reference_samples, bool) or r.reference_samples < 0:
        raise UsageError(
            f"reference_samples must be an integer >= 0, got {r.reference_samples!r}", "e.g. 4, or 0 for none"
        )
    st = BuildState(
        r.resolved_target,
        Path(r.out),
        StageRunner(r.progress),
        records=r.calibration_records,
        reference_samples=r.reference_samples,
        reference_max_mb=r.reference_max_mb,
        explain=r.explain,
    )
    check_output(st.out, r.force)  # a bad OUT fails in a second, not after the build
    check_data_paths(calibration=r.calibration, eval=r.eval, finetune=r.finetune)  # and a mistyped data path
    import_stack()
    dims = ([batch_dim(r.dynamic_batch.min, r.dynamic_batch.max)] if r.dynamic_batch else []) + list(r.dynamic_dims)
    with build_scope():
        _load(st, r.model, r.inputs, dims, (r.calibration, r.eval, r.finetune), r.seed, r.hf_output)
        _prune(st, r.finetune_epochs, r.finetune_lr, r.seed)
        st.exported = _export(st, st.eager, st.stages)
        st.final, st.quantize = _quantize(st, st.exported, r.calibration is None, st.stages)
        _lower(st)
        verify_tensor_program(st, r.verify_samples, r.task)
        from .package import write_package

        return st.stages.run(Stage.PACKAGE, lambda: write_package(st, r.force, t_start), str(st.out))


# ------------------------------------------------------------------------------------------------ steps
def _load(
    st: BuildState,
    model: ModelSource,
    inputs: Sequence[InputSpec],
    dims: list[DynamicDim],
    data: tuple[DataSource, DataSource, DataSource],
    seed: int,
    hf_output: str | None,
) -> None:
    """The model, its dynamic dimensions and every data set, checked against the model before any slow work."""
    from dataclasses import replace

    from ..dynamic import export_examples, forward_names, resolve

    calibration, eval_data, finetune = data
    loaded = st.stages.run(
        Stage.LOAD,
        lambda: load_model(model, inputs, seed=seed, hf_output=hf_output),
        model if isinstance(model, str) else "",
    )
    other = kinds.for_tune(model) if isinstance(model, str) else kinds.TENSOR  # the tensor kind's own build
    if other is not kinds.TENSOR:
        st.warnings.append(f"{model} is built here as one forward pass; {other.model_note}")
    module = loaded.exported.module() if loaded.exported is not None else loaded.module
    st.dims = resolve(dims, forward_names(module, len(loaded.example_inputs)), loaded.example_inputs)
    # the examples (and so every data set) at a size inside each range: what export traces and verify compares
    st.loaded = replace(loaded, example_inputs=export_examples(loaded.example_inputs, st.dims)) if st.dims else loaded
    st.eager = st.loaded
    examples, tok = st.loaded.example_inputs, st.loaded.tokenizer
    tgt = st.target
    st.eval_ds = resolve_data(eval_data, examples, role="eval", tokenizer=tok)
    if tgt.quantize.scheme.is_int8:
        st.calib_ds = resolve_data(
            calibration, examples, role="calibration", limit=tgt.quantize.calibration_samples, tokenizer=tok
        )
    st.finetune_ds = resolve_data(finetune, examples, role="fine-tune", tokenizer=tok)
    if tgt.budget.max_accuracy_drop is not None and (st.eval_ds is None or st.eval_ds.labels is None):
        st.warnings.append(
            f"budget.max_accuracy_drop = {tgt.budget.max_accuracy_drop} is not checked: "
            "pass --eval with labelled data to check it"
        )


def _prune(st: BuildState, finetune_epochs: int | None, finetune_lr: float | None, seed: int) -> None:
    """Prune the eager module (torch-pruning works on nn.Modules), so the smaller model is what gets exported."""
    cfg = st.target.prune
    if not cfg.active:
        st.stages.skip(Stage.PRUNE, st.prune.reason or "")
        return
    from .prune import prune_detail, prune_model

    loaded = st.loaded
    if loaded.exported is not None:
        raise PruneError(
            f"{loaded.spec} is a saved ExportedProgram: a flat graph without the nn.Module layers "
            "that pruning removes channels from",
            "build from the model's factory (package.module:factory or file.py:factory) to prune it",
        )
    epochs = cfg.finetune_epochs if finetune_epochs is None else finetune_epochs
    if st.finetune_ds is not None and epochs == 0:
        epochs = DEFAULT_FINETUNE_EPOCHS
    lr = cfg.finetune_lr if finetune_lr is None else finetune_lr
    if st.finetune_ds is None and cfg.structured_ratio > 0:
        st.warnings.append(
            "structured pruning without --finetune data: accuracy can collapse (docs/decisions/005: "
            "a digits CNN fell from 99.4% to 24% at 50%); pass --finetune with labelled training data"
        )
    res = st.stages.run(
        Stage.PRUNE,
        lambda: prune_model(
            loaded.module,
            loaded.example_inputs,
            cfg,
            finetune=st.finetune_ds,
            finetune_epochs=epochs,
            finetune_lr=lr,
            seed=seed,
        ),
        prune_detail(cfg),
    )
    st.prune = PruneSection.from_dict(res.info)
    st.eager = LoadedModel(loaded.spec, res.module, loaded.example_inputs)
    if cfg.sparsity > 0:
        st.dense_twin = LoadedModel(loaded.spec, res.dense_module, loaded.example_inputs)


def _export(st: BuildState, model: LoadedModel, stages: StageRunner) -> ExportResult:
    """Export; embedding tables are quantized on the eager module first (torchao works on nn.Modules), a copy."""
    from .export import export_model

    embeddings = st.target.quantize.embeddings
    if st.target.quantize.scheme is QuantScheme.FP16:  # cast before tracing (the graph would bake fp32 dtypes in)
        from .quantize import to_fp16

        model = to_fp16(model)
    if embeddings is not EmbeddingQuant.NONE:
        from .quantize import quantize_embeddings

        model, st.embedding_tables = quantize_embeddings(model, embeddings)
        if model.exported is not None and not isinstance(stages, SilentRunner):
            st.warnings.append(
                f"quantize.embeddings = {embeddings.value} does not apply to a saved ExportedProgram (its "
                "tables are graph constants): build from the model's factory to quantize them"
            )
    try:
        exported = stages.run(Stage.EXPORT, lambda: export_model(model, st.dims))
    except ExportError as exc:
        if st.embedding_tables and "IntxUnpacked" in exc.message:
            raise ExportError(
                exc.message,
                "the model uses an nn.Embedding's weight other than by lookup (indexing or "
                "slicing .weight), which int8 tables do not support: build with --quantize-embeddings "
                "none, or look the rows up by calling the embedding",
            ) from exc
        raise
    if exported.fallback_reason and not isinstance(stages, SilentRunner):
        st.warnings.append(
            f"non-strict torch.export failed ({exported.fallback_reason}); used strict tracing (TorchDynamo)"
        )
    return exported


def _quantize(
    st: BuildState, exported: ExportResult, random_calibration: bool, stages: StageRunner
) -> tuple[ExportResult, QuantizeSection]:
    """(what to lower, the manifest's quantize section)."""
    scheme = st.target.quantize.scheme
    embeddings = {"embeddings": st.target.quantize.embeddings.value, "embedding_tables": list(st.embedding_tables)}
    if scheme is QuantScheme.NONE:
        stages.skip(
            Stage.QUANTIZE,
            "target asks for fp32" + (" (embedding tables quantized at export)" if st.embedding_tables else ""),
        )
        return exported, QuantizeSection(scheme=scheme.value, applied=False, **embeddings)
    if scheme is QuantScheme.FP16:
        stages.skip(Stage.QUANTIZE, "fp16: the model was cast to float16 before export (no calibration)")
        return exported, QuantizeSection(scheme=scheme.value, applied=True, quantizer=FP16_NOTE, **embeddings)
    from .quantize import quantize_program

    calib = st.calib_ds
    if calib is None:
        calib = random_dataset(
            exported.example_inputs,
            st.target.quantize.calibration_samples,
            seed=CALIBRATION_SEED,
            source="random",
            tokenizer=st.loaded.tokenizer,
        )
        if scheme.needs_calibration and not isinstance(stages, SilentRunner):
            st.warnings.append(
                "no calibration data given: calibrated int8 ranges on random inputs, so accuracy on real "
                "data may suffer; pass --calibration with a few dozen real samples"
            )
    keep = st.target.quantize.fp32_layers
    records = st.records if st.calib_ds is not None else None  # random calibration data is not worth a record
    res = stages.run(
        Stage.QUANTIZE,
        lambda: quantize_program(exported, scheme, calib, keep, records, st.target.backend),
        scheme.value + (f", {len(keep)} layer(s) kept in fp32" if keep else ""),
    )
    info = {
        **res.info,
        **embeddings,
        "applied": True,
        "calibration": "random" if random_calibration else res.info["calibration"],
    }
    if not isinstance(stages, SilentRunner):  # the program's own quantization (not the dense twin's)
        st.simulated = res.simulated
    return res.exported, QuantizeSection.from_dict(info)


def _lower(st: BuildState) -> None:
    """Lower to a program; with sparsity, also lower the dense twin to show what the zeros save."""
    from .lower import lower_program

    backend = st.target.backend
    fuse = bool(st.embedding_tables)
    st.lowered = st.stages.run(
        Stage.LOWER,
        lambda: lower_program(st.final.program, backend, fuse_embeddings=fuse, explain=st.explain),
        backend.value,
    )
    if st.lowered.explain_error:
        st.warnings.append(f"edgekit explain will lack module names for this program: {st.lowered.explain_error}")
    if backend is Backend.XNNPACK and st.lowered.delegation["delegated_partitions"] == 0:
        st.warnings.append("XNNPACK took no part of the graph: everything runs on portable kernels")
    st.deflated = deflate_size(st.lowered.pte)
    if st.dense_twin is None:
        return

    def dense_sizes() -> dict:
        quiet = SilentRunner()
        twin, _ = _quantize(st, _export(st, st.dense_twin, quiet), st.calib_ds is None, quiet)
        pte = lower_program(twin.program, backend, fuse_embeddings=fuse).pte
        return {"size_bytes": len(pte), "deflate_bytes": deflate_size(pte)}

    st.size_comparison = SizeComparison(
        without_sparsity=st.stages.run(Stage.LOWER, dense_sizes, "the dense twin, for the size comparison"),
        with_sparsity={"size_bytes": len(st.lowered.pte), "deflate_bytes": st.deflated},
        note="sparsity shrinks the compressed download, not the .pte or the latency",
    )
