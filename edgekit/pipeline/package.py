"""The package stage: assemble the manifest, check the budget, and write ``model.pte`` + ``manifest.json``
into a temp folder that is swapped into place whole (a failed or killed build leaves nothing at OUT)."""

from __future__ import annotations

import datetime as _dt
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ..errors import BudgetError
from ..fileops import staged_output, write_json
from ..machine import software_versions
from ..manifest import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    PTE_NAME,
    BudgetCheck,
    BudgetSection,
    DynamicBatchInfo,
    DynamicDimInfo,
    ExplainSection,
    Manifest,
    ModelSection,
    ProgramSection,
    TensorEntry,
    VerifySection,
)
from ..program import ProgramInfo, inspect_program
from ..targets import Target
from .explain import EXPLAIN_NAME, EXPLAIN_SCHEMA_VERSION
from .stages import StageRunner
from .state import BuildResult, BuildState

if TYPE_CHECKING:
    from ..perplexity_protocol import ProtocolFidelity
    from ..target_config import BudgetConfig
    from .explain_fidelity import ModuleFidelityDoc
    from .explain_memory import MemoryPlan


class ExplainDoc(TypedDict):
    """``explain.json``, beside the program: what ``edgekit explain`` reads (:mod:`edgekit.pipeline.explain`)."""

    schema_version: int
    method: str
    instructions: dict[str, dict[str, object]] | None  # instruction id → its module(s) (explain.instructions)
    memory: MemoryPlan | None
    modules: ModuleFidelityDoc | None
    portable_reasons: dict[str, list[str]]  # op → why it stayed on portable kernels


def check_budget(
    tgt: Target, size_bytes: int, verify: VerifySection | None = None, protocol: ProtocolFidelity | None = None
) -> BudgetSection:
    """The budget checks a build can make itself, for every kind of program: the perplexity increase, mean KLD and
    same top-1 (``protocol``: a generation program's, on llama.cpp's protocol), the size (``size_bytes``: what an app
    ships, ``model.ptd`` too), the accuracy drop and SQNR (``verify``: a model's program); the rest (latency, memory)
    is left to ``edgekit profile``."""
    b = tgt.budget
    checks = []
    if protocol is not None:
        checks += protocol_checks(b, protocol)
    if b.max_size_mb is not None:
        size_mb = round(size_bytes / 2**20, 3)
        checks.append(BudgetCheck("size_mb", b.max_size_mb, size_mb, size_mb <= b.max_size_mb))
    if verify is not None and b.max_accuracy_drop is not None and verify.accuracy is not None:
        drop = verify.accuracy.drop
        checks.append(BudgetCheck("accuracy_drop", b.max_accuracy_drop, drop, drop <= b.max_accuracy_drop))
    if verify is not None and b.min_sqnr_db is not None and verify.sqnr_db is not None:  # None: identical outputs
        checks.append(BudgetCheck("sqnr_db", b.min_sqnr_db, verify.sqnr_db, verify.sqnr_db >= b.min_sqnr_db))
    unchecked = [k for k in ("max_p50_ms", "max_peak_rss_mb") if getattr(b, k) is not None]
    return BudgetSection(checks, unchecked)


def protocol_checks(b: BudgetConfig, f: ProtocolFidelity) -> list[BudgetCheck]:
    """A generation program's fidelity budgets (perplexity increase, mean KLD, same top-1), each against the model
    handed in on llama.cpp's protocol."""
    checks = []
    # judged on the figures as measured, shown rounded (tune judges the same figures: the same verdict)
    if b.max_ppl_increase_pct is not None:
        pct = f.ppl_increase_pct
        checks.append(
            BudgetCheck("ppl_increase_pct", b.max_ppl_increase_pct, round(pct, 3), pct <= b.max_ppl_increase_pct)
        )
    if b.max_kld is not None:
        checks.append(BudgetCheck("kld_mean", b.max_kld, round(f.kld_mean, 6), f.kld_mean <= b.max_kld))
    if b.min_top1_pct is not None:
        top1 = 100 * f.same_top1
        checks.append(BudgetCheck("same_top1_pct", b.min_top1_pct, round(top1, 3), top1 >= b.min_top1_pct))
    return checks


def manifest_for(
    target: Target, stages: StageRunner, t_start: float, warnings: list[str], **sections: object
) -> Manifest:
    """The one manifest assembler every kind's package step calls: what every package records (schema, creation time,
    versions, target, warnings, stage timings, the build's peak memory) around the kind's own ``sections`` (model,
    export, prune, quantize, program, verify, budget, and reference/explain or generation)."""
    return Manifest.from_dict(
        {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": software_versions(),
            "target": target.to_dict(),
            "target_source": target.source,
            **sections,
            "warnings": list(warnings),
            "timings_s": {**stages.seconds, "total": round(time.perf_counter() - t_start, 3)},
            "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )


def raise_for_budget(budget: BudgetSection, what: str = "build") -> None:
    """Raise :class:`BudgetError` naming every check that failed."""
    failed = budget.failures
    if failed:
        raise BudgetError(
            f"{what} exceeds the target's budget: "
            + "; ".join(f"{c.name} is {c.value} (limit {c.limit})" for c in failed),
            "relax the limit (its flag, e.g. --max-kld, or the target's [budget]) or change the model/target",
        )


def _model_section(st: BuildState, info: ProgramInfo) -> ModelSection:
    sig = st.exported.program.graph_signature
    examples = st.exported.example_inputs
    method = info.method("forward")
    inputs = [
        TensorEntry(n, list(t.shape), str(t.dtype).removeprefix("torch."), m.dynamic)
        for n, t, m in zip(sig.user_inputs, examples, method.inputs)
    ]
    outputs = [TensorEntry(n, list(m.shape), m.dtype, m.dynamic) for n, m in zip(sig.user_outputs, method.outputs)]
    dims, batch = [], None
    for d in st.dims:
        planned = method.inputs[d.indices[0]].shape[d.dim] if method.inputs else None
        dims.append(DynamicDimInfo(list(d.names), list(d.indices), d.dim, d.min, d.max, planned))
        if planned is not None and planned != d.max:
            st.warnings.append(
                f"the program accepts {d.label()} up to {planned} only, not {d.max} as asked (ExecuTorch's memory plan)"
            )
        if d.dim == 0:
            batch = DynamicBatchInfo(d.min, d.max, planned)
    return ModelSection(st.loaded.spec, inputs, outputs, batch, dims)


def _program_section(st: BuildState, info: ProgramInfo) -> ProgramSection:
    return ProgramSection(
        file=PTE_NAME,
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        compressed_size_bytes=st.deflated,
        methods=sorted(info.methods),
        backend=st.target.backend.value,
        delegation=st.lowered.delegation,
        planned_memory=info.planned_memory("forward"),
        size_comparison=st.size_comparison,
    )


def explain_file(st: BuildState) -> tuple[bytes, ExplainSection] | None:
    """``explain.json`` and its manifest section, from what lowering and verify recorded (None when nothing was)."""
    import hashlib
    import json

    rec = st.lowered.explain or {}
    if not st.explain or not (rec or st.module_fidelity):
        return None
    doc: ExplainDoc = {
        "schema_version": EXPLAIN_SCHEMA_VERSION,
        "method": "forward",
        "instructions": rec.get("instructions"),
        "memory": rec.get("memory"),
        "modules": None if st.module_fidelity is None else st.module_fidelity.to_dict(),
        "portable_reasons": st.lowered.delegation.get("portable_reasons", {}),
    }
    data = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    return data, ExplainSection(
        file=EXPLAIN_NAME,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        modules=st.module_fidelity is not None,
        instructions=bool(rec.get("instructions")),
        memory=bool(rec.get("memory")),
    )


def assemble_manifest(st: BuildState, t_start: float, explain: tuple[bytes, ExplainSection] | None = None) -> Manifest:
    """The manifest from what the stages produced (the program's own metadata read back from its bytes)."""
    info = inspect_program(st.out / PTE_NAME, st.lowered.pte)
    model = _model_section(st, info)
    return manifest_for(
        st.target,
        st.stages,
        t_start,
        st.warnings,
        model=model,
        export=st.exported.info(),
        prune=st.prune,
        quantize=st.quantize,
        program=_program_section(st, info),
        verify=st.verify,
        budget=check_budget(st.target, info.size_bytes, st.verify),
        reference=st.reference[1] if st.reference else None,
        explain=explain[1] if explain else None,
    )


def write_package(st: BuildState, force: bool, t_start: float) -> BuildResult:
    """Check the budget, then write the package atomically.

    Raises:
        BudgetError: the program exceeds the target's budget; nothing is written.
    """
    explain = explain_file(st)
    manifest = assemble_manifest(st, t_start, explain)
    raise_for_budget(manifest.budget)
    with staged_output(st.out, force) as tmp:
        (tmp / PTE_NAME).write_bytes(st.lowered.pte)
        if st.reference:
            (tmp / manifest.reference.file).write_bytes(st.reference[0])
        if explain:
            (tmp / manifest.explain.file).write_bytes(explain[0])
        write_json(tmp / MANIFEST_NAME, manifest.to_dict())
    return BuildResult(Path(st.out), Path(st.out) / PTE_NAME, manifest, tuple(manifest.warnings))
