"""Kinds of program: the one place that decides whether a build, a package or a tune is a tensor model's program or a
generation program (or a kind added later), and which steps serve it.

A :class:`ProgramKind` says how to recognise its builds (from the target and task), its packages (from the manifest)
and its models (for ``tune``), which build options apply to it, and names its steps in the rooms that own them as
``"module:function"`` strings, imported on first use: this module sits on the ground floor and imports no room. Every
caller (``build()``, ``profile()``, the CLI's build, profile and tune, bench items) asks :func:`for_build`,
:func:`of_package` or :func:`for_tune` and calls :func:`step`; nothing else decides again.

Adding a kind is its own module of steps plus one :func:`register` call (``tests/test_kinds.py`` adds a toy one). Kinds
are asked in order, newest first; the tensor kind claims everything the others leave.

Steps and their signatures:

- ``build(request: BuildRequest) -> BuildResult`` (:mod:`edgekit.pipeline.request`)
- ``render_build(result: BuildResult) -> None``: the CLI's summary of a finished build
- ``profile_command(args: ProfileArgs) -> None``: the CLI's ``edgekit profile`` of such a package
- ``bench_item(suite, model, target, threads, built, device) -> BenchItem``: one measured bench item
- ``tune_command(args: TuneArgs) -> None``: the CLI's ``edgekit tune`` of such a model

A kind registered at run time exists in this process only: build workers (the local pool's spawned processes, Dask
workers) know the kinds registered when ``edgekit`` is imported. A kind that bench or tune builds must be registered
in :data:`KINDS` itself (or by a module its workers import); ``edgekit.builds`` refuses a job whose kind the worker
does not know.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .target_config import GENERATION

if TYPE_CHECKING:
    from .manifest import Manifest
    from .targets import Target

#: the step names every kind provides (see the module docstring)
STEPS = ("build", "render_build", "profile_command", "bench_item", "tune_command")

#: build options every kind takes (``BuildRequest`` fields); the rest apply only where a kind lists them
COMMON_OPTIONS = frozenset({"model", "target", "out", "eval", "force", "progress", "calibration_records"})


@dataclass(frozen=True)
class ProgramKind:
    """One kind of program (see the module docstring)."""

    name: str  # "tensor", "generation"
    label: str  # in messages about builds: "a text-generation build"
    noun: str  # in messages about packages: "a generation program"
    default_target: str  # the target when none is given
    claims_build: Callable[[Target | None, str | None], bool]  # (target or None, task) → this kind's build
    claims_package: Callable[[Manifest], bool]  # a package's manifest → this kind's package
    claims_model: Callable[[str], bool]  # a model spec → tune searches this kind's programs
    options: frozenset[str]  # the build options (BuildRequest fields) beyond COMMON_OPTIONS that apply
    steps: dict[str, str]  # step name → "module:function"
    why_not: str = ""  # the hint when an option that does not apply is given
    model_note: str = ""  # said when a model this kind serves is built as another kind's program
    budgets: frozenset[str] = frozenset()  # the target budget's fields (BudgetConfig) a build of this kind checks

    def __post_init__(self) -> None:
        missing = [s for s in STEPS if s not in self.steps]
        if missing:
            raise ValueError(f"program kind {self.name} names no {', '.join(missing)} step")
        from .target_config import BudgetConfig

        unknown = sorted(self.budgets - {f.name for f in dataclasses.fields(BudgetConfig)})
        if unknown:
            raise ValueError(f"program kind {self.name} names budgets the target has not: {', '.join(unknown)}")


def _is_generation_target(target: Target | None, task: str | None) -> bool:
    return task == GENERATION or (target is not None and target.task == GENERATION)


def _is_causal(spec: str) -> bool:
    from .causal import is_causal_lm

    return is_causal_lm(spec)


TENSOR = ProgramKind(
    name="tensor",
    label="a model's build",
    noun="a model's program",
    default_target="xnnpack-fp32",
    claims_build=lambda target, task: True,
    claims_package=lambda manifest: True,
    claims_model=lambda spec: True,
    options=frozenset(
        {
            "inputs",
            "calibration",
            "dynamic_batch",
            "dynamic_dims",
            "finetune",
            "finetune_epochs",
            "finetune_lr",
            "verify_samples",
            "seed",
            "task",
            "hf_output",
            "reference_samples",
            "reference_max_mb",
            "explain",
        }
    ),
    steps={
        "build": "edgekit.pipeline.build:build_tensor",
        "render_build": "edgekit.cli.render_build:build_summary",
        "profile_command": "edgekit.cli.profile:profile_tensor",
        "bench_item": "edgekit.bench.items:tensor_item",
        "tune_command": "edgekit.cli.tune:tune_tensor",
    },
    why_not="add --task text-generation (task='text-generation' from Python) for a generation program",
    budgets=frozenset({"max_size_mb", "max_p50_ms", "max_peak_rss_mb", "max_accuracy_drop", "min_sqnr_db"}),
)

GENERATION_KIND = ProgramKind(
    name="generation",
    label="a text-generation build",
    noun="a generation program",
    default_target="xnnpack-llm-8da4w",
    claims_build=_is_generation_target,
    claims_package=lambda manifest: manifest.generation is not None,
    claims_model=_is_causal,
    options=frozenset({"max_seq_len", "eval_chunks", "task"}),
    steps={
        "build": "edgekit.pipeline.generation:build_generation",
        "render_build": "edgekit.cli.render_build:generation_summary",
        "profile_command": "edgekit.cli.profile:profile_generation_package",
        "bench_item": "edgekit.bench.items:generation_item",
        "tune_command": "edgekit.cli.tune:tune_generation_model",
    },
    why_not="a text-generation build takes the model, --target, --eval, --eval-chunks, --max-seq-len, --group-size, "
    "--quantize-embeddings and its budgets --max-ppl-increase, --max-kld, --min-top1 (activations are quantized at run "
    "time: no calibration)",
    model_note="it is a causal language model: --task text-generation builds a generation program with a KV cache",
    # no max_p50_ms / max_peak_rss_mb: a generation profile checks no target budget (refused rather than ignored)
    budgets=frozenset({"max_size_mb", "max_ppl_increase_pct", "max_kld", "min_top1_pct"}),
)

#: the registered kinds, asked newest first; the tensor kind (which claims everything) stays last
KINDS: list[ProgramKind] = [GENERATION_KIND, TENSOR]


def register(kind: ProgramKind) -> None:
    """Add a kind of program, asked before the ones registered earlier (replaces one of the same name)."""
    KINDS[:] = [kind] + [k for k in KINDS if k.name != kind.name]


def unregister(name: str) -> None:
    """Remove a registered kind (not the tensor kind, which claims what no other kind does)."""
    if name == TENSOR.name:
        raise ValueError("the tensor kind cannot be removed")
    KINDS[:] = [k for k in KINDS if k.name != name]


def for_build(target: Target | None, task: str | None) -> ProgramKind:
    """The kind a build makes, from its target (None: not given) and task."""
    return next(k for k in KINDS if k.claims_build(target, task))


def of_manifest(manifest: Manifest) -> ProgramKind:
    """The kind of a package, from its manifest."""
    return next(k for k in KINDS if k.claims_package(manifest))


def of_package(program: str | Path) -> ProgramKind:
    """The kind of a package folder (or its ``.pte``); reads JSON only. A bare ``.pte``, or a folder whose manifest
    cannot be read, is a tensor program (its own checks then say what is wrong)."""
    from .errors import EdgekitError
    from .manifest import read_manifest

    path = Path(program)
    folder = path.parent if path.suffix == ".pte" else path
    if not (folder / "manifest.json").is_file():
        return TENSOR
    try:
        return of_manifest(read_manifest(folder))
    except EdgekitError:
        return TENSOR


def for_tune(spec: str) -> ProgramKind:
    """The kind of program ``tune`` searches for a model spec (a decoder: generation programs)."""
    return next(k for k in KINDS if k.claims_model(spec))


def step(kind: ProgramKind, name: str) -> Callable:
    """The kind's step ``name`` (one of :data:`STEPS`), imported from the room that owns it."""
    module, _, function = kind.steps[name].partition(":")
    return getattr(importlib.import_module(module), function)
