"""Stage 4: lower to an ExecuTorch program, through the target backend's delegate (its family's partition step,
:mod:`edgekit.backends`; XNNPACK's is :mod:`edgekit.pipeline.xnnpack`) or on portable kernels only. What still runs on
portable kernels is listed with the partitioner's own reason.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .. import upstream
from ..backends import family
from ..errors import LowerError, first_line
from ..targets import Backend

if TYPE_CHECKING:
    from executorch.exir import EdgeProgramManager, ExecutorchProgramManager
    from torch.export import ExportedProgram
    from torch.fx import GraphModule, Node
    from torch.fx.passes.infra.pass_base import PassResult

#: Why an op with no partitioner rule of its own stays on portable kernels.
_KNOWN_REASONS = {
    "embedding_byte": "quantized embedding lookup: ExecuTorch's quantized kernels run it (XNNPACK has no embedding op)",
    "embedding_4bit": "quantized embedding lookup: ExecuTorch's quantized kernels run it (XNNPACK has no embedding op)",
    "sym_size": "reads a dynamic dimension's size for shape arithmetic (host side, no compute)",
}


@dataclass(frozen=True)
class LowerResult:
    pte: bytes
    delegation: dict
    info: dict
    explain: dict | None = None  # instructions in the user's module names and the memory plan (explain_memory)
    explain_error: str | None = None  # why they could not be recorded (the build goes on without them)
    data: bytes | None = None  # the external weights (a .ptd file) when ``external_weights`` asked for them


def _op_type(node_name: str) -> str:
    """``aten_view_copy_default_3`` → ``aten_view_copy_default`` (executorch's delegation info names ops so)."""
    return re.sub(r"_\d+$", "", node_name)


class _WhyNot(logging.Handler):
    """Collects XNNPACK's ``WhyNoPartition`` debug records: op type → the partitioner's reasons."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: dict[str, set[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        why = record.msg  # the WhyNoPartition object itself, read now (it is reused for the next node)
        node, reason = getattr(why, "node", None), getattr(why, "reason", None)
        if node is not None and reason:
            reason = str(reason).rstrip(".")
            self.reasons.setdefault(_op_type(node.name), set()).add(
                _explain(node) if reason == "invalid dtype" else reason
            )

    def __enter__(self) -> "_WhyNot":
        self.logger = logging.getLogger(
            "executorch.backends.xnnpack.partition"
        )  # not _passes: their debug records cost time
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]


def _explain(node: Node) -> str:
    """XNNPACK says "invalid dtype" for any argument it cannot take: say which."""
    import torch

    args = [
        a
        for arg in node.args
        for a in (arg if isinstance(arg, (list, tuple)) else [arg])
        if isinstance(a, torch.fx.Node)
    ]
    vals = [a.meta.get("val") for a in args]
    if any(isinstance(v, torch.SymInt) for v in vals):
        return "takes a dynamic size as an argument (XNNPACK needs it static here)"
    dtypes = sorted(
        {str(v.dtype).removeprefix("torch.") for v in vals if isinstance(v, torch.Tensor)}
        - {"float32", "float16", "int8", "uint8", "int32"}
    )
    if dtypes:
        return f"{', '.join(dtypes)} data: XNNPACK computes in float32/float16 and int8"
    return "an argument type XNNPACK does not take"


def _xnnpack_ops() -> set[str]:
    """Op types that XNNPACK's partitioner has a rule for (``aten_view_copy_default``, ...)."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS

    return {
        "aten_" + cfg.target_name.replace(".", "_")
        for cfg in ALL_PARTITIONER_CONFIGS
        if getattr(cfg, "target_name", None)
    }


def delegation_summary(
    graph_module: GraphModule, reasons: dict[str, set[str]] | None = None, backend: Backend = Backend.XNNPACK
) -> dict:
    """How much of the graph the delegate took: partitions, node counts, and per operator.

    ``by_operator[op] = {"delegated": n, "portable": m}``: ``portable`` counts nodes left to ExecuTorch's
    own kernels (a delegated ``getitem`` is bookkeeping, not compute). ``portable_reasons[op]`` says why.
    """
    # counted as executorch.devtools' get_delegation_info does (by node name), without importing devtools: that
    # pulls in pandas, 0.15-0.2 s of every build
    counts: dict[str, dict[str, int]] = {}
    partitions = 0
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and _op_type(node.name) != "executorch_call_delegate":
            counts.setdefault(_op_type(node.name), {"delegated": 0, "portable": 0})["portable"] += 1
        elif node.op == "get_attr" and node.name.startswith("lowered_module_"):
            partitions += 1
            for inner in getattr(graph_module, node.name).original_module.graph.nodes:
                if inner.op == "call_function":
                    counts.setdefault(_op_type(inner.name), {"delegated": 0, "portable": 0})["delegated"] += 1
    # getitem only unpacks a delegate call's outputs: counting it as "left on portable kernels" misleads.
    by_op = {op: v for op, v in sorted(counts.items()) if op != "getitem"}
    portable = sorted(op for op, v in by_op.items() if v["portable"])
    return {
        "delegated_partitions": partitions,
        "delegated_nodes": sum(v["delegated"] for v in by_op.values()),
        "portable_nodes": sum(v["portable"] for v in by_op.values()),
        "portable_ops": portable,
        "by_operator": by_op,
        "portable_reasons": {op: _reasons_for(op, reasons or {}, backend) for op in portable},
    }


def _reasons_for(op: str, reasons: dict[str, set[str]], backend: Backend) -> list[str]:
    if family(backend).partition is None:
        return ["the target lowers without a delegate (portable kernels only)"]
    if op in reasons:
        return sorted(reasons[op])
    for key, why in _KNOWN_REASONS.items():
        if key in op:
            return [why]
    if op not in _xnnpack_ops():
        return ["XNNPACK's partitioner has no rule for this operator"]
    return ["XNNPACK's partitioner declined it without a reason (a dtype or layout it does not take)"]


def _fuse_quantized_embeddings(edge: EdgeProgramManager) -> EdgeProgramManager:
    """torchao's dequantize + embedding → ExecuTorch's quantized embedding ops (embedding_byte / embedding_4bit),
    with the packed weights folded to constants (as executorch's own quant-fusion tests do)."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass
    from executorch.exir.passes.quant_fusion_pass import QuantFusionPass, _get_node_value_dict

    edge = edge.transform(
        [QuantFusionPass(_fix_node_meta_val=True, node_value_dict=_get_node_value_dict(edge.exported_program()))]
    )
    constant_prop_pass(edge.exported_program())
    return edge


def lower_program(
    program: ExportedProgram,
    backend: Backend,
    fuse_embeddings: bool = False,
    explain: bool = False,
    constant_methods: dict | None = None,
    prepare: bool = True,
    check_ir: bool = True,
    external_weights: tuple[str, ...] = (),
) -> LowerResult:
    """Lower an ExportedProgram with ``to_edge_transform_and_lower`` and serialize it (``fuse_embeddings``: the
    program holds torchao-quantized embedding tables to fuse into ExecuTorch's quantized embedding kernels;
    ``explain``: record what ``edgekit explain`` needs, :mod:`edgekit.pipeline.explain`; ``constant_methods``: zero-input
    methods returning these values, as ExecuTorch's text runner reads a generation program's limits; ``prepare``: the
    pre-lowering rewrites for classifiers and encoders; ``check_ir``: the edge dialect's validity check, which
    ExecuTorch's custom ops, such as a generation program's KV-cache ops, do not pass; ``external_weights``: the
    modules (``embed_tokens``, ``lm_head``) whose weights go to one external data file, XNNPACK's and the portable
    kernels' alike, where ExecuTorch stores equal bytes once: a tied table quantized the same way for the embedding
    and the output layer is kept once instead of twice).

    Raises:
        LowerError: edge conversion, partitioning or serialization failed.
    """
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    fam = family(backend)
    partitioners, passes, applied = [], [], []
    try:
        if fam.partition is not None:
            partitioners, program, passes, applied = fam.step("partition")(program, prepare)
        tagged = _external_placeholders(program, external_weights)
        if tagged:
            passes = [*passes, _tag_delegate_weights(tagged)]
        with (
            _WhyNot() as why,
            upstream.applied("exported-ranges-kept", program),  # put back before the memory plan (to_executorch)
            upstream.applied("shapes-only-quant-ops"),
            contextlib.ExitStack() as patches,
        ):
            for name in fam.lowering_patches:
                patches.enter_context(upstream.applied(name))
            edge = to_edge_transform_and_lower(
                program,
                transform_passes=passes or None,
                partitioner=partitioners,
                compile_config=EdgeCompileConfig(_check_ir_validity=check_ir and not fuse_embeddings),
                generate_etrecord=explain,
                constant_methods=constant_methods,
            )
        if fuse_embeddings:
            edge = _fuse_quantized_embeddings(edge)
        delegation = {
            **delegation_summary(edge.exported_program().graph_module, why.reasons, backend),
            "passes": applied,
        }
        if tagged:
            from executorch.exir import ExecutorchBackendConfig

            et = edge.to_executorch(
                ExecutorchBackendConfig(
                    external_constants=lambda n: EXTERNAL_TAG if _is_external(n.name, tagged) else None
                )
            )
        else:
            et = edge.to_executorch()
        pte = bytes(et.buffer)
        data = _external_data(et) if tagged else None
        recorded, error = _record_explain(et, pte) if explain else (None, None)
    except LowerError:
        raise
    except Exception as exc:
        first = first_line(exc)
        raise LowerError(
            f"lowering to ExecuTorch ({backend.value}) failed: {first[:300]}",
            "an operator may be unsupported by the edge dialect; try the portable-fp32 target or simplify that op",
        ) from exc
    return LowerResult(
        pte,
        delegation,
        {"backend": backend.value, "partitioner": type(partitioners[0]).__name__ if partitioners else None},
        recorded,
        error,
        data,
    )


#: the tag (and .ptd file stem) of a program's external weights
EXTERNAL_TAG = "model"


def _external_placeholders(program: ExportedProgram, modules: tuple[str, ...]) -> tuple[str, ...]:
    """The name prefixes of the program inputs that hold ``modules``' weights. Lowering renames a quantized weight's
    input as it flattens it into data, scales and zero points (``p_lm_head_weight`` → ``p_lm_head_weight_qdata``
    & co.), so inputs are matched by the prefix export gave them; only modules the program has count."""
    if not modules:
        return ()
    sig = program.graph_signature
    fqns = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    present = [m for m in modules if any(f == m or f.startswith(m + ".") for f in fqns.values())]
    return tuple("p_" + m.replace(".", "_") + "_" for m in present)


def _is_external(name: str, prefixes: tuple[str, ...]) -> bool:
    return name.startswith(prefixes)


def _tag_delegate_weights(names: tuple[str, ...]) -> Callable[[GraphModule], PassResult]:
    """An edge pass marking those inputs for XNNPACK to write into the external data instead of its own blob."""
    from torch.fx.passes.infra.pass_base import PassResult

    def tag(gm: GraphModule) -> PassResult:
        for node in gm.graph.nodes:
            if node.op == "placeholder" and _is_external(node.name, names):
                node.meta.setdefault("custom", {})["delegate_constant_tag"] = EXTERNAL_TAG
        return PassResult(gm, True)

    return tag


def _external_data(et: ExecutorchProgramManager) -> bytes:
    # ExecutorchProgramManager has no public accessor in executorch 1.5.1 (ExecutorchProgram's data_files() is
    # the older class's); write_tensor_data_to_file would go through a folder for the same bytes
    data = {name: bytes(cord) for name, cord in (et._tensor_data or {}).items()}
    if set(data) != {EXTERNAL_TAG}:
        raise LowerError(
            f"ExecuTorch wrote external data files {sorted(data)} where one, {EXTERNAL_TAG!r}, was asked for",
            'set [quantize] embeddings = "int4" in a target file to keep the table inside the program, and report it',
        )
    return data[EXTERNAL_TAG]


def _record_explain(et: ExecutorchProgramManager, pte: bytes) -> tuple[dict | None, str | None]:
    """The instructions in module names and the memory plan; a failure here costs the explanation, not the build."""
    from .explain import instructions
    from .explain_memory import memory_plan

    try:
        return {"instructions": instructions(pte, et.get_etrecord()), "memory": memory_plan(et)}, None
    except Exception as exc:  # private executorch APIs: a change there must not break builds
        return None, f"{type(exc).__name__}: {first_line(exc)[:160]}"


def deflate_size(data: bytes) -> int:
    """Size after zlib/deflate at level 9: what a zip or an HTTP gzip download would roughly cost."""
    import zlib

    return len(zlib.compress(data, 9))
