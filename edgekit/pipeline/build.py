"""``build()``: model spec → export → prune → quantize → lower → verify → package."""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from .._noise import import_stack, quiet
from ..data import random_dataset, resolve_data
from ..errors import BudgetError, PruneError
from ..models import DynamicBatch, InputSpec, LoadedModel, load_model
from ..program import inspect_program
from ..targets import Backend, QuantScheme, Target, load_target
from .package import MANIFEST_NAME, MANIFEST_SCHEMA_VERSION, PTE_NAME, check_output, staged_output, write_json

STAGES = ("load", "prune", "export", "quantize", "lower", "compare", "verify", "package")
DEFAULT_FINETUNE_EPOCHS = 3

#: Seeds keep random data reproducible and make sure verification never reuses calibration samples.
CALIBRATION_SEED = 1
VERIFY_SEED = 2


@dataclass(frozen=True)
class StageEvent:
    """A progress event: ``state`` is ``start``, ``done`` or ``skip``."""

    stage: str
    state: str
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` produced: the package folder, its program and its manifest."""

    out_dir: Path
    pte_path: Path
    manifest: dict
    warnings: tuple[str, ...] = ()


def versions() -> dict:
    import executorch.version
    import torch

    try:
        import torchao

        tao = torchao.__version__
    except Exception:  # pragma: no cover - torchao always comes with executorch here
        tao = None
    return {"edgekit": __version__, "torch": torch.__version__, "executorch": executorch.version.__version__,
            "torchao": tao, "python": platform.python_version(), "platform": platform.platform()}


def _tensor_list(names: Sequence[str], tensors: Sequence[Any]) -> list[dict]:
    return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for n, t in zip(names, tensors)]


def _io_names(program: Any) -> tuple[list[str], list[str]]:
    sig = program.graph_signature
    return list(sig.user_inputs), list(sig.user_outputs)


class _Stages:
    """Runs stages quietly, times them and reports progress."""

    def __init__(self, progress: Callable[[StageEvent], None] | None):
        self.progress = progress or (lambda e: None)
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any], detail: str = "") -> Any:
        self.progress(StageEvent(name, "start", detail=detail))
        t0 = time.perf_counter()
        with quiet():
            value = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        self.progress(StageEvent(name, "done", self.seconds[name], detail))
        return value

    def skip(self, name: str, reason: str) -> None:
        self.seconds[name] = 0.0
        self.progress(StageEvent(name, "skip", detail=reason))


def build(
    model: Any,
    target: str | Path | Target = "xnnpack-fp32",
    *,
    out: str | Path,
    inputs: Sequence[InputSpec] = (),
    calibration: Any = None,
    eval: Any = None,  # noqa: A002 - mirrors the CLI's --eval
    dynamic_batch: DynamicBatch | None = None,
    finetune: Any = None,
    finetune_epochs: int | None = None,
    finetune_lr: float | None = None,
    force: bool = False,
    verify_samples: int = 32,
    seed: int = 0,
    progress: Callable[[StageEvent], None] | None = None,
) -> BuildResult:
    """Build a verified ExecuTorch package from a PyTorch model.

    Args:
        model: a model spec (``pkg.mod:factory``, ``file.py:factory``, ``model.pt2``), an ``nn.Module``
            (with ``inputs``) or a :class:`~edgekit.models.LoadedModel`.
        target: a built-in target name, a TOML path, or a :class:`~edgekit.targets.Target`.
        out: the package folder to create (``model.pte`` + ``manifest.json``).
        inputs: input specs; override the factory's example inputs.
        calibration: calibration data (path, folder, callable or Dataset) for static quantization. Without
            it, random inputs are used, a warning is returned, and the manifest says ``calibration: random``.
        eval: held-out data for verification; with labels, accuracy of eager vs program is reported.
        dynamic_batch: export the batch dimension as dynamic within these bounds.
        finetune: labelled training data for recovery fine-tuning after pruning (cross-entropy, Adam).
        finetune_epochs, finetune_lr: override the target's ``[prune]`` values (3 epochs when data is
            given and the target says 0).
        force: replace an existing ``out``.
        verify_samples: how many held-out samples to verify on when ``eval`` is not given.
        progress: called with a :class:`StageEvent` at each stage's start and end.

    Returns:
        A :class:`BuildResult`.

    Raises:
        EdgekitError: a subclass naming the failing stage's problem; nothing is left at ``out``.

    Example:
        >>> result = build("mypkg.nets:make_net", "xnnpack-int8", calibration="calib.npz", out="build/net")
        >>> result.manifest["verify"]["sqnr_db"]
    """
    t_start = time.perf_counter()
    tgt = load_target(target)
    out = Path(out)
    check_output(out, force)
    stages = _Stages(progress)
    warnings: list[str] = []

    import_stack()
    loaded: LoadedModel = stages.run("load", lambda: load_model(model, inputs, seed=seed), str(model) if isinstance(model, str) else "")
    examples = loaded.example_inputs

    # Data is checked against the model before any slow work, so a bad file fails in a second.
    eval_ds = resolve_data(eval, examples, role="eval") if eval is not None else None
    calib_ds = None
    scheme = tgt.quantize.scheme
    if scheme is not QuantScheme.NONE and calibration is not None:
        calib_ds = resolve_data(calibration, examples, role="calibration", limit=tgt.quantize.calibration_samples)
    ft_ds = resolve_data(finetune, examples, role="fine-tune") if finetune is not None else None
    if tgt.budget.max_accuracy_drop is not None and (eval_ds is None or eval_ds.labels is None):
        warnings.append(f"budget.max_accuracy_drop = {tgt.budget.max_accuracy_drop} is not checked: "
                        "pass --eval with labelled data to check it")

    # Prune the eager module (torch-pruning works on nn.Modules), then export the smaller model.
    reference = loaded
    prune_info: dict = {"applied": False, "reason": "target asks for no pruning"}
    dense_twin = None
    if tgt.prune.active:
        from .prune import prune_model

        if loaded.exported is not None:
            raise PruneError(f"{loaded.spec} is a saved ExportedProgram: a flat graph without the nn.Module layers "
                             "that pruning removes channels from",
                             "build from the model's factory (package.module:factory or file.py:factory) to prune it")

        epochs = tgt.prune.finetune_epochs if finetune_epochs is None else finetune_epochs
        if ft_ds is not None and epochs == 0:
            epochs = DEFAULT_FINETUNE_EPOCHS
        lr = tgt.prune.finetune_lr if finetune_lr is None else finetune_lr
        if ft_ds is None and tgt.prune.structured_ratio > 0:
            warnings.append("structured pruning without --finetune data: accuracy can collapse (a digits CNN fell from "
                            "99.7% to 19% at 50%); pass --finetune with labelled training data")
        pres = stages.run("prune", lambda: prune_model(loaded.module, examples, tgt.prune, finetune=ft_ds,
                                                         finetune_epochs=epochs, finetune_lr=lr, seed=seed),
                          prune_detail(tgt))
        prune_info = pres.info
        reference = LoadedModel(loaded.spec, pres.module, examples)
        if tgt.prune.sparsity > 0:
            dense_twin = LoadedModel(loaded.spec, pres.dense_module, examples)
    else:
        stages.skip("prune", prune_info["reason"])

    final, exported, quant_info = _export_and_quantize(reference, tgt, dynamic_batch, calib_ds, calibration, stages, warnings)
    dynamic = exported.dynamic_shapes is not None
    examples = exported.example_inputs

    from .lower import lower_program

    lowered = stages.run("lower", lambda: lower_program(final.program, tgt.backend), tgt.backend.value)
    if tgt.backend is Backend.XNNPACK and lowered.delegation["delegated_partitions"] == 0:
        warnings.append("XNNPACK took no part of the graph: everything runs on portable kernels")
    deflated = deflate_size(lowered.pte)
    size_comparison = None
    if dense_twin is not None:
        def dense_size() -> dict:
            twin, _, _ = _export_and_quantize(dense_twin, tgt, dynamic_batch, calib_ds, calibration, None, [])
            pte = lower_program(twin.program, tgt.backend).pte
            return {"size_bytes": len(pte), "deflate_bytes": deflate_size(pte)}

        size_comparison = {"without_sparsity": stages.run("compare", dense_size, "lowering the dense twin for sizes"),
                           "with_sparsity": {"size_bytes": len(lowered.pte), "deflate_bytes": deflated},
                           "note": "sparsity shrinks the compressed download, not the .pte or the latency"}

    # Verification data: the user's held-out set, else random samples with their own seed.
    if eval_ds is not None:
        verify_ds = eval_ds
    else:
        static_batch = 1 if dynamic else int(examples[0].shape[0])
        n_verify = -(-verify_samples // static_batch) * static_batch  # whole batches for a static batch size
        verify_ds = random_dataset(examples, n_verify, seed=VERIFY_SEED, source="random (held-out seed)")

    in_names, out_names = _io_names(exported.program)
    with staged_output(out, force) as tmp:
        pte_path = tmp / PTE_NAME
        pte_path.write_bytes(lowered.pte)
        info = inspect_program(pte_path, lowered.pte)

        from .verify import verify_program

        if dynamic and dynamic_batch is not None:  # chunks within the exported batch range
            batch = max(dynamic_batch.min, min(32, dynamic_batch.max, len(verify_ds)))
        else:
            batch = int(examples[0].shape[0])
        verify = stages.run("verify", lambda: verify_program(pte_path, reference.module, verify_ds, batch=batch,
                                                                labelled=eval_ds is not None), verify_ds.source)
        if prune_info["applied"] and verify.get("accuracy"):
            from .prune import accuracy as eager_accuracy

            acc = verify["accuracy"]
            original = round(eager_accuracy(loaded.module, verify_ds.take(acc["samples"])), 6)
            # eager (pruned) vs program is the lowering's fidelity; the budget counts from the original model.
            verify["accuracy"] = {"samples": acc["samples"], "original_eager": original, "pruned_eager": acc["eager"],
                                  "eager": original, "program": acc["program"], "drop": round(original - acc["program"], 6)}
        if prune_info["applied"]:
            verify["reference"] = "the pruned eager model"
        method = info.method("forward")
        if dynamic_batch is not None and method.inputs and method.inputs[0].shape[:1] != (dynamic_batch.max,):
            warnings.append(f"the program accepts batches up to {method.inputs[0].shape[0]} only, "
                            f"not {dynamic_batch.max} as asked (ExecuTorch's memory plan)")
        budget = _check_budget(tgt, info.size_bytes, verify)
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            "model": {
                "spec": loaded.spec,
                "inputs": _tensor_list(in_names, examples),
                "outputs": [{"name": n, **m.to_dict()} for n, m in zip(out_names, method.outputs)],
                "dynamic_batch": None if dynamic_batch is None else {
                    "min": dynamic_batch.min, "max": dynamic_batch.max,
                    "program_max": method.inputs[0].shape[0] if method.inputs else None},
            },
            "target": tgt.to_dict(),
            "target_source": tgt.source,
            "export": exported.info(),
            "prune": prune_info,
            "quantize": quant_info,
            "program": {
                "file": PTE_NAME,
                "sha256": info.sha256,
                "size_bytes": info.size_bytes,
                "compressed_size_bytes": deflated,
                "size_comparison": size_comparison,
                "methods": sorted(info.methods),
                "backend": tgt.backend.value,
                "delegation": lowered.delegation,
                "planned_memory": info.planned_memory("forward"),
            },
            "verify": verify,
            "budget": budget,
            "warnings": warnings,
            "timings_s": dict(stages.seconds),
        }
        failed = [c for c in budget["checks"] if not c["ok"]]
        if failed:
            raise BudgetError(
                "build exceeds the target's budget: " + "; ".join(f"{c['name']} is {c['value']} (limit {c['limit']})" for c in failed),
                "relax the target's [budget] or change the model/target",
            )
        manifest["timings_s"]["total"] = round(time.perf_counter() - t_start, 3)
        write_json(tmp / MANIFEST_NAME, manifest)
    return BuildResult(out, out / PTE_NAME, manifest, tuple(warnings))


def deflate_size(data: bytes) -> int:
    """Size after zlib/deflate at level 9: what a zip or an HTTP gzip download would roughly cost."""
    import zlib

    return len(zlib.compress(data, 9))


def prune_detail(tgt: Target) -> str:
    p = tgt.prune
    parts = []
    if p.structured_ratio > 0 or p.layer_ratios:
        parts.append(f"channels {p.structured_ratio:.0%}" + (" + per-layer" if p.layer_ratios else ""))
    if p.sparsity > 0:
        parts.append(f"sparsity {p.sparsity:.0%}")
    return ", ".join(parts)


def _export_and_quantize(model: LoadedModel, tgt: Target, dynamic_batch: DynamicBatch | None, calib_ds: Any,
                         calibration: Any, stages: "_Stages | None", warnings: list[str]) -> tuple[Any, Any, dict]:
    """export → (quantize): (the ExportResult to lower, the plain export, the manifest's quantize section)."""
    from .export import export_model

    run = stages.run if stages else (lambda name, fn, detail="": fn())
    exported = run("export", lambda: export_model(model, dynamic_batch))
    if exported.fallback_reason:
        warnings.append(f"strict torch.export failed ({exported.fallback_reason}); used non-strict tracing")
    scheme = tgt.quantize.scheme
    if scheme is QuantScheme.NONE:
        if stages:
            stages.skip("quantize", "target asks for fp32")
        return exported, exported, {"scheme": QuantScheme.NONE.value, "applied": False}
    from .quantize import quantize_program

    if calib_ds is None:
        calib_ds = random_dataset(exported.example_inputs, tgt.quantize.calibration_samples, seed=CALIBRATION_SEED, source="random")
        if scheme.needs_calibration:
            warnings.append("no calibration data given: calibrated int8 ranges on random inputs, so accuracy on real data "
                            "may suffer; pass --calibration with a few dozen real samples")
    qres = run("quantize", lambda: quantize_program(exported, scheme, calib_ds), scheme.value)
    info = {**qres.info, "applied": True, "calibration": "random" if calibration is None else qres.info["calibration"]}
    return qres.exported, exported, info


def _check_budget(tgt: Target, size_bytes: int, verify: dict) -> dict:
    checks = []
    b = tgt.budget
    if b.max_size_mb is not None:
        size_mb = round(size_bytes / 2**20, 3)
        checks.append({"name": "size_mb", "limit": b.max_size_mb, "value": size_mb, "ok": size_mb <= b.max_size_mb})
    acc = verify.get("accuracy")
    if b.max_accuracy_drop is not None and acc:
        checks.append({"name": "accuracy_drop", "limit": b.max_accuracy_drop, "value": acc["drop"],
                       "ok": acc["drop"] <= b.max_accuracy_drop})
    unchecked = [k for k in ("max_p50_ms", "max_peak_rss_mb") if getattr(b, k) is not None]
    return {"checks": checks, "checked_by_profile": unchecked}
