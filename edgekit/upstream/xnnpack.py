"""Patches to ExecuTorch's XNNPACK backend (see :mod:`edgekit.upstream` for the registry): its partition passes
skipped where they cannot change anything, and its quantizer's conv + BatchNorm patterns traced once per process."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, ContextManager, Optional

from ._shared import Shared

if TYPE_CHECKING:
    import types

    import torch
    from executorch.exir.pass_base import ExportPass
    from torch.fx import GraphModule, Node
    from torch.fx.passes.infra.pass_base import PassResult

    #: a pass's own ``call`` (None: it inherits its base class's)
    PassCall = Callable[[ExportPass, GraphModule], PassResult]


def skip_unchanging_passes() -> ContextManager[None]:
    """XNNPACK's delegate runs 17 passes on every partition, and most end by retracing the partition through fake
    tensors (symbolic shapes included) whether they changed it or not; two first build their patterns by exporting small
    models (3 s a process, more than a small model's whole lowering). Each pass in :func:`SKIPPABLE_PASSES` rewrites only
    around nodes of its ops; on a partition with none of them it would find nothing and retrace an unchanged graph, so
    there it is skipped while a lowering runs. The ops are read from each pass's source (patterns: a test checks them
    against the real ones) for the pinned executorch; a test builds programs both ways and compares their bytes. The
    passes' own ``call`` is back when the last open block ends (before, it stayed replaced for the process's life, the
    host application's own lowerings included)."""
    return _SKIP_SCOPE.block()


def _install_skips() -> dict[type[ExportPass], Optional[PassCall]]:
    from torch.fx.passes.infra.pass_base import PassResult

    saved = {}
    for cls, ops in SKIPPABLE_PASSES().items():
        names = frozenset(op.__name__ for op in ops)

        def call(
            self: ExportPass, graph_module: GraphModule, _full: PassCall = cls.call, _names: frozenset[str] = names
        ) -> PassResult:
            present = (n.target for n in graph_module.graph.nodes if n.op == "call_function")
            if _names.isdisjoint(getattr(t, "__name__", None) for t in present):
                return PassResult(graph_module, False)
            return _full(self, graph_module)

        saved[cls] = cls.__dict__.get("call")  # None: inherited
        cls.call = call
    return saved


def _uninstall_skips(saved: dict[type[ExportPass], Optional[PassCall]]) -> None:
    for cls, own in saved.items():
        if own is None:
            del cls.call
        else:
            cls.call = own


_SKIP_SCOPE = Shared(_install_skips, _uninstall_skips)


def SKIPPABLE_PASSES() -> dict[type[ExportPass], set[torch._ops.OpOverload]]:  # noqa: N802 (a table, built on demand: it needs the stack)
    """XNNPACK passes → the edge ops one of which a partition must hold for the pass to change it."""
    from executorch.backends.xnnpack._passes.conv1d_unsqueeze_pass import Conv1dUnsqueezePass
    from executorch.backends.xnnpack._passes.convert_to_sdpa import ConvertToSDPAPass
    from executorch.backends.xnnpack._passes.convert_to_upsample_bilinear2d import ConvertToUpsampleBilinear2d
    from executorch.backends.xnnpack._passes.decompose_batch_norm import DecomposeBatchNorm
    from executorch.backends.xnnpack._passes.decompose_cat import DecomposeConcatenate
    from executorch.backends.xnnpack._passes.fuse_activation_pass import FuseActivationPass
    from executorch.backends.xnnpack._passes.fuse_batch_norm import FuseBatchNormPass
    from executorch.backends.xnnpack._passes.prelu_reshape_pass import PReLUReshapePass
    from executorch.exir.dialects._ops import ops as exir_ops

    aten = exir_ops.edge.aten
    return {
        ConvertToSDPAPass: {aten._softmax.default},  # in every SDPA pattern (tested)
        ConvertToUpsampleBilinear2d: {aten.upsample_bilinear2d.vec},  # the pattern itself, undecomposed (tested)
        FuseBatchNormPass: set(DecomposeBatchNorm.BATCH_NORM_OPS),
        DecomposeBatchNorm: set(DecomposeBatchNorm.BATCH_NORM_OPS),
        Conv1dUnsqueezePass: {aten.convolution.default},
        PReLUReshapePass: {aten._prelu_kernel.default},
        DecomposeConcatenate: {aten.cat.default},
        FuseActivationPass: set(FuseActivationPass.FUSEABLE_ACTIVATIONS),
    }


_PATTERNS: dict[tuple, GraphModule] = {}  # one process's traced quantizer patterns (see cached_quantizer_patterns)
_PATTERNS_LOCK = threading.Lock()


def forget_traced_patterns() -> None:
    """Drop this process's traced quantizer patterns (the next prepare traces them again)."""
    _PATTERNS.clear()


def _pattern_key(
    pattern: Callable[..., object], example_inputs: tuple, is_cuda: bool, kwargs: dict[str, object]
) -> tuple | None:
    """What a quantizer pattern's traced graph depends on: the pattern function's code and the values it closes over
    (the conv function, whether there is a ReLU and whether it is in place), the example inputs' shapes and dtypes.
    None when it depends on anything else (then it is traced as usual)."""
    fn = getattr(pattern, "fn", pattern)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
    if not all(callable(c) or isinstance(c, (bool, int, float, str, type(None))) for c in cells):
        return None

    import torch

    def shape(
        t: object,
    ) -> (
        tuple[tuple[int, ...], torch.dtype] | str
    ):  # the pattern's inputs (placeholders when it is traced): their values do not matter
        return (tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else repr(t)

    inputs = tuple(shape(t) for t in example_inputs)
    return (code, cells, inputs, is_cuda, tuple(sorted((k, shape(v)) for k, v in kwargs.items())))


def cached_quantizer_patterns() -> ContextManager[None]:
    """XNNPACKQuantizer's annotation traces its conv + BatchNorm (+ ReLU) patterns with a strict torch.export each time
    it runs: twelve exports, the same graphs every time. They are traced once per process here (each caller gets its
    own copy; the matcher only reads it), and not at all for a graph without a batch norm: every one of those patterns
    holds one, so none can match there. PT2E's prepare folds each BatchNorm into the convolution or linear before it
    first, so that is most graphs, and a process's first quantized build (every `edgekit build` from the command line)
    is shorter by the traces: 1.3 s here (``benchmarks/results/first_build.txt``). Installed while any block is open, in
    any thread; the quantizer's own functions are back when the last one closes."""
    return _PATTERN_SCOPE.block()


def _install_patterns() -> tuple[types.ModuleType, Callable[..., GraphModule], Callable[..., list[list[Node]]]]:
    import copy

    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as utils

    original, conv_bn = utils._get_aten_graph_module_for_pattern, utils._do_annotate_conv_bn

    def conv_bn_where_a_batch_norm_is(gm: GraphModule, *args: object, **kwargs: object) -> list[list[Node]]:
        if not any(n.op == "call_function" and "batch_norm" in str(n.target) for n in gm.graph.nodes):
            return []  # the partitions annotated: none
        return conv_bn(gm, *args, **kwargs)

    def cached(
        pattern: Callable[..., object], example_inputs: tuple, is_cuda: bool = False, **kwargs: object
    ) -> GraphModule:
        key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return original(pattern, example_inputs, is_cuda, **kwargs)
        with _PATTERNS_LOCK:  # builds in threads trace a pattern once between them
            if key not in _PATTERNS:
                _PATTERNS[key] = original(pattern, example_inputs, is_cuda, **kwargs)
            return copy.deepcopy(_PATTERNS[key])

    utils._get_aten_graph_module_for_pattern, utils._do_annotate_conv_bn = cached, conv_bn_where_a_batch_norm_is
    return utils, original, conv_bn


def _uninstall_patterns(
    saved: tuple[types.ModuleType, Callable[..., GraphModule], Callable[..., list[list[Node]]]],
) -> None:
    utils, original, conv_bn = saved
    utils._get_aten_graph_module_for_pattern, utils._do_annotate_conv_bn = original, conv_bn


_PATTERN_SCOPE = Shared(_install_patterns, _uninstall_patterns)
