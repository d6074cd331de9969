"""What a build knows as it goes (:class:`BuildState`, filled in stage order by :mod:`edgekit.pipeline.build`) and what it
returns (:class:`BuildResult`): shared by the build's steps and the package stage, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import Dataset
from ..dynamic import ResolvedDim
from ..manifest import Manifest, PruneSection, QuantizeSection, SizeComparison, VerifySection
from ..reference import ReferenceSection
from ..specs import LoadedModel
from ..targets import Target
from .stages import StageRunner

if TYPE_CHECKING:
    from torch.fx import GraphModule

    from .calibration import CalibrationStore
    from .explain_fidelity import ModuleFidelityResult
    from .export import ExportResult
    from .lower import LowerResult


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` produced: the package folder, its program and its manifest."""

    out_dir: Path
    pte_path: Path
    manifest: Manifest
    warnings: tuple[str, ...] = ()


@dataclass
class BuildState:
    """What one build knows so far. Steps fill it in stage order; nothing else mutates it."""

    target: Target
    out: Path
    stages: StageRunner
    loaded: LoadedModel | None = None
    eval_ds: Dataset | None = None
    calib_ds: Dataset | None = None
    finetune_ds: Dataset | None = None
    eager: LoadedModel | None = (
        None  # the eager model that is exported: the pruned one, if pruned (never the reference)
    )
    dense_twin: LoadedModel | None = None  # pruned but before sparsity: lowered once more for the size comparison
    prune: PruneSection = field(
        default_factory=lambda: PruneSection(applied=False, reason="target asks for no pruning")
    )
    exported: ExportResult | None = None  # the plain export (its example inputs and dynamic shapes)
    final: ExportResult | None = None  # what is lowered: the quantized export, or the plain one
    quantize: QuantizeSection | None = None
    lowered: LowerResult | None = None
    deflated: int = 0
    size_comparison: SizeComparison | None = None
    verify: VerifySection | None = None
    embedding_tables: list[str] = field(default_factory=list)  # the nn.Embedding tables quantized weight-only
    dims: list[ResolvedDim] = field(default_factory=list)  # the dynamic dimensions, bound to the model's inputs
    records: CalibrationStore | None = None  # where calibration records are kept (the build cache's), if anywhere
    warnings: list[str] = field(default_factory=list)
    reference_samples: int = 4  # reference vectors to store (0: none)
    reference_max_mb: float = 8.0
    reference: tuple[bytes, ReferenceSection] | None = None  # reference.npz and its section, once verify made them
    explain: bool = True  # record what `edgekit explain` needs
    simulated: GraphModule | None = None  # PT2E's converted graph (static or dynamic int8), for per-module fidelity
    module_fidelity: ModuleFidelityResult | None = None  # per-module SQNR rows and how they were measured
