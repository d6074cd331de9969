"""What ``edgekit explain`` needs from a build, gathered while the graphs are still in memory and written beside the
program as ``explain.json`` (a few KB; the program alone has lost every name):

* ``instructions``: for each instruction of ``forward``, the modules it runs, in the user's own names. A portable
  kernel carries its node's module path, class and source line; an XNNPACK delegate call carries its XNNPACK graph's
  nodes in order (read back from the ``.pte``), each with the module, class and source line of the node it came from
  and what was fused into it. XNNPACK logs its operators' times without debug handles (executorch 1.5.1), so
  ``edgekit explain`` aligns the logged operator names with these nodes (:mod:`edgekit.explain.report`).
* ``modules``: per module, in execution order, the SQNR of its output between the fp32 model that was exported and
  PT2E's simulation of the quantized one (the program itself cannot expose intermediates; the simulation is what
  XNNPACK computes, up to rounding), so the least faithful layer has a name.
* ``memory``: ExecuTorch's memory plan: the arenas, each planned tensor's size, offset and lifetime over the
  instructions, and the largest live set with the modules it spans. XNNPACK's own activations live inside the
  delegate and are not planned.

The module names come from ``nn_module_stack`` and ``stack_trace`` of the edge program that ``to_edge_transform_and_
lower`` records in its ETRecord before partitioning (ExecuTorch's devtools route; the record itself, twice the
weights, is not kept).
"""

from __future__ import annotations

import json
import operator
import os
import re
import shutil
import tempfile
from collections import defaultdict
from importlib import resources
from typing import Any

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


def _is_qdq(node: Any) -> bool:
    return any(k in str(node.target) for k in _QDQ)


def user_frame(stack_trace: str | None) -> str | None:
    """The innermost frame outside torch (the user's own code): ``nets.py:21  return self.relu(self.bn(x))``."""
    if not stack_trace:
        return None
    frames = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.*)', stack_trace)
    mine = [f for f in frames if "/torch/" not in f[0] and "/torchao/" not in f[0] and "/executorch/" not in f[0]]
    pick = (mine or frames)[-1] if (mine or frames) else None
    return pick and f"{os.path.basename(pick[0])}:{pick[1]}  {pick[2].strip()}"


def node_info(node: Any) -> dict:
    """Module path, class, operator and source line of one graph node (PT2E's re-export puts q/dq at the root)."""
    stack = node.meta.get("nn_module_stack") or {}
    path, cls = list(stack.values())[-1] if stack else ("", "")
    cls = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1]
    if "Wrapper" in cls or cls.endswith(">") or cls.startswith("GraphModule"):
        path, cls = "", ""
    op = getattr(node.target, "__name__", str(node.target))
    op = op.replace("aten.", "").replace("quantized_decomposed.", "").removesuffix(".default")
    return {"op": op, "module": path, "class": cls, "source": user_frame(node.meta.get("stack_trace"))}


def _owner(node: Any) -> dict:
    """A q/dq node's module is its producer's (a dequantized output) or its consumer's (a quantized input)."""
    info = node_info(node)
    if not _is_qdq(node):
        return info
    if "dequantize" in str(node.target):
        src = node
        while src.op == "call_function" and _is_qdq(src) and src.all_input_nodes:
            src = src.all_input_nodes[0]
        if src.op == "call_function" and not _is_qdq(src):
            return {**node_info(src), "op": f"dequantize output of {node_info(src)['op']}"}
    frontier = list(node.users)
    for _ in range(4):
        dst = next((u for u in frontier if u.op == "call_function" and not _is_qdq(u)), None)
        if dst is not None:
            return {**node_info(dst), "op": f"quantize input of {node_info(dst)['op']}"}
        frontier = [v for u in frontier for v in u.users]
    return info


# ---------------------------------------------------------------------------------------------- the .pte
def _program(pte: bytes) -> Any:
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


def xnnpack_nodes(pte: bytes, method: str = "forward") -> dict[int, list[dict]]:
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
def instructions(pte: bytes, etrecord: Any, method: str = "forward") -> dict[str, dict]:
    """Per instruction: a portable kernel's module, or a delegate call's XNNPACK nodes with theirs (see the module
    docstring). ``etrecord``: what ``to_edge_transform_and_lower(..., generate_etrecord=True)`` recorded."""
    import torch

    edge = etrecord.edge_dialect_program
    edge = edge[method] if isinstance(edge, dict) else edge
    by_handle: dict[int, list] = defaultdict(list)
    for n in edge.graph.nodes:
        if n.op == "call_function" and n.meta.get("debug_handle") is not None and "getitem" not in str(n.target):
            by_handle[int(n.meta["debug_handle"])].append(n)
    handle_map = {int(k): (v if isinstance(v, list) else [v]) for k, v in etrecord._debug_handle_map[method].items()}
    calls, graphs = delegate_calls(pte, method), xnnpack_nodes(pte, method)
    out: dict[str, dict] = {}
    for iid, handles in sorted(handle_map.items()):
        if iid not in calls:  # a portable kernel
            nodes = [n for h in handles for n in by_handle.get(int(h), [])]
            anchor = next((n for n in nodes if not _is_qdq(n)), nodes[0] if nodes else None)
            entry: dict = {"kind": "portable"}
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
                quantized_in = any(_is_qdq(a) and "dequantize" in str(a.target) for a in node.all_input_nodes)
                entry["quantized"] = _is_qdq(node) or quantized_in
                fused = [f"{node_info(a)['op']}@{node_info(a)['module'] or '-'}" for a in attached[j] if not _is_qdq(a)]
                qdq = sum(1 for a in attached[j] if _is_qdq(a))
                entry["fused"] = fused + ([f"{qdq} quantize/dequantize node(s)"] if qdq else [])
            nodes_out.append(entry)
        out[str(iid)] = {"kind": "delegate", "backend": "XnnpackBackend", "xnodes": nodes_out}
    return out


def _anchors(xnodes: list[dict], by_handle: dict) -> dict[int, Any]:
    """XNNPACK node index → the edge node it came from (a Convert's is its quantize or dequantize node)."""
    anchors = {}
    for j, x in enumerate(xnodes):
        handle = x["debug_handle"]
        if handle in (None, XNN_INSERTED):
            continue
        candidates = by_handle.get(handle, [])
        convert = XNODE_CATEGORY.get(x["type"]) == "convert"
        pick = [n for n in candidates if _is_qdq(n) == convert] or candidates
        if convert and len(pick) > 1:  # the last Convert dequantizes the output; the others quantize inputs
            later = any(xnodes[k]["debug_handle"] not in (None, XNN_INSERTED) for k in range(j + 1, len(xnodes)))
            pick = [n for n in pick if ("dequantize" in str(n.target)) == (not later)] or pick
        if pick:
            anchors[j] = pick[0]
    return anchors


def _attach(anchors: dict[int, Any], nodes: list[Any]) -> dict[int, list]:
    """Edge nodes no XNNPACK node stands for (BatchNorm, ReLU, q/dq), each attached to the node it was fused into:
    dequantizes forward to their consumer, everything else back to its producer."""
    anchor_of = {n: j for j, n in anchors.items()}
    attached: dict[int, list] = defaultdict(list)
    for n in (n for n in nodes if n not in anchor_of):
        forward = _is_qdq(n) and "dequantize" in str(n.target)
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


# ---------------------------------------------------------------------------------------------- memory
def memory_plan(et: Any, method: str = "forward") -> dict:
    """ExecuTorch's memory plan of ``method`` (an ExecutorchProgramManager after ``to_executorch``): arenas, each
    planned tensor's bytes, offset, lifetime in instruction steps and owning module, and the largest live set."""
    from executorch.exir import memory
    from executorch.exir.delegate import executorch_call_delegate
    from executorch.exir.memory_planning import get_node_tensor_specs

    gm = et.exported_program(method).graph_module
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    steps = [
        n for n in nodes if n.op == "call_function" and n.target not in (memory.alloc, memory.view, operator.getitem)
    ]
    step_at = {index[s]: k for k, s in enumerate(steps)}
    first_step = sorted(step_at.items())

    def to_step(i: int, last: bool) -> int:
        if last:
            cands = [k for j, k in first_step if j <= i]
            return cands[-1] if cands else 0
        cands = [k for j, k in first_step if j >= i]
        return cands[0] if cands else len(steps) - 1

    tensors, seen = [], set()
    for n in nodes:
        if n.op in ("output", "get_attr"):
            continue
        for k, spec in enumerate(get_node_tensor_specs(n)):
            if spec is None or spec.const or spec.mem_id is None or id(spec) in seen:
                continue
            seen.add(id(spec))
            src = n
            if n.target == memory.alloc:
                src = next((u for u in n.users if u.op == "call_function"), n)
            elif n.target == executorch_call_delegate:
                src = _delegate_output(gm, n, k)
            elif n.target == operator.getitem and getattr(n.args[0], "target", None) == executorch_call_delegate:
                src = _delegate_output(gm, n.args[0], n.args[1])
            while src.op == "call_function" and _is_qdq(src) and src.all_input_nodes:
                src = src.all_input_nodes[0]
            info = node_info(src) if src.op == "call_function" else {"module": None, "class": None}
            a, b = spec.lifetime
            tensors.append(
                {
                    "bytes": int(spec.allocated_memory),
                    "mem_id": int(spec.mem_id),
                    "offset": int(spec.mem_offset or 0),
                    "shape": [int(d) for d in spec.shape],
                    "dtype": str(spec.dtype).removeprefix("torch."),
                    "start": 0 if n.op == "placeholder" or a is None else to_step(a, False),
                    "end": to_step(b, True) if b is not None else 0,
                    "module": info["module"] if n.op != "placeholder" else "(input)",
                    "class": info["class"],
                }
            )
    live = [sum(t["bytes"] for t in tensors if t["start"] <= k <= t["end"]) for k in range(len(steps))]
    peak_step = max(range(len(live)), key=live.__getitem__) if live else 0
    members = [t for t in tensors if t["start"] <= peak_step <= t["end"]]
    arenas = [int(b) for b in gm.meta.get("non_const_buffer_sizes", [])]
    return {
        "arenas_bytes": arenas,
        "planned_bytes": sum(arenas),
        "steps": len(steps),
        "step_ops": [node_info(s)["op"] if s.target != executorch_call_delegate else "DELEGATE_CALL" for s in steps],
        "tensors": tensors,
        "live_bytes_by_step": live,
        "peak": {
            "step": peak_step,
            "bytes": live[peak_step] if live else 0,
            "modules": sorted({t["module"] or "(unnamed)" for t in members}),
        },
        "note": "XNNPACK's own activations live inside the delegate and are not in ExecuTorch's plan; a delegate "
        "adds 64 bytes of padding to its arena",
    }


def _delegate_output(gm: Any, call: Any, index: int) -> Any:
    lowered = getattr(gm, call.args[0].target)
    out = next(n for n in lowered.original_module.graph.nodes if n.op == "output")
    outs = out.args[0]
    return outs[index] if isinstance(outs, (list, tuple)) else outs


# ---------------------------------------------------------------------------------------------- fidelity
def module_sqnr(fp32: Any, simulated: Any, samples: list[tuple], impact_samples: int = 2) -> list[dict]:
    """Per module, in execution order, two SQNRs (dB) of its output between ``fp32`` and ``simulated`` (PT2E's converted
    graph), summed over ``samples``:

    * ``sqnr_db``, cumulative: as the quantized model runs, every earlier layer's error included (the last layers are
      always the worst here);
    * ``local_sqnr_db``, the error the layer adds itself (leaf modules): the simulation run again with every layer's
      output replaced by the fp32 value before the next layer quantizes it, so each layer sees exact inputs and only
      its own quantization (its input's, its weights', its output's) is measured;
    * ``impact_sqnr_db``, what that error does to the model (leaf modules): the fp32 model run from the layer on with
      only the layer's own error put into its output, and its output compared with the fp32 one — the output SQNR if
      only this layer were quantized (tune's sensitivity, without a calibration per layer). A layer whose small error
      later layers amplify (a first convolution) ranks above one whose larger error fades; this names the layer that
      makes the model wrong. It costs a replay of the rest of the model per module, so it is measured on the first
      ``impact_samples`` samples only.

    Both graphs are flat; a module's output is the last node inside it (in the simulation, after its output's
    quantize → dequantize: what the next layer sees). A module PT2E folded away (a BatchNorm into its conv) is listed
    as folded, and its conv is compared with the folded module's fp32 output."""
    import math

    import torch
    import torch.fx as fx
    from torch.utils._pytree import tree_leaves, tree_map

    class Recorder(fx.Interpreter):
        def __init__(self, gm: Any, force: dict | None = None, keep: bool = False) -> None:
            super().__init__(gm)
            self.keep = keep  # every node's whole output, for replays
            self.values: dict[str, Any] = {}
            self.full: dict[Any, Any] = {}  # node → its whole output (a replay from a node on starts from these)
            self.force = force or {}  # node → (path, the fp32 value to continue with)
            self.local: dict[str, Any] = {}

        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n in self.force:
                path, exact = self.force[n]
                if isinstance(out, torch.Tensor) and out.shape == exact.shape:
                    # what this layer alone made of exact inputs; a copy, as the next node may be in place (relu_)
                    self.local[path] = self._through_qdq(n, out).detach().clone()
                    out = exact.to(out.dtype, copy=True)  # the next node may change it in place
            # copies, as they were when computed: an in-place user (relu_) would change them later
            copy = tree_map(lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t, out)
            if self.keep:
                self.full[n] = copy
            first = copy[0] if isinstance(copy, (tuple, list)) and copy else copy
            if isinstance(first, torch.Tensor):
                self.values[n.name] = first
            return out

        def _through_qdq(self, n: Any, value: Any) -> Any:
            """``value`` through the output quantize → dequantize that follows ``n`` in the graph (if any)."""
            users = list(n.users)
            if len(users) != 1 or "quantize_per" not in str(users[0].target):
                return value
            q = users[0]
            dq = next((u for u in q.users if "dequantize" in str(u.target)), None)
            if dq is None:
                return value

            def call(node: Any, x: Any) -> Any:
                args = fx.node.map_arg(node.args[1:], lambda a: self.env[a])
                kwargs = fx.node.map_arg(node.kwargs, lambda a: self.env[a])
                return node.target(x, *args, **kwargs)

            return call(dq, call(q, value))

    def outputs(gm: Any, follow_qdq: bool) -> dict[str, Any]:
        last: dict[str, Any] = {}
        for n in gm.graph.nodes:
            if n.op == "call_function" and not _is_qdq(n):
                for path, _ in (n.meta.get("nn_module_stack") or {}).values():
                    if path:
                        last[path] = n
        if follow_qdq:
            for path, n in list(last.items()):
                users = list(n.users)
                if len(users) == 1 and "quantize_per" in str(users[0].target):
                    dq = [u for u in users[0].users if "dequantize" in str(u.target)]
                    if dq:
                        last[path] = dq[0]
        return last

    classes: dict[str, str] = {}
    for n in fp32.graph.nodes:
        for path, cls in (n.meta.get("nn_module_stack") or {}).values():
            classes[path] = (cls.__name__ if isinstance(cls, type) else str(cls)).rsplit(".", 1)[-1]
    ref_out, sim_last, sim_out = outputs(fp32, False), outputs(simulated, False), outputs(simulated, True)
    order = {n.name: i for i, n in enumerate(fp32.graph.nodes)}
    folded = {p for p in ref_out if p not in sim_out}
    compare_to: dict[str, Any] = {}  # module → the fp32 node its simulated output stands for
    for path in sim_out:
        ref_node = ref_out.get(path)
        if ref_node is None:
            continue
        parent = path.rpartition(".")[0]  # the conv that absorbed a folded BatchNorm stands for the BatchNorm's output
        after = [
            p
            for p in folded
            if p.rpartition(".")[0] == parent
            and order[ref_out[p].name] > order[ref_node.name]
            and ref_node in ref_out[p].all_input_nodes
        ]
        compare_to[path] = ref_out[after[0]] if after else ref_node
    paths = list(compare_to)
    leaves = {p for p in paths if not any(q != p and q.startswith(p + ".") for q in paths)}
    cumulative: dict[str, list[float]] = {}
    local: dict[str, list[float]] = {}
    impact: dict[str, list[float]] = {}
    nodes = list(fp32.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    last_use: dict[Any, int] = {}  # node → the index of its last user
    for n in nodes:
        for a in n.all_input_nodes:
            last_use[a] = max(last_use.get(a, -1), index[n])

    def replay(r: Recorder, x: tuple, at: Any, value: Any) -> Any:
        """The fp32 graph's first output, run from ``at`` on with ``value`` as ``at``'s output."""
        i = index[at]
        env = {n: None for n in nodes[: i + 1]}  # skipped; only what later nodes read holds a value
        for n in nodes[:i]:
            if last_use.get(n, -1) > i:
                env[n] = tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, r.full[n])
        env[at] = value.clone()
        return tree_leaves(fx.Interpreter(fp32).run(*x, initial_env=env))[0]

    def add(acc: dict, path: str, a: Any, b: Any) -> None:
        if a is None or b is None or a.shape != b.shape:
            return
        t = acc.setdefault(path, [0.0, 0.0])
        t[0] += float(a.double().pow(2).sum())
        t[1] += float((a.double() - b.double()).pow(2).sum())

    for k, x in enumerate(samples):
        r, s = Recorder(fp32, keep=k < impact_samples), Recorder(simulated)
        with torch.no_grad():
            r.run_result = r.run(*x)
            s.run(*x)
            exact = {p: r.values.get(compare_to[p].name) for p in leaves}
            forced = Recorder(simulated, {sim_last[p]: (p, exact[p]) for p in leaves if exact[p] is not None})
            forced.run(*x)
        expected = tree_leaves(r.run_result)[0]
        for path, ref_node in compare_to.items():
            add(cumulative, path, r.values.get(ref_node.name), s.values.get(sim_out[path].name))
            if path in forced.local:
                add(local, path, exact[path], forced.local[path])
            if path in forced.local and k < impact_samples:  # a replay per module: a ranking needs few samples
                with torch.no_grad():
                    add(impact, path, expected, replay(r, x, ref_node, forced.local[path]))

    def db(t: list[float] | None) -> float | None:
        if t is None or t[1] == 0:
            return None
        return round(max(-999.0, 10 * math.log10(t[0] / t[1])), 2) if t[0] > 0 else -999.0

    rows = [
        {
            "module": p,
            "class": classes.get(p, "?"),
            "sqnr_db": db(cumulative[p]),
            "local_sqnr_db": db(local.get(p)),
            "impact_sqnr_db": db(impact.get(p)),
            "leaf": p in leaves,
            "source": user_frame(ref_out[p].meta.get("stack_trace")),
        }
        for p in sorted(cumulative, key=lambda p: order.get(ref_out[p].name, 0))
    ]
    rows += [
        {
            "module": p,
            "class": classes.get(p, "?"),
            "sqnr_db": None,
            "local_sqnr_db": None,
            "impact_sqnr_db": None,
            "leaf": True,
            "folded": True,
            "source": user_frame(ref_out[p].meta.get("stack_trace")),
        }
        for p in sorted(folded)
    ]
    return rows


def _inside(node: Any, path: str) -> bool:
    return any(p == path or p.startswith(path + ".") for p, _ in (node.meta.get("nn_module_stack") or {}).values())
