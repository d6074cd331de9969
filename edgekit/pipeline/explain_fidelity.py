"""``explain.json``'s ``modules``: per module of the user's model, the SQNR of its output between the fp32 model that was
exported and PT2E's simulation of the quantized one — cumulative, local and its impact on the model's output (see
:mod:`edgekit.pipeline.explain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

from .explain import is_qdq, user_frame

if TYPE_CHECKING:
    import torch
    from torch.fx import GraphModule, Node


#: a row of ``explain.json``'s ``modules.rows`` (:meth:`ModuleSqnr.to_dict`)
ModuleSqnrDoc = TypedDict(
    "ModuleSqnrDoc",
    {
        "module": str,
        "class": str,
        "sqnr_db": float | None,
        "local_sqnr_db": float | None,
        "impact_sqnr_db": float | None,
        "leaf": bool,
        "folded": NotRequired[bool],
        "source": str | None,
    },
)


class ModuleFidelityDoc(TypedDict):
    """``explain.json``'s ``modules`` (:meth:`ModuleFidelityResult.to_dict`)."""

    rows: list[ModuleSqnrDoc]
    samples: int
    data: str
    kind: str


@dataclass(frozen=True)
class ModuleSqnr:
    """One module's row of ``explain.json``'s ``modules.rows`` (see :func:`module_sqnr` for the three figures)."""

    module: str  # its path in the user's model
    cls: str  # its class's name (``class`` in the file)
    sqnr_db: float | None  # cumulative; None: exact (or folded)
    local_sqnr_db: float | None  # its own error (leaf modules)
    impact_sqnr_db: float | None  # its own error's effect on the model's output (leaf modules, first samples)
    leaf: bool
    source: str | None  # the user's source line that made it
    folded: bool = False  # PT2E folded it into the module before it (a BatchNorm into its conv)

    def to_dict(self) -> ModuleSqnrDoc:
        """The row as ``explain.json`` holds it (``folded`` only on folded modules, before ``source``)."""
        head = {
            "module": self.module,
            "class": self.cls,
            "sqnr_db": self.sqnr_db,
            "local_sqnr_db": self.local_sqnr_db,
            "impact_sqnr_db": self.impact_sqnr_db,
            "leaf": self.leaf,
        }
        return {**head, **({"folded": True} if self.folded else {}), "source": self.source}  # type: ignore[return-value]


@dataclass(frozen=True)
class ModuleFidelityResult:
    """``explain.json``'s ``modules``: every module's row, and what the figures were measured on."""

    rows: list[ModuleSqnr]
    samples: int
    data: str  # the data's source
    kind: str  # how they were measured, in words

    def to_dict(self) -> ModuleFidelityDoc:
        return {"rows": [r.to_dict() for r in self.rows], "samples": self.samples, "data": self.data, "kind": self.kind}


def module_sqnr(
    fp32: GraphModule, simulated: GraphModule, samples: list[tuple[torch.Tensor, ...]], impact_samples: int = 2
) -> list[ModuleSqnr]:
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

    import torch
    import torch.fx as fx
    from torch.utils._pytree import tree_leaves, tree_map

    class Recorder(fx.Interpreter):
        def __init__(
            self, gm: GraphModule, force: dict[Node, tuple[str, torch.Tensor]] | None = None, keep: bool = False
        ) -> None:
            super().__init__(gm)
            self.keep = keep  # every node's whole output, for replays
            self.values: dict[str, torch.Tensor] = {}
            self.full: dict[Node, object] = {}  # node → its whole output (a replay from a node on starts from these)
            self.force = force or {}  # node → (path, the fp32 value to continue with)
            self.local: dict[str, torch.Tensor] = {}

        def run_node(self, n: Node) -> object:
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

        def _through_qdq(self, n: Node, value: torch.Tensor) -> torch.Tensor:
            """``value`` through the output quantize → dequantize that follows ``n`` in the graph (if any)."""
            users = list(n.users)
            if len(users) != 1 or "quantize_per" not in str(users[0].target):
                return value
            q = users[0]
            dq = next((u for u in q.users if "dequantize" in str(u.target)), None)
            if dq is None:
                return value

            def call(node: Node, x: torch.Tensor) -> torch.Tensor:
                args = fx.node.map_arg(node.args[1:], lambda a: self.env[a])
                kwargs = fx.node.map_arg(node.kwargs, lambda a: self.env[a])
                return node.target(x, *args, **kwargs)

            return call(dq, call(q, value))

    def outputs(gm: GraphModule, follow_qdq: bool) -> dict[str, Node]:
        last: dict[str, Node] = {}
        for n in gm.graph.nodes:
            if n.op == "call_function" and not is_qdq(n):
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
    compare_to: dict[str, Node] = {}  # module → the fp32 node its simulated output stands for
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
    last_use: dict[Node, int] = {}  # node → the index of its last user
    for n in nodes:
        for a in n.all_input_nodes:
            last_use[a] = max(last_use.get(a, -1), index[n])

    def replay(r: Recorder, x: tuple[torch.Tensor, ...], at: Node, value: torch.Tensor) -> torch.Tensor:
        """The fp32 graph's first output, run from ``at`` on with ``value`` as ``at``'s output."""
        i = index[at]
        env = {n: None for n in nodes[: i + 1]}  # skipped; only what later nodes read holds a value
        for n in nodes[:i]:
            if last_use.get(n, -1) > i:
                env[n] = tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, r.full[n])
        env[at] = value.clone()
        return tree_leaves(fx.Interpreter(fp32).run(*x, initial_env=env))[0]

    def add(acc: dict[str, list[float]], path: str, a: torch.Tensor | None, b: torch.Tensor | None) -> None:
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
        ModuleSqnr(
            module=p,
            cls=classes.get(p, "?"),
            sqnr_db=db(cumulative[p]),
            local_sqnr_db=db(local.get(p)),
            impact_sqnr_db=db(impact.get(p)),
            leaf=p in leaves,
            source=user_frame(ref_out[p].meta.get("stack_trace")),
        )
        for p in sorted(cumulative, key=lambda p: order.get(ref_out[p].name, 0))
    ]
    rows += [
        ModuleSqnr(
            module=p,
            cls=classes.get(p, "?"),
            sqnr_db=None,
            local_sqnr_db=None,
            impact_sqnr_db=None,
            leaf=True,
            folded=True,
            source=user_frame(ref_out[p].meta.get("stack_trace")),
        )
        for p in sorted(folded)
    ]
    return rows
