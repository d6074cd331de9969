"""Stage 1: trace the model with ``torch.export`` (non-strict, torch's default, first; TorchDynamo's strict mode as a
reported fallback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .. import upstream
from ..dynamic import ResolvedDim, dynamic_shapes, export_examples
from ..errors import ExportError, first_line
from ..manifest import ExportSection
from ..models import LoadedModel, contiguous

if TYPE_CHECKING:
    import torch
    from torch.export import Dim, ExportedProgram

#: ``torch.export``'s ``dynamic_shapes``: per input, its dynamic dimensions (None: every shape is static)
DynamicShapes = tuple[dict[int, "Dim"], ...]


@dataclass(frozen=True)
class ExportResult:
    """The traced program and how it was obtained."""

    program: ExportedProgram
    example_inputs: tuple[torch.Tensor, ...]
    dynamic_shapes: DynamicShapes | None
    strict: bool | None  # None: the program was loaded from a .pt2, not traced here
    fallback_reason: str | None = None

    def info(self) -> ExportSection:
        """The manifest's ``export`` section."""
        mode = "loaded" if self.strict is None else ("strict" if self.strict else "non-strict")
        return ExportSection(mode=mode, fallback_reason=self.fallback_reason, dynamic_batch=self.batch_dynamic)

    @property
    def batch_dynamic(self) -> bool:
        return any(0 in shape for shape in self.dynamic_shapes or ())


def export_model(model: LoadedModel, dims: Sequence[ResolvedDim] = ()) -> ExportResult:
    """Trace ``model`` with ``torch.export``.

    Non-strict tracing (torch.export's default) is tried first; when it fails, strict mode (TorchDynamo) is tried
    and the non-strict failure is reported in ``fallback_reason``. A saved ExportedProgram is used as it is.

    Raises:
        ExportError: both modes failed; the message carries torch's reason in one line.
    """
    if model.exported is not None and not dims:
        return ExportResult(model.exported, model.example_inputs, None, None)
    examples = contiguous(export_examples(model.example_inputs, dims))
    shapes = dynamic_shapes(len(examples), dims)
    try:  # torch.export's default: non-strict tracing (on MobileNetV2 @224: 0.5 s; TorchDynamo's strict mode: 3.1 s)
        ep = _trace(model.module, examples, shapes, strict=False)
        return ExportResult(ep, examples, shapes, False)
    except Exception as exc:  # torch raises many types here; all mean "try the other mode"
        first = exc
    try:
        ep = _trace(model.module, examples, shapes, strict=True)
    except Exception:
        hint = (
            "make forward traceable: no data-dependent Python control flow or .item() on tensors "
            "(use torch.cond), no unsupported Python side effects"
        )
        text = str(first)
        if dims and ("Constraints violated" in text or "specialized" in text or "must be equal" in text):
            hint = _dims_hint(text, dims)
        raise ExportError(f"torch.export failed for {model.spec}: {first_line(first)}", hint) from first
    return ExportResult(ep, examples, shapes, True, fallback_reason=first_line(first))


def _trace(
    module: torch.nn.Module, examples: tuple[torch.Tensor, ...], shapes: DynamicShapes | None, *, strict: bool
) -> ExportedProgram:
    """One ``torch.export`` attempt. A failed one prints graph dumps before raising: they are dropped (the error
    is reported in one line), unless EDGEKIT_DEBUG is set."""
    import torch

    from .._noise import quiet

    with quiet(drop_on_error=True), torch.no_grad(), upstream.applied("no-mha-fastpath"):
        return torch.export.export(module, examples, dynamic_shapes=shapes, strict=strict)


def _dims_hint(message: str, dims: Sequence[ResolvedDim]) -> str:
    """What to change when export refuses the dynamic dimensions (torch names the symbol it had to fix or tie)."""
    import re

    for d in dims:
        if re.search(rf"\b{re.escape(d.name)}\b", message):
            if d.peers:
                return (
                    f"{d.label()} cannot change alone: if {', '.join(d.peers)} share its size, declare them "
                    f"together: {d.hint()}"
                )
            what = "batch size" if d.dim == 0 else f"size of {d.label()}"
            return (
                f"the model fixes the {what} somewhere (a reshape or a table with a literal size?), "
                f"or {d.min}..{d.max} is wider than it allows: narrow the range or drop that dynamic dimension"
            )
    return "a dynamic dimension is tied to another input or to a fixed size: check each --dynamic-dim against the model"
