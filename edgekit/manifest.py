"""The package manifest (``manifest.json``): what a build did and measured, as one typed, versioned document.

Written by the package stage, read by ``edgekit profile`` (program file, sha256, target), ``bench run``, the
demo and the build summary: every one of them goes through :class:`Manifest`, so a missing or mistyped field is
one error naming the file and the field, never a ``KeyError`` deep in a command.

The sections one kind of program or one command owns live beside it: ``manifest_generation`` (a generation program's
facts and fidelity) and ``manifest_tune`` (what ``edgekit tune`` tried and chose); the rest, which every package
has, is here, top to bottom in the order the document nests it (the generated manifest reference follows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._contract import Contract
from .errors import ContractError, ProgramError
from .fileops import PACKAGE_MARKER, read_json
from .manifest_generation import GenerationSection
from .manifest_tune import TuneSection
from .reference import ReferenceSection

MANIFEST_NAME = PACKAGE_MARKER
PTE_NAME = "model.pte"
PTD_NAME = "model.ptd"  # a program's external weights (ExecuTorch's flat-tensor file), when it has any
MANIFEST_SCHEMA_VERSION = 2  # 2: the typed sections below
READABLE_SCHEMA_VERSIONS = (1, 2)  # 1 (edgekit 0.1's untyped dict) has the same fields: its packages stay usable


@dataclass(frozen=True)
class TensorEntry(Contract):
    name: str
    shape: list[int]
    dtype: str
    dynamic: bool = False


@dataclass(frozen=True)
class DynamicBatchInfo(Contract):
    min: int
    max: int
    program_max: int | None = None


@dataclass(frozen=True)
class DynamicDimInfo(Contract):
    """A range the program accepts: dimension ``dim`` of ``inputs`` (positions ``indices``), one shared size."""

    inputs: list[str]
    indices: list[int]
    dim: int
    min: int
    max: int
    program_max: int | None = None  # the bound ExecuTorch's memory plan was sized for


@dataclass(frozen=True)
class ModelSection(Contract):
    spec: str
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    dynamic_batch: DynamicBatchInfo | None = None
    dynamic_dims: list[DynamicDimInfo] = field(default_factory=list)


@dataclass(frozen=True)
class ExportSection(Contract):
    mode: str  # strict | non-strict | loaded
    fallback_reason: str | None = None
    dynamic_batch: bool = False


@dataclass(frozen=True)
class FinetuneInfo(Contract):
    data: str
    samples: int
    epochs: int
    lr: float
    loss: str
    optimizer: str
    epoch_losses: list[float]


@dataclass(frozen=True)
class PruneSection(Contract):
    """What pruning did; ``applied`` false (with ``reason``) when the target asks for none."""

    applied: bool
    reason: str | None = None
    summary: str = ""
    structured_ratio: float = 0.0
    sparsity: float = 0.0
    importance: str | None = None
    scope: str | None = None
    round_to: int | None = None
    ignore: list[str] = field(default_factory=list)
    auto_ignored: list[str] = field(default_factory=list)
    library: str | None = None
    finetune: FinetuneInfo | None = None
    params_before: int | None = None
    params_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    params_ratio: float | None = None
    macs_ratio: float | None = None
    # per pruned conv/linear: layer, type, out_before, out_after, in_before, in_after, kept (a share of its channels)
    layers: list[dict[str, str | int | float]] = field(default_factory=list)
    sparsity_by_layer: list[dict[str, str | int | float]] | None = None  # layer, weights, zeros, sparsity
    sparsity_achieved: float | None = None
    sparsity_note: str | None = None


@dataclass(frozen=True)
class QuantizeSection(Contract):
    scheme: str
    applied: bool
    quantizer: str | None = None
    per_channel: bool | None = None
    dynamic: bool | None = None
    calibration_samples: int | None = None
    calibration_batch: int | None = None
    calibration: str | None = None  # the data's source, or "random"
    calibration_reused: bool | None = None  # the observers' states came from an earlier build's calibration record
    embeddings: str = "none"  # none | int8 | int4: weight-only, per row, fused to ExecuTorch's quantized embedding ops
    embedding_tables: list[str] = field(default_factory=list)
    fp32_layers: list[str] = field(default_factory=list)  # mixed precision: layers left in float32


@dataclass(frozen=True)
class Delegation(Contract):
    delegated_partitions: int
    delegated_nodes: int
    portable_nodes: int
    portable_ops: list[str] = field(default_factory=list)
    by_operator: dict[str, dict[str, int]] = field(default_factory=dict)
    portable_reasons: dict[str, list[str]] = field(default_factory=dict)  # op → why it stayed on portable kernels
    passes: list[str] = field(default_factory=list)  # pre-lowering rewrites that let XNNPACK take more of the graph


@dataclass(frozen=True)
class SizeComparison(Contract):
    without_sparsity: dict[str, int]
    with_sparsity: dict[str, int]
    note: str


@dataclass(frozen=True)
class PlannedMemory(Contract):
    method: str
    planned_buffers_bytes: list[int]
    planned_bytes: int
    planned_mb: float


@dataclass(frozen=True)
class ProgramData(Contract):
    """The program's external weights (``model.ptd``), loaded with it by every runner."""

    file: str
    sha256: str
    size_bytes: int
    holds: str  # what is in it, in words

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.file != PTD_NAME:  # it becomes a path, a copy's name and a file pushed to devices: data, never a path
            raise ContractError(f"program.data.file must be {PTD_NAME!r}, got {self.file!r}")


@dataclass(frozen=True)
class ProgramSection(Contract):
    file: str
    sha256: str
    size_bytes: int
    compressed_size_bytes: int
    methods: list[str]
    backend: str
    delegation: Delegation
    planned_memory: PlannedMemory
    size_comparison: SizeComparison | None = None
    # weights kept outside the program (ExecuTorch's .ptd): a tied embedding table shared with the output layer
    data: ProgramData | None = None

    @property
    def shipped_bytes(self) -> int:
        """What an app ships: the program and its external weights."""
        return self.size_bytes + (self.data.size_bytes if self.data is not None else 0)


@dataclass(frozen=True)
class Accuracy(Contract):
    """Top-1 accuracy on labelled data. After pruning, ``eager`` is the original model and ``pruned_eager`` the
    pruned one: the budget counts the drop from the model the user gave."""

    samples: int
    eager: float
    program: float
    drop: float
    original_eager: float | None = None
    pruned_eager: float | None = None


@dataclass(frozen=True)
class OutputFidelity(Contract):
    index: int
    max_abs_error: float
    mean_abs_error: float
    sqnr_db: float | None
    exact: bool
    cosine_similarity: float
    top1_agreement: float | None = None
    cosine_min: float | None = None


@dataclass(frozen=True)
class SizeCheck(Contract):
    """The program verified with its dynamic dimensions at other sizes (``sizes``: ``"input_ids:1" -> 8``)."""

    sizes: dict[str, int]
    samples: int
    max_abs_error: float
    sqnr_db: float | None
    cosine_min: float


#: ``VerifySection.reference``: the figures compare the program with the model the user handed in (unpruned, fp32).
#: Packages from before this rule say ``"the eager model"`` (the same thing) or ``"the pruned eager model"``.
REFERENCE_ORIGINAL = "original"
#: ``LoweringCheck.reference``: the eager model after pruning (and fine-tuning): what export traced.
REFERENCE_PRUNED = "pruned"


@dataclass(frozen=True)
class LoweringCheck(Contract):
    """The program against the model that was exported (the pruned one), on the same samples: did export, quantization
    and lowering keep what pruning left? It says nothing about the user's model; the budget never uses it."""

    reference: str  # REFERENCE_PRUNED
    sqnr_db: float | None  # None: identical outputs
    exact: bool
    cosine_similarity: float
    cosine_min: float
    max_abs_error: float
    top1_agreement: float | None = None


@dataclass(frozen=True)
class VerifySection(Contract):
    samples: int
    data: str
    max_abs_error: float
    mean_abs_error: float
    sqnr_db: float | None  # None: the outputs are identical (exact)
    exact: bool
    cosine_similarity: float
    outputs: list[OutputFidelity]
    top1_agreement: float | None = None
    accuracy: Accuracy | None = None
    accuracy_note: str | None = None
    reference: str = (
        "the eager model"  # REFERENCE_ORIGINAL in new packages: every figure above is against the user's model
    )
    task: str | None = None  # classify | embed | regress: which figures apply (pipeline.verify.Task)
    task_reason: str | None = None  # "given with --task", or why it was guessed
    cosine_min: float | None = None  # the worst sample's cosine (cosine_similarity is the mean)
    nn_agreement: float | None = None  # embed: share of samples whose nearest neighbour stays the same
    at_sizes: list[SizeCheck] = field(default_factory=list)  # dynamic dimensions: the program checked at other sizes
    lowering: LoweringCheck | None = (
        None  # pruned builds: the same figures against the pruned model (what was exported)
    )


@dataclass(frozen=True)
class BudgetCheck(Contract):
    name: str
    limit: float
    value: float
    ok: bool


@dataclass(frozen=True)
class BudgetSection(Contract):
    checks: list[BudgetCheck] = field(default_factory=list)
    checked_by_profile: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[BudgetCheck]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True)
class ExplainSection(Contract):
    """``explain.json`` beside the program: its instructions in the model's module names, per-module fidelity and
    the memory plan (edgekit.pipeline.explain, explain_fidelity, explain_memory), read by ``edgekit explain``."""

    file: str
    sha256: str
    size_bytes: int
    modules: bool  # per-module SQNR recorded (quantized programs)
    instructions: bool  # module names of the program's instructions recorded
    memory: bool  # the memory plan recorded


@dataclass(frozen=True)
class Manifest(Contract):
    """``manifest.json`` of a package.

    Example:
        >>> m = read_manifest("build/net")
        >>> m.verify.sqnr_db, m.program.size_bytes, m.target["name"]
    """

    schema_version: int  # of this document (MANIFEST_SCHEMA_VERSION); older ones stay readable
    created: str  # when the package was written, ISO 8601 UTC
    versions: dict[str, str | None]  # edgekit, torch, executorch, torchao, Python and the platform that built it
    model: ModelSection  # the model handed in: its spec, inputs and outputs
    target: dict[str, object]  # the target the program was built for, every key (as in its TOML file)
    target_source: str  # where the target came from: a built-in name or a file's path
    export: ExportSection  # how torch.export traced the model
    prune: PruneSection  # what pruning removed, and the accuracy before and after
    quantize: QuantizeSection  # how the program was quantized, and on what data
    program: ProgramSection  # the program file: size, hash, delegation, memory plan
    verify: VerifySection  # the program against the model handed in, in the ExecuTorch runtime
    budget: BudgetSection  # the target's budget: what the build could check, and what a profile must
    warnings: list[str]  # what the build says the user should know (also printed by the build)
    timings_s: dict[str, float]  # seconds per stage, and in total
    build_peak_rss_mb: float | None = None  # the building process's high-water mark (an upper bound when it built more)
    reference: ReferenceSection | None = None  # reference vectors beside the program (packages before them: None)
    explain: ExplainSection | None = None  # what `edgekit explain` reads (packages before it, or built without: None)
    tune: TuneSection | None = None  # set on the package `edgekit tune` chose: every candidate and why it won or lost
    generation: GenerationSection | None = (
        None  # generation programs (task text-generation): limits, tokenizer, fidelity
    )

    def files(self) -> list[str]:
        """Every file of the package: the manifest, the program, and the side files the manifest names."""
        gen_ref = self.generation.reference if self.generation is not None else None
        side = [s.file for s in (self.reference, self.explain, gen_ref) if s is not None]
        tokenizer = list(self.generation.tokenizer_files) if self.generation is not None else []
        data = [self.program.data.file] if self.program.data is not None else []
        return [MANIFEST_NAME, self.program.file, *data, *side, *tokenizer]

    @classmethod
    def from_dict(cls, data: object, source: str = "") -> "Manifest":
        if isinstance(data, dict) and data.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
            raise ContractError(
                f"{source or 'manifest'}: schema_version {data.get('schema_version')!r} is not one this "
                f"edgekit reads ({', '.join(map(str, READABLE_SCHEMA_VERSIONS))})",
                "rebuild the package with this edgekit",
            )
        return super().from_dict(data, source)


def read_manifest(package: str | Path) -> Manifest:
    """Read and validate a package's manifest.

    Raises:
        ProgramError: the folder has no readable manifest, or a field is missing or wrong (named).
    """
    path = Path(package) / MANIFEST_NAME
    hint = "pass a package folder from `edgekit build` (or its .pte file), or rebuild the package"
    data = read_json(path, "manifest", ProgramError, hint)
    try:
        return Manifest.from_dict(data, str(path))
    except ContractError as exc:
        raise ProgramError(exc.message, exc.hint) from None
