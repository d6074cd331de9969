"""Stage 1: trace the model with ``torch.export`` (strict first, non-strict as a reported fallback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ExportError, first_line
from ..models import DynamicBatch, LoadedModel, contiguous


@dataclass(frozen=True)
class ExportResult:
    """The traced program and how it was obtained."""

    program: Any  # torch.export.ExportedProgram
    example_inputs: tuple
    dynamic_shapes: Any
    strict: bool | None  # None: the program was loaded from a .pt2, not traced here
    fallback_reason: str | None = None

    def info(self) -> dict:
        mode = "loaded" if self.strict is None else ("strict" if self.strict else "non-strict")
        return {"mode": mode, "fallback_reason": self.fallback_reason, "dynamic_batch": self.dynamic_shapes is not None}


def batch_examples(example_inputs: tuple, dynamic_batch: DynamicBatch | None) -> tuple:
    """Examples with a batch of at least 2 when the batch is dynamic (export specialises sizes 0 and 1)."""
    import torch

    if dynamic_batch is None:
        return example_inputs
    size = max(2, dynamic_batch.min)
    out = []
    for t in example_inputs:
        if t.shape[0] != size:
            reps = (size + t.shape[0] - 1) // t.shape[0]
            t = torch.cat([t] * reps)[:size]
        out.append(t)
    return contiguous(out)


def dynamic_shapes_for(example_inputs: tuple, dynamic_batch: DynamicBatch | None) -> Any:
    if dynamic_batch is None:
        return None
    from torch.export import Dim

    batch = Dim("batch", min=dynamic_batch.min, max=dynamic_batch.max)
    return tuple({0: batch} for _ in example_inputs)


class _no_mha_fastpath:
    """nn.TransformerEncoder/MultiheadAttention in eval mode take a fused "fast path"
    (``aten._transformer_encoder_layer_fwd``) that export captures and ExecuTorch cannot lower; the
    decomposed path computes the same thing with core ATen ops."""

    def __enter__(self) -> None:
        import torch

        self.prev = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.backends.mha.set_fastpath_enabled(self.prev)


def export_model(model: LoadedModel, dynamic_batch: DynamicBatch | None = None) -> ExportResult:
    """Trace ``model`` with ``torch.export``.

    Strict mode (TorchDynamo) is tried first; when it fails, non-strict tracing is tried and the strict
    failure is reported in ``fallback_reason``. A saved ExportedProgram is used as it is.

    Raises:
        ExportError: both modes failed; the message carries torch's reason in one line.
    """
    if model.exported is not None and dynamic_batch is None:
        return ExportResult(model.exported, model.example_inputs, None, None)
    examples = batch_examples(model.example_inputs, dynamic_batch)
    shapes = dynamic_shapes_for(examples, dynamic_batch)
    try:
        ep = _trace(model.module, examples, shapes, strict=True)
        return ExportResult(ep, examples, shapes, True)
    except Exception as strict_exc:  # torch raises many types here; all mean "try the other mode"
        reason = first_line(strict_exc)
    try:
        ep = _trace(model.module, examples, shapes, strict=False)
    except Exception as exc:
        hint = ("make forward traceable: no data-dependent Python control flow or .item() on tensors "
                "(use torch.cond), no unsupported Python side effects")
        if dynamic_batch is not None and ("Constraints violated" in str(exc) or "specialized" in str(exc)):
            hint = "the model fixes its batch size somewhere (a reshape with a literal batch?); drop --dynamic-batch or use -1"
        raise ExportError(f"torch.export failed for {model.spec}: {first_line(exc)}", hint) from exc
    return ExportResult(ep, examples, shapes, False, fallback_reason=reason)


def _trace(module: Any, examples: tuple, shapes: Any, *, strict: bool) -> Any:
    """One ``torch.export`` attempt. A failed one prints graph dumps before raising: they are dropped (the error
    is reported in one line), unless EDGEKIT_DEBUG is set."""
    import torch

    from .._noise import quiet

    with quiet(drop_on_error=True), torch.no_grad(), _no_mha_fastpath():
        return torch.export.export(module, examples, dynamic_shapes=shapes, strict=strict)
