"""Stage 4: lower to an ExecuTorch program, through the XNNPACK delegate or on portable kernels only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LowerError, first_line
from ..targets import Backend


@dataclass(frozen=True)
class LowerResult:
    pte: bytes
    delegation: dict
    info: dict


def delegation_summary(graph_module: Any) -> dict:
    """How much of the graph the delegate took: partitions, node counts, and per operator.

    ``by_operator[op] = {"delegated": n, "portable": m}``: ``portable`` counts nodes left to ExecuTorch's
    own kernels (a delegated ``getitem`` is bookkeeping, not compute).
    """
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    # getitem only unpacks a delegate call's outputs: counting it as "left on portable kernels" misleads.
    by_op = {
        op: {"delegated": int(b.delegated), "portable": int(b.non_delegated)}
        for op, b in sorted(info.delegation_by_operator.items())
        if op != "getitem"
    }
    return {
        "delegated_partitions": int(info.num_delegated_subgraphs),
        "delegated_nodes": sum(v["delegated"] for v in by_op.values()),
        "portable_nodes": sum(v["portable"] for v in by_op.values()),
        "portable_ops": sorted(op for op, v in by_op.items() if v["portable"]),
        "by_operator": by_op,
    }


def _shape_envs(program: Any) -> list:
    import torch

    envs = {}
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            for dim in val.shape:
                if isinstance(dim, torch.SymInt):
                    envs[id(dim.node.shape_env)] = dim.node.shape_env
    return list(envs.values())


def _fuse_quantized_embeddings(edge: Any) -> Any:
    """torchao's dequantize + embedding → ExecuTorch's quantized embedding ops (embedding_byte / embedding_4bit),
    with the packed weights folded to constants (as executorch's own quant-fusion tests do)."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass
    from executorch.exir.passes.quant_fusion_pass import QuantFusionPass, _get_node_value_dict

    edge = edge.transform([QuantFusionPass(_fix_node_meta_val=True, node_value_dict=_get_node_value_dict(edge.exported_program()))])
    constant_prop_pass(edge.exported_program())
    return edge


def lower_program(program: Any, backend: Backend, fuse_embeddings: bool = False) -> LowerResult:
    """Lower an ExportedProgram with ``to_edge_transform_and_lower`` and serialize it (``fuse_embeddings``: the
    program holds torchao-quantized embedding tables to fuse into ExecuTorch's quantized embedding kernels).

    Raises:
        LowerError: edge conversion, partitioning or serialization failed.
    """
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    partitioners = []
    if backend is Backend.XNNPACK:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    # XNNPACK's channels-last pass re-runs convolutions on fake tensors, and torch's fake convolution picks
    # a backend with a size heuristic that installs a guard (batch < 16) on the program's shape environment.
    # The memory planner then sizes inputs for 15 samples whatever --dynamic-batch said. The guard is
    # irrelevant to XNNPACK (it resizes at run time), so the exported ranges are restored before planning.
    envs = _shape_envs(program)
    saved = [(env, dict(env.var_to_range)) for env in envs]
    try:
        edge = to_edge_transform_and_lower(program, partitioner=partitioners,
                                           compile_config=EdgeCompileConfig(_check_ir_validity=not fuse_embeddings))
        if fuse_embeddings:
            edge = _fuse_quantized_embeddings(edge)
        for env, ranges in saved:
            env.var_to_range.update(ranges)
        delegation = delegation_summary(edge.exported_program().graph_module)
        et = edge.to_executorch()
        pte = bytes(et.buffer)
    except Exception as exc:
        first = first_line(exc)
        raise LowerError(
            f"lowering to ExecuTorch ({backend.value}) failed: {first[:300]}",
            "an operator may be unsupported by the edge dialect; try the portable-fp32 target or simplify that op",
        ) from exc
    return LowerResult(pte, delegation, {"backend": backend.value, "partitioner": "XnnpackPartitioner" if partitioners else None})
