"""What ``edgekit explain`` needs from a build, gathered while the graphs are still in memory and written beside the
program as ``explain.json`` (a few KB; the program alone has lost every name):

* ``instructions``: for each instruction of ``forward``, the modules it runs, in the user's own names. A portable
  kernel carries its node's module path, class and source line; an XNNPACK delegate call carries its XNNPACK graph's
  nodes in order (read back from the ``.pte``), each with the module, class and source line of the node it came from
  and what was fused into it. XNNPACK logs its operators' times without debug handles (executorch 1.5.1), so
  ``edgekit explain`` aligns the logged operator names with these nodes (:mod:`edgekit.explain.align`).
* ``modules``: per module, in execution order, the SQNR of its output between the fp32 model that was exported and
  PT2E's simulation of the quantized one (the program itself cannot expose intermediates; the simulation is what
  XNNPACK computes, up to rounding), so the least faithful layer has a name.
* ``memory``: ExecuTorch's memory plan: the arenas, each planned tensor's size, offset and lifetime over the
  instructions, and the largest live set with the modules it spans. XNNPACK's own activations live inside the
  delegate and are not planned.

The module names come from ``nn_module_stack`` and ``stack_trace`` of the edge program that ``to_edge_transform_and_
lower`` records in its ETRecord before partitioning (ExecuTorch's devtools route; the record itself, twice the
weights, is not kept). This module reads nodes and the ``.pte`` and maps instructions; the memory plan is
:mod:`edgekit.pipeline.explain_memory`, the per-module fidelity :mod:`edgekit.pipeline.explain_fidelity`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from importlib import resources
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from executorch.devtools.etrecord import ETRecord
    from executorch.exir.schema import Program
    from torch.fx import Node

EXPLAIN_NAME = "explain.json"
EXPLAIN_SCHEMA_VERSION = 1
XNN_INSERTED = 65535  # the debug handle of nodes XNNPACK's own passes insert (layout transposes, converts)
_QDQ = ("quantize_per", "dequantize_per", "choose_qparams", "quantize_affine", "dequantize_affine")

#: XNNPACK's serialized node types and the operator names its runtime logs, as one category each
XNODE_CATEGORY = {
    "XNNConv2d": "conv", "XNNDepthwiseConv2d": "conv", "XNNConvTranspose2d": "deconv", "XNNFullyConnected": "fc",
    "XNNStaticTranspose": "transpose", "XNNStaticReshape": "reshape", "XNNGlobalAvgPooling2d": "mean",
    "XNNConvert": "convert", "XNNClamp": "clamp", "XNNAdd": "add", "XNNSubtract": "sub", "XNNMultiply": "mul",
    "XNNDiv": "div", "XNNMaxPooling2d": "maxpool", "XNNAvgPooling2d": "avgpool", "XNNSoftmax": "softmax",
    "XNNSigmoid": "sigmoid", "XNNHardswish": "hardswish", "XNNStaticSlice": "slice", "XNNBatchMatrixMultiply": "bmm",
    "XNNStaticConstantPad": "pad", "XNNConcatenate2": "concat", "XNNConcatenate3": "concat",
    "XNNConcatenate4": "concat", "XNNConcatenate5": "concat", "XNNLeakyReLU": "leakyrelu", "XNNTanh": "tanh",
    "XNNGelu": "gelu", "XNNELU": "elu", "XNNPReLU": "prelu", "XNNMaximum": "max", "XNNMinimum": "min",
    "XNNSquareRoot": "sqrt", "XNNReciprocalSquareRoot": "rsqrt", "XNNExp": "exp", "XNNLog": "log", "XNNNegate": "neg",
    "XNNAbs": "abs", "XNNCeiling": "ceil", "XNNFloor": "floor", "XNNStaticResizeBilinear2D": "resize", "XNNSin": "sin",
    "XNNCos": "cos", "XNNSquare": "square",
}  # fmt: skip

#: one graph node as ``explain.json`` names it: its operator, module path, module class and the user's source line
NodeInfo = TypedDict("NodeInfo", {"op": str, "module": str, "class": str, "source": str | None})


class XNode(TypedDict):
    """One node of a delegate's XNNPACK graph, as the ``.pte`` holds it."""

    type: str  # its xnode_union_type (XNNConv2d …)
    debug_handle: int | None  # the edge node it came from (XNN_INSERTED: XNNPACK's own)


def is_qdq(node: Node) -> bool:
    """Whether ``node`` quantizes or dequantizes (a boundary, not a module's own compute)."""
    return any(k in str(node.target) for k in _QDQ)


def user_frame(stack_trace: str | None) -> str | None:
    """The innermost frame outside torch (the user's own code): ``nets.py:21  return self.relu(self.bn(x))``."""
    if not stack_trace:
        return None
    frames = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.*)', stack_trace)
    mine = [f for f in frames if "/torch/" not in f[0] and "/torchao/" not in f[0] and "/executorch/" not in f[0]]
    pick = (mine or frames)[-1] if (mine or frames) else None
    return pick and f"{os.path.basename(pick[0])}:{pick[1]}  {pick[2].strip()}"


def node_info(node: Node) -> NodeInfo:
    """Module path, class, operator and source line of one graph node (PT2E's re-export puts q/dq at the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    path, cls = list(stack.values())[-1] if stack else ("", "")
    cls = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1]
    if "Wrapper" in cls or cls.endswith(">") or cls.startswith("GraphModule"):
        path, cls = "", ""
    op = getattr(node.target, "__name__", str(node.target))
    op = op.replace("aten.", "").replace("quantized_decomposed.", "").removesuffix(".default")
    return {"op": op, "module": path, "class": cls, "source": user_frame(node.meta.get("stack_trace"))}


def _owner(node: Node) -> NodeInfo:
    """A q/dq node's module is its producer's (a dequantized output) or its consumer's (a quantized input)."""
    info = node_info(node)
    if not is_qdq(node):
        return info
    if "dequantize" in str(node.target):
        src = node
        while src.op == "call_function" and is_qdq(src) and src.all_input_nodes:
            src = src.all_input_nodes[0]
        if src.op == "call_function" and not is_qdq(src):
            return {**node_info(src), "op": f"dequantize output of {node_info(src)['op']}"}
    frontier = list(node.users)
    for _ in range(4):
        dst = next((u for u in frontier if u.op == "call_function" and not is_qdq(u)), None)
        if dst is not None:
            return {**node_info(dst), "op": f"quantize input of {node_info(dst)['op']}"}
        frontier = [v for u in frontier for v in u.users]
    return info


# ---------------------------------------------------------------------------------------------- the .pte
def _program(pte: bytes) -> Program:
    from executorch.exir._serialize._program import _flatbuffer_to_program, _get_extended_header

    header = _get_extended_header(pte)
    return _flatbuffer_to_program(pte[: header.program_size] if header is not None else pte)


def delegate_calls(pte: bytes, method: str = "forward") -> dict[int, int]:
    """Instruction id → delegate index, for every DELEGATE_CALL of ``method``."""
    from executorch.exir.schema import DelegateCall

    plan = next(p for p in _program(pte).execution_plan if p.name == method)
    out, iid = {}, 0
    for chain in plan.chains:
        for ins in chain.instructions:
            if isinstance(ins.instr_args, DelegateCall):
                out[iid] = ins.instr_args.delegate_index
            iid += 1
    return out


def xnnpack_nodes(pte: bytes, method: str = "forward") -> dict[int, list[XNode]]:
    """Delegate index → its XNNPACK graph's nodes in order (type and debug handle), decompiled with the flatc the
    executorch wheel ships and XNNPACK's own schema."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _flatc_decompile
    from executorch.exir._serialize._program import _extract_delegate_payload

    plan = next(p for p in _program(pte).execution_plan if p.name == method)
    schema = resources.files("executorch.backends.xnnpack.serialization").joinpath("schema.fbs")
    out, n_xnn = {}, 0
    for index, delegate in enumerate(plan.delegates):
        if "xnnpack" not in delegate.id.lower():
            continue
        payload = _extract_delegate_payload(pte, "xnnpack", n_xnn)
        n_xnn += 1
        head = XNNHeader.from_bytes(payload[: XNNHeader.EXPECTED_LENGTH])
        with tempfile.TemporaryDirectory(prefix="edgekit-xnn-") as tmp:
            with resources.as_file(schema) as src:
                shutil.copy(src, os.path.join(tmp, "schema.fbs"))
            with open(os.path.join(tmp, "g.bin"), "wb") as f:
                f.write(payload[head.flatbuffer_offset : head.flatbuffer_offset + head.flatbuffer_size])
            _flatc_decompile(tmp, os.path.join(tmp, "schema.fbs"), os.path.join(tmp, "g.bin"), ["--raw-binary"])
            with open(os.path.join(tmp, "g.json")) as f:  # flatc writes bare inf and nan (output_min_max)
                graph = json.loads(re.sub(r":\s*(-?inf|nan)\b", r': "\1"', f.read()))
        out[index] = [{"type": x["xnode_union_type"], "debug_handle": x.get("debug_handle")} for x in graph["xnodes"]]
    return out


# ------------------------------------------------------------------------------------------- instructions
def instructions(pte: bytes, etrecord: ETRecord, method: str = "forward") -> dict[str, dict[str, object]]:
    """Per instruction: a portable kernel's module, or a delegate call's XNNPACK nodes with theirs (see the module
    docstring). ``etrecord``: what ``to_edge_transform_and_lower(..., generate_etrecord=True)`` recorded."""
    import torch

    edge = etrecord.edge_dialect_program
    edge = edge[method] if isinstance(edge, dict) else edge
    by_handle: dict[int, list[Node]] = defaultdict(list)
    for n in edge.graph.nodes:
        if n.op == "call_function" and n.meta.get("debug_handle") is not None and "getitem" not in str(n.target):
            by_handle[int(n.meta["debug_handle"])].append(n)
    handle_map = {int(k): (v if isinstance(v, list) else [v]) for k, v in etrecord._debug_handle_map[method].items()}
    calls, graphs = delegate_calls(pte, method), xnnpack_nodes(pte, method)
    out: dict[str, dict[str, object]] = {}
    for iid, handles in sorted(handle_map.items()):
        if iid not in calls:  # a portable kernel
            nodes = [n for h in handles for n in by_handle.get(int(h), [])]
            anchor = next((n for n in nodes if not is_qdq(n)), nodes[0] if nodes else None)
            entry: dict[str, object] = {"kind": "portable"}
            if anchor is not None:
                dtypes = sorted(
                    {
                        str(a.meta["val"].dtype).removeprefix("torch.")
                        for a in anchor.all_input_nodes
                        if isinstance(a.meta.get("val"), torch.Tensor)
                    }
                )
                entry.update(_owner(anchor), dtypes=dtypes)
            out[str(iid)] = entry
            continue
        xnodes = graphs.get(calls[iid], [])
        anchors = _anchors(xnodes, by_handle)
        attached = _attach(anchors, [n for h in sorted({int(h) for h in handles}) for n in by_handle.get(h, [])])
        nodes_out = []
        for j, x in enumerate(xnodes):
            node = anchors.get(j)
            entry = {"type": x["type"], "category": XNODE_CATEGORY.get(x["type"], x["type"].lower())}
            if node is None:
                entry.update(op=f"inserted by XNNPACK ({x['type']})", module=None, **{"class": None, "source": None})
            else:
                entry.update(_owner(node))
                quantized_in = any(is_qdq(a) and "dequantize" in str(a.target) for a in node.all_input_nodes)
                entry["quantized"] = is_qdq(node) or quantized_in
                fused = [f"{node_info(a)['op']}@{node_info(a)['module'] or '-'}" for a in attached[j] if not is_qdq(a)]
                qdq = sum(1 for a in attached[j] if is_qdq(a))
                entry["fused"] = fused + ([f"{qdq} quantize/dequantize node(s)"] if qdq else [])
            nodes_out.append(entry)
        out[str(iid)] = {"kind": "delegate", "backend": "XnnpackBackend", "xnodes": nodes_out}
    return out


def _anchors(xnodes: list[XNode], by_handle: dict[int, list[Node]]) -> dict[int, Node]:
    """XNNPACK node index → the edge node it came from (a Convert's is its quantize or dequantize node)."""
    anchors = {}
    for j, x in enumerate(xnodes):
        handle = x["debug_handle"]
        if handle in (None, XNN_INSERTED):
            continue
        candidates = by_handle.get(handle, [])
        convert = XNODE_CATEGORY.get(x["type"]) == "convert"
        pick = [n for n in candidates if is_qdq(n) == convert] or candidates
        if convert and len(pick) > 1:  # the last Convert dequantizes the output; the others quantize inputs
            later = any(xnodes[k]["debug_handle"] not in (None, XNN_INSERTED) for k in range(j + 1, len(xnodes)))
            pick = [n for n in pick if ("dequantize" in str(n.target)) == (not later)] or pick
        if pick:
            anchors[j] = pick[0]
    return anchors


def _attach(anchors: dict[int, Node], nodes: list[Node]) -> dict[int, list[Node]]:
    """Edge nodes no XNNPACK node stands for (BatchNorm, ReLU, q/dq), each attached to the node it was fused into:
    dequantizes forward to their consumer, everything else back to its producer."""
    anchor_of = {n: j for j, n in anchors.items()}
    attached: dict[int, list[Node]] = defaultdict(list)
    for n in (n for n in nodes if n not in anchor_of):
        forward = is_qdq(n) and "dequantize" in str(n.target)
        hit = None
        for direction in (forward, not forward):
            seen, frontier = set(), [n]
            while frontier and hit is None:
                nxt = []
                for f in frontier:
                    for g in list(f.users) if direction else f.all_input_nodes:
                        if g in anchor_of:
                            hit = g
                            break
                        if g not in seen:
                            seen.add(g)
                            nxt.append(g)
                    if hit is not None:
                        break
                frontier = nxt
            if hit is not None:
                break
        if hit is not None:
            attached[anchor_of[hit]].append(n)
    return attached
