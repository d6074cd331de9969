"""The XNNPACK family's lowering step (:mod:`edgekit.backends`): its partitioner, and the rewrites that give XNNPACK ops
it has no kernel for as ops it has (each is listed in the manifest's ``delegation.passes``): ``layer_norm`` as
linear/sub/mul/rsqrt (a mean is a linear with a constant 1/n row, so it works at any sequence length), no-op
``expand_copy`` removed, static ``unsqueeze``/``squeeze`` as ``view``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..upstream.export import shape_envs

if TYPE_CHECKING:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir.pass_base import PassResult
    from torch.export import ExportedProgram
    from torch.fx import GraphModule

    #: an edge pass: a graph module in, the pass's result out
    EdgePass = Callable[[GraphModule], PassResult]


def _layer_norm_as_linear(
    x: torch.Tensor,
    normalized_shape: list[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    cudnn_enable: bool = True,
) -> torch.Tensor:
    """``layer_norm`` over the last dimension with ops XNNPACK has: each mean is a linear with a 1/n row."""
    import torch

    if len(normalized_shape) != 1:
        return torch.ops.aten.native_layer_norm.default(x, normalized_shape, weight, bias, eps)[0]
    n = int(normalized_shape[0])
    row = torch.full((1, n), 1.0 / n, dtype=x.dtype)
    centred = x - torch.nn.functional.linear(x, row)
    y = centred * torch.rsqrt(torch.nn.functional.linear(centred * centred, row) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def prepare_for_xnnpack(program: ExportedProgram) -> tuple[ExportedProgram, list[str]]:
    """Rewrite ops XNNPACK has no kernel for into ones it has, before lowering (the aten-level part)."""
    import torch
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    ln = torch.ops.aten.layer_norm.default
    if not any(n.op == "call_function" and n.target == ln for n in program.graph.nodes):
        return program, []
    program = program.run_decompositions({ln: _layer_norm_as_linear})
    # fold only the 1/n rows into constants: quantize/dequantize pairs and everything else stay as they are
    skip = {
        n.target for n in program.graph.nodes if n.op == "call_function" and n.target != torch.ops.aten.full.default
    }
    program = constant_prop_pass(program, custom_skip_targets=skip)
    return program, ["layer_norm → linear-mean form"]


def _one_inferred_dim(graph_module: GraphModule) -> PassResult:
    """``view_copy(x, [1, s0, 12, 32])`` → ``view_copy(x, [1, -1, 12, 32])``: a reshape with one dynamic size is
    one XNNPACK runs (it infers that size at run time); the symbolic form it refuses."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    changed = False
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target != exir_ops.edge.aten.view_copy.default:
            continue
        shape = list(node.args[1])
        symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if len(symbolic) == 1 and -1 not in shape:
            shape[symbolic[0]] = -1
            node.args = (node.args[0], shape, *node.args[2:])
            changed = True
    if changed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, changed)


def _edge_passes(program: ExportedProgram) -> tuple[list[EdgePass], list[str]]:
    """The edge-level rewrites this program needs: each one re-traces the whole graph (about a second on
    MobileNetV2 @224), so only those whose operators occur are run."""
    from executorch.backends.transforms.replace_squeeze_unsqueeze_with_view import (
        ReplaceSqueezeAndUnsqueezeWithViewPass,
    )
    from executorch.backends.xnnpack._passes.remove_noop_expand_copy_pass import RemoveNoopExpandCopyPass

    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    passes, names = [], []
    if any("expand" in op or "matmul" in op for op in ops):  # matmul decomposes to expand + bmm at the edge
        passes.append(RemoveNoopExpandCopyPass())
        names.append("no-op expand_copy removed")
    if any("squeeze" in op for op in ops):
        passes.append(ReplaceSqueezeAndUnsqueezeWithViewPass())
        names.append("static squeeze/unsqueeze → view_copy")
    if shape_envs(program):
        passes.append(_one_inferred_dim)
        names.append("one dynamic reshape size → -1")
    return passes, names


def xnnpack_partition(
    program: ExportedProgram, prepare: bool
) -> tuple[list[XnnpackPartitioner], ExportedProgram, list[EdgePass], list[str]]:
    """The XNNPACK family's partition step (:mod:`edgekit.backends`): its partitioner, and with ``prepare`` the
    program rewritten for it and the edge passes (returns partitioners, program, passes, names of what was applied)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    passes: list[EdgePass] = []
    applied: list[str] = []
    if prepare:
        program, applied = prepare_for_xnnpack(program)
        passes, names = _edge_passes(program)
        applied += names
    return [XnnpackPartitioner()], program, passes, applied
