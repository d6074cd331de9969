"""What a build is asked to do (:class:`BuildRequest`), for every kind of program: ``build()``'s keywords and the CLI's
flags are thin constructors of it, and :func:`run_build` asks :mod:`edgekit.kinds` which kind's build serves it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import kinds
from ..errors import UsageError
from ..targets import Target, load_target

if TYPE_CHECKING:
    from os import PathLike

    import torch

    from ..data import Dataset
    from ..dynamic import DynamicDim
    from ..kinds import ProgramKind
    from ..specs import DynamicBatch, InputSpec, LoadedModel
    from .stages import StageEvent
    from .state import BuildResult

    #: a model: a spec string (``pkg.mod:factory``, ``file.py:factory``, ``model.pt2``, ``hf:DIR``, ``gguf:FILE``), an
    #: ``nn.Module`` (with ``inputs``) or a loaded model
    ModelSource = str | torch.nn.Module | LoadedModel
    #: data: a path (.npz/.npy/.pt file, a folder, a text file for hf: models), a Dataset, or a callable returning one
    DataSource = str | PathLike[str] | Dataset | Callable[[], Dataset] | None


@dataclass(frozen=True)
class BuildRequest:
    """One build: the model, the target, where to write, and the options (see :func:`edgekit.pipeline.build.build`
    for each). ``target`` is resolved (a :class:`Target`) once :func:`run_build` has chosen the kind."""

    model: ModelSource
    out: Path
    target: str | Path | Target | None = None
    inputs: Sequence[InputSpec] = ()
    calibration: DataSource = None
    eval: DataSource = None
    dynamic_batch: DynamicBatch | None = None
    dynamic_dims: Sequence[DynamicDim] = ()
    finetune: DataSource = None
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    force: bool = False
    verify_samples: int = 32
    seed: int = 0
    task: str | None = None
    hf_output: str | None = None
    progress: Callable[[StageEvent], None] | None = None
    calibration_records: object | None = None  # get(key)/put(key, states): where calibration records are kept
    reference_samples: int = 4
    reference_max_mb: float = 8.0
    explain: bool = True
    max_seq_len: int | None = None
    eval_chunks: int | None = None

    @classmethod
    def of(cls, **fields: object) -> BuildRequest:
        """A request from ``build()``'s keywords or the CLI's values: ``out`` as a path, the sequences as tuples."""
        fields["out"] = Path(fields["out"])  # type: ignore[arg-type]
        for name in ("inputs", "dynamic_dims"):
            fields[name] = tuple(fields.get(name) or ())  # type: ignore[arg-type]
        return cls(**fields)  # type: ignore[arg-type]

    @property
    def resolved_target(self) -> Target:
        if not isinstance(self.target, Target):
            raise TypeError("BuildRequest.target is resolved by run_build")
        return self.target

    def given(self) -> list[str]:
        """The options set to something other than their default."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.default is not dataclasses.MISSING and _differs(getattr(self, f.name), f.default)
        ]

    def check_applies(self, kind: ProgramKind, spell: Callable[[str], str] = str) -> None:
        """Refuse, in one line, the options that do nothing for this kind of program (named by ``spell``: the CLI
        spells them as its flags)."""
        extra = [spell(n) for n in self.given() if n not in kinds.COMMON_OPTIONS and n not in kind.options]
        if extra:
            raise UsageError(f"{', '.join(extra)} do(es) not apply to {kind.label}", kind.why_not)

    @staticmethod
    def check_budgets(kind: ProgramKind, tgt: Target, spell: Callable[[str], str] = lambda f: f"budget.{f}") -> None:
        """Refuse, in one line, the budgets a build of this kind cannot check (``budget.max_kld`` on a model's program,
        ``budget.min_sqnr_db`` on a generation program), named by ``spell`` (the CLI names its flags)."""
        set_ = [f.name for f in dataclasses.fields(tgt.budget) if getattr(tgt.budget, f.name) is not None]
        extra = [spell(f) for f in set_ if f not in kind.budgets]
        if extra:
            raise UsageError(
                f"{', '.join(extra)} do(es) not apply to {kind.label}",
                f"{kind.label} is budgeted by {', '.join(sorted(kind.budgets))} (in a target file's [budget]); drop the "
                "others from the command or the target",
            )


def _differs(value: object, default: object) -> bool:
    if isinstance(default, tuple):
        return bool(value)  # an empty list is the empty default
    return value is not default and value != default


def run_build(request: BuildRequest) -> BuildResult:
    """Choose the kind of program once (from the target and task), check the options fit it, and run its build."""
    given = None if request.target is None else load_target(request.target)
    kind = kinds.for_build(given, request.task)
    request.check_applies(kind)
    tgt = given if given is not None else load_target(kind.default_target)
    request.check_budgets(kind, tgt)
    return kinds.step(kind, "build")(dataclasses.replace(request, target=tgt))
