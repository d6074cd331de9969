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
from ..errors import BudgetError
from ..models import DynamicBatch, InputSpec, LoadedModel, load_model
from ..program import inspect_program
from ..targets import Backend, QuantScheme, Target, load_target
from .package import MANIFEST_NAME, MANIFEST_SCHEMA_VERSION, PTE_NAME, check_output, staged_output, write_json

STAGES = ("load", "export", "prune", "quantize", "lower", "verify", "package")

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

    from .export import export_model

    exported = stages.run("export", lambda: export_model(loaded, dynamic_batch))
    if exported.fallback_reason:
        warnings.append(f"strict torch.export failed ({exported.fallback_reason}); used non-strict tracing")
    examples = exported.example_inputs
    dynamic = exported.dynamic_shapes is not None
    # Verification data: the user's held-out set, else random samples with their own seed.
    eval_ds = resolve_data(eval, examples, role="eval") if eval is not None else None
    if eval_ds is not None:
        verify_ds = eval_ds
    else:
        static_batch = 1 if dynamic else int(examples[0].shape[0])
        n_verify = -(-verify_samples // static_batch) * static_batch  # whole batches for a static batch size
        verify_ds = random_dataset(examples, n_verify, seed=VERIFY_SEED, source="random (held-out seed)")
    if tgt.budget.max_accuracy_drop is not None and (eval_ds is None or eval_ds.labels is None):
        warnings.append(f"budget.max_accuracy_drop = {tgt.budget.max_accuracy_drop} is not checked: "
                        "pass --eval with labelled data to check it")

    # Prune: arrives with the pruning issue; with nothing asked this stage passes the model through.
    prune_info: dict = {"applied": False, "reason": "target asks for no pruning"}
    stages.skip("prune", prune_info["reason"])
    program = exported

    quant_info: dict = {"scheme": QuantScheme.NONE.value, "applied": False}
    scheme = tgt.quantize.scheme
    if scheme is not QuantScheme.NONE:
        from .quantize import quantize_program

        n_cal = tgt.quantize.calibration_samples
        if calibration is not None:
            calib_ds = resolve_data(calibration, examples, role="calibration", limit=n_cal)
        else:
            calib_ds = random_dataset(examples, n_cal, seed=CALIBRATION_SEED, source="random")
            if scheme.needs_calibration:
                warnings.append(
                    "no calibration data given: calibrated int8 ranges on random inputs, so accuracy on real data may "
                    "suffer; pass --calibration with a few dozen real samples"
                )
        qres = stages.run("quantize", lambda: quantize_program(program, scheme, calib_ds), scheme.value)
        program = qres.exported
        quant_info = {**qres.info, "applied": True,
                      "calibration": "random" if calibration is None else qres.info["calibration"]}
    else:
        stages.skip("quantize", "target asks for fp32")

    from .lower import lower_program

    lowered = stages.run("lower", lambda: lower_program(program.program, tgt.backend), tgt.backend.value)
    if tgt.backend is Backend.XNNPACK and lowered.delegation["delegated_partitions"] == 0:
        warnings.append("XNNPACK took no part of the graph: everything runs on portable kernels")

    in_names, out_names = _io_names(exported.program)
    with staged_output(out, force) as tmp:
        pte_path = tmp / PTE_NAME
        pte_path.write_bytes(lowered.pte)
        info = inspect_program(pte_path)

        from .verify import verify_program

        if dynamic and dynamic_batch is not None:  # chunks within the exported batch range
            batch = max(dynamic_batch.min, min(32, dynamic_batch.max, len(verify_ds)))
        else:
            batch = int(examples[0].shape[0])
        verify = stages.run("verify", lambda: verify_program(pte_path, loaded.module, verify_ds, batch=batch,
                                                                labelled=eval_ds is not None), verify_ds.source)
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


def _check_budget(tgt: Target, size_bytes: int, verify: dict) -> dict:
    checks = []
    b = tgt.budget
    if b.max_size_mb is not None:
        size_mb = round(size_bytes / 2**20, 3)
        checks.append({"name": "size_mb", "limit": b.max_size_mb, "value": size_mb, "ok": size_mb <= b.max_size_mb})
    acc = verify.get("accuracy")
    if b.max_accuracy_drop is not None and acc is not None:
        checks.append({"name": "accuracy_drop", "limit": b.max_accuracy_drop, "value": acc["drop"],
                       "ok": acc["drop"] <= b.max_accuracy_drop})
    unchecked = [k for k in ("max_p50_ms", "max_peak_rss_mb") if getattr(b, k) is not None]
    return {"checks": checks, "checked_by_profile": unchecked}
