"""Patches around torch.export and ExecuTorch's lowering (see :mod:`edgekit.upstream` for the registry): attention
traced without its fused fast path, and the dynamic ranges a lowering narrows put back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, ContextManager

from ._shared import Shared

if TYPE_CHECKING:
    from torch.export import ExportedProgram
    from torch.fx.experimental.symbolic_shapes import ShapeEnv


def no_mha_fastpath() -> ContextManager[None]:
    """nn.TransformerEncoder/MultiheadAttention in eval mode take a fused "fast path"
    (``aten._transformer_encoder_layer_fwd``) that strict export captures and ExecuTorch cannot lower; the decomposed
    path computes the same thing with core ATen ops. Off while any export runs (the flag is the process's: builds in
    threads share one switch), as it was before once the last one ends."""
    return _FASTPATH_SCOPE.block()


def _fastpath_off() -> bool:
    import torch

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    return before


def _fastpath_back(before: bool) -> None:
    import torch

    torch.backends.mha.set_fastpath_enabled(before)


_FASTPATH_SCOPE = Shared(_fastpath_off, _fastpath_back)


def shape_envs(program: ExportedProgram) -> list[ShapeEnv]:
    """The shape environments of a program's symbolic dimensions (none for a static program)."""
    import torch

    envs = {}
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            for dim in val.shape:
                if isinstance(dim, torch.SymInt):
                    envs[id(dim.node.shape_env)] = dim.node.shape_env
    return list(envs.values())


@contextlib.contextmanager
def exported_ranges_kept(program: ExportedProgram) -> Iterator[None]:
    """XNNPACK's channels-last pass re-runs convolutions on fake tensors, and torch's fake convolution picks a backend
    with a size heuristic that installs a guard (batch < 16) on the program's shape environment; the memory planner
    then sizes inputs for 15 samples whatever --dynamic-batch said. The guard is irrelevant to XNNPACK (it resizes at
    run time), so the exported ranges are put back when the lowering inside this block ends, before planning."""
    saved = [(env, dict(env.var_to_range)) for env in shape_envs(program)]
    try:
        yield
    finally:
        for env, ranges in saved:
            env.var_to_range.update(ranges)
