"""``explain.json``'s ``memory``: ExecuTorch's memory plan of a lowered program — arenas, each planned tensor's size,
offset, lifetime over the instructions and owning module, and the largest live set (see :mod:`edgekit.pipeline.explain`).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, TypedDict

from .explain import is_qdq, node_info

if TYPE_CHECKING:
    from executorch.exir import ExecutorchProgramManager
    from torch.fx import GraphModule, Node

#: one tensor of the plan: its bytes, arena and offset, lifetime in instruction steps, and the module that made it
PlannedTensor = TypedDict(
    "PlannedTensor",
    {
        "bytes": int,
        "mem_id": int,
        "offset": int,
        "shape": list[int],
        "dtype": str,
        "start": int,
        "end": int,
        "module": str | None,
        "class": str | None,
    },
)


class PeakLive(TypedDict):
    step: int  # the instruction step where the most planned bytes are live
    bytes: int
    modules: list[str]  # the modules whose tensors are live there


class MemoryPlan(TypedDict):
    """``explain.json``'s ``memory``."""

    arenas_bytes: list[int]
    planned_bytes: int
    steps: int
    step_ops: list[str]
    tensors: list[PlannedTensor]
    live_bytes_by_step: list[int]
    peak: PeakLive
    note: str


def memory_plan(et: ExecutorchProgramManager, method: str = "forward") -> MemoryPlan:
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

    tensors: list[PlannedTensor] = []
    seen = set()
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
            while src.op == "call_function" and is_qdq(src) and src.all_input_nodes:
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


def _delegate_output(gm: GraphModule, call: Node, index: int) -> Node:
    lowered = getattr(gm, call.args[0].target)
    out = next(n for n in lowered.original_module.graph.nodes if n.op == "output")
    outs = out.args[0]
    return outs[index] if isinstance(outs, (list, tuple)) else outs
