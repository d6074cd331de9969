"""Stage 3: PT2E int8 quantization with the XNNPACK quantizer, calibrated on user data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import torch  # this module is only imported by a build, which has loaded torch already

from .. import upstream
from ..backends import family
from ..data import Dataset
from ..errors import QuantizeError, first_line
from ..targets import Backend, EmbeddingQuant, QuantScheme
from .export import ExportResult


@dataclass(frozen=True)
class QuantizeResult:
    exported: ExportResult
    info: QuantizeInfo
    simulated: GraphModule | None = None  # PT2E's converted graph: the quantized model simulated in PyTorch


def quantizer_for(
    scheme: QuantScheme, fp32_layers: tuple[str, ...] = (), backend: Backend = Backend.XNNPACK
) -> XNNPACKQuantizer:
    """The target backend's PT2E quantizer (:mod:`edgekit.backends`) configured for ``scheme``, leaving the modules
    named in ``fp32_layers`` in float32."""
    return family(backend).step("quantizer")(scheme, fp32_layers)


def xnnpack_quantizer(scheme: QuantScheme, fp32_layers: tuple[str, ...] = ()) -> XNNPACKQuantizer:
    """The XNNPACK family's quantizer: XNNPACKQuantizer configured for ``scheme``, leaving the modules named in
    ``fp32_layers`` in float32."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    per_channel = scheme is not QuantScheme.INT8_STATIC_PER_TENSOR
    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=scheme.is_dynamic)
    quantizer = XNNPACKQuantizer().set_global(config)
    if fp32_layers:
        from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

        keep = [get_module_name_filter(name) for name in fp32_layers]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in keep))
    return quantizer


def layer_names(program: ExportedProgram) -> list[str]:
    """Module names of the quantizable layers (conv, linear) in an exported program, in graph order."""
    names = []
    for node in program.graph.nodes:
        if node.op == "call_function" and any(k in str(node.target) for k in ("conv", "linear")):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                names.append(list(stack.values())[-1][0])
    return list(dict.fromkeys(names))


def check_layers(program: ExportedProgram, fp32_layers: tuple[str, ...]) -> None:
    """Raises QuantizeError naming a ``quantize.fp32_layers`` entry that is no conv or linear of the model."""
    if not fp32_layers:
        return
    known = layer_names(program)
    missing = [n for n in fp32_layers if n not in known and not any(k.startswith(n + ".") for k in known)]
    if missing:
        raise QuantizeError(
            f"quantize.fp32_layers names {', '.join(missing)}: no conv or linear layer of the model",
            "layers: " + ", ".join(known[:12]) + (" …" if len(known) > 12 else ""),
        )


def calibration_batch_size(exported: ExportResult) -> int:
    """Samples per calibration call: the example batch for static shapes (``module()`` guards it)."""
    if not exported.batch_dynamic:
        return int(exported.example_inputs[0].shape[0])
    return max(2, min(32, int(exported.example_inputs[0].shape[0]) * 8))


def quantize_program(
    exported: ExportResult,
    scheme: QuantScheme,
    calibration: Dataset,
    fp32_layers: tuple[str, ...] = (),
    records: CalibrationStore | None = None,
    backend: Backend = Backend.XNNPACK,
) -> QuantizeResult:
    """Quantize an exported program: prepare, calibrate on ``calibration``, convert, re-export.

    Args:
        exported: the export stage's result (not modified).
        scheme: a quantizing scheme (not ``none``).
        calibration: samples fitted to the model's inputs.
        records: calibration records (``get``/``put``, see :mod:`edgekit.pipeline.calibration`): a static scheme loads an earlier calibration
            of the same traced model on the same data from it instead of calibrating (and stores its own there).

    Raises:
        QuantizeError: the quantizer could not prepare, calibrate or convert the model.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared, used, reused = prepare_calibrated(exported, scheme, calibration, fp32_layers, records, backend)
    try:
        converted = convert_pt2e(prepared)
        with torch.no_grad():
            program = torch.export.export(
                converted, exported.example_inputs, dynamic_shapes=exported.dynamic_shapes, strict=bool(exported.strict)
            )
    except Exception as exc:
        raise QuantizeError(f"PT2E convert failed: {first_line(exc, 200)}", "try the xnnpack-fp32 target") from exc
    info: QuantizeInfo = {
        "scheme": scheme.value,
        "quantizer": family(backend).quantizer_label,
        "per_channel": scheme is not QuantScheme.INT8_STATIC_PER_TENSOR,
        "dynamic": scheme.is_dynamic,
        "calibration_samples": used,
        "calibration_batch": calibration_batch_size(exported),
        "calibration": calibration.source,
        "calibration_reused": reused,
        "fp32_layers": list(fp32_layers),
    }
    return QuantizeResult(
        ExportResult(
            program, exported.example_inputs, exported.dynamic_shapes, exported.strict, exported.fallback_reason
        ),
        info,
        converted,
    )


class _Float16(torch.nn.Module):
    """Runs ``module`` in float16 behind a float32 interface: floating inputs are cast down, floating outputs back
    up, so the program takes and returns what the fp32 model does (the casts run once per call, on the I/O only)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> object:
        from torch.utils._pytree import tree_map

        down = lambda t: t.to(torch.float16) if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
        up = lambda t: t.to(torch.float32) if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
        return tree_map(up, self.module(*tree_map(down, args)))


def to_fp16(model: LoadedModel) -> LoadedModel:
    """A copy of ``model`` (a LoadedModel) that computes in float16 (weights, buffers and activations) with float32
    inputs and outputs. The eager module is cast, not the traced graph, so code that follows its parameters' dtype
    (attention masks' ``finfo(dtype).min``) stays right. A saved ExportedProgram is cast through its ``.module()``.

    Raises:
        QuantizeError: the model does not run in float16 (an op without a float16 kernel on this CPU).
    """
    import copy

    from ..models import LoadedModel

    source = model.exported.module() if model.exported is not None else model.module
    module = _Float16(copy.deepcopy(source).to(torch.float16)).eval()
    try:
        with torch.no_grad():
            module(*model.example_inputs)
    except Exception as exc:
        raise QuantizeError(
            f"the model does not run in float16: {first_line(exc, 200)}", "use an int8 scheme or fp32 (-t xnnpack-fp32)"
        ) from exc
    return LoadedModel(model.spec, module, model.example_inputs, tokenizer=model.tokenizer, task=model.task)


def prepare_calibrated(
    exported: ExportResult,
    scheme: QuantScheme,
    calibration: Dataset,
    fp32_layers: tuple[str, ...] = (),
    records: CalibrationStore | None = None,
    backend: Backend = Backend.XNNPACK,
) -> tuple[GraphModule, int, bool]:
    """PT2E prepare, then calibrate, unless the observers' states can be loaded from ``records`` (where they are
    stored otherwise). Returns (the calibrated prepared module, samples used, whether loaded).

    Raises:
        QuantizeError: prepare or calibration failed, or the data does not fill one batch.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from .calibration import observed_states, record_key, restore

    batch = calibration_batch_size(exported)
    check_layers(exported.program, fp32_layers)
    try:
        with upstream.applied("xnnpack-quantizer-patterns-once"):
            prepared = prepare_pt2e(exported.program.module(), quantizer_for(scheme, fp32_layers, backend))
    except Exception as exc:
        raise QuantizeError(
            f"PT2E prepare failed: {first_line(exc)}", "try the xnnpack-fp32 target to check the rest of the pipeline"
        ) from exc
    key = record_key(exported, calibration, batch) if records is not None and scheme.needs_calibration else None
    states = records.get(key) if key else None
    whole = len(calibration) - len(calibration) % batch  # what the loop below would use: whole batches
    if states is not None and whole and restore(prepared, states):
        return prepared, whole, True
    used = 0
    try:
        with torch.no_grad():
            for sample in calibration.batches(batch):
                prepared(*sample)
                used += int(sample[0].shape[0])
    except Exception as exc:
        raise QuantizeError(
            f"calibration failed on a sample from {calibration.source}: {first_line(exc, 200)}",
            "check the calibration data matches the model's inputs",
        ) from exc
    if used == 0:
        raise QuantizeError(
            f"no calibration batch of {batch} sample(s) could be formed from {len(calibration)} sample(s)",
            f"give at least {batch} samples",
        )
    if key:
        records.put(key, observed_states(prepared))
    return prepared, used, False


def quantize_embeddings(model: LoadedModel, kind: EmbeddingQuant) -> tuple[LoadedModel, list[str]]:
    """A copy of ``model`` (a LoadedModel) whose ``nn.Embedding`` tables are quantized weight-only, per row
    (torchao ``IntxWeightOnlyConfig``, symmetric); the lower stage fuses them to ExecuTorch's quantized embedding
    kernels. Returns the copy and the tables' names (none: the model passes through unchanged).

    A saved ExportedProgram has no nn.Embedding modules (its tables are graph constants): it passes through, and the
    caller says so.

    Raises:
        QuantizeError: torchao failed.
    """
    import copy

    import torch

    from ..models import LoadedModel

    if model.exported is not None:
        return model, []
    tables = [name for name, m in model.module.named_modules() if isinstance(m, torch.nn.Embedding)]
    if not tables:
        return model, []
    from torchao.quantization.granularity import PerAxis
    from torchao.quantization.quant_api import IntxWeightOnlyConfig, quantize_

    module = copy.deepcopy(model.module)
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding):
            # padding_idx changes only gradients, and ExecuTorch's fusion pattern expects the default (-1): a word
            # table with padding_idx = 0 (BERT's) would otherwise stay a float dequantize the runtime cannot run.
            m.padding_idx = None
    bits = {"int8": torch.int8, "int4": torch.int4}[kind.value]
    try:
        quantize_(
            module,
            IntxWeightOnlyConfig(weight_dtype=bits, granularity=PerAxis(0)),
            lambda m, fqn: isinstance(m, torch.nn.Embedding),
        )
    except Exception as exc:
        raise QuantizeError(
            f"quantizing the embedding tables failed: {first_line(exc, 200)}", "pass --quantize-embeddings none"
        ) from exc
    return LoadedModel(model.spec, module, model.example_inputs), tables


# Below the code on purpose: an fp16 package's explain.json records _Float16.forward's source line (where the casts
# are), so the lines above it stay where they were and its packages stay byte for byte the same.
if TYPE_CHECKING:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torch.export import ExportedProgram
    from torch.fx import GraphModule

    from ..specs import LoadedModel
    from .calibration import CalibrationStore


class QuantizeInfo(TypedDict):
    """What PT2E quantization did, as the manifest's ``quantize`` section names it (the build adds the rest)."""

    scheme: str
    quantizer: str
    per_channel: bool
    dynamic: bool
    calibration_samples: int
    calibration_batch: int
    calibration: str  # the data's source
    calibration_reused: bool  # the observers' states were loaded from a calibration record
    fp32_layers: list[str]
