"""Calibration records: what a static int8 calibration observed, kept so that a later quantization of the same traced
model on the same data (the other weight granularity, some layers kept in fp32, each step of mixed precision's
sensitivity scan, a re-run) loads it instead of running the data through the model again.

During calibration the prepared model computes in fp32, so what an activation observer sees does not depend on which
other layers are quantized. What it sees does depend on where it is called: one observer can serve several nodes (a
relu6 shares its conv's output observer), and a layer kept in fp32 can change that sharing. So a record holds each
observer's state under the set of nodes it watched (and its kind); a recipe loads a record only when every one of its
activation observers is found there, and calibrates afresh otherwise. Weight observers are not kept: they see only
their weight and are filled from it directly.

A record's key is its content: the traced graph, its weights and constants, the calibration samples, the calibration
batch and the stack's versions. A pruned or fine-tuned model, other data or another torch gets its own record.
Where records live is the caller's choice: any object with ``get(key)`` and ``put(key, states)`` (the build cache's
``.calibration/`` sub-folder, :class:`edgekit.builds.CalibrationRecords`, or :class:`MemoryRecords` in one process);
a missing, unreadable or incomplete record only means calibrating as usual.
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from torch.fx import GraphModule, Node

    from ..data import Dataset
    from .export import ExportResult

STATE_DIR = ".calibration"

#: a calibration record: each activation observer's state (its state_dict) under the key of what it observed
ObserverStates = dict[str, dict[str, torch.Tensor]]


class CalibrationStore(Protocol):
    """Where calibration records are kept (:class:`MemoryRecords`, the build cache's CalibrationRecords)."""

    def get(self, key: str) -> ObserverStates | None: ...

    def put(self, key: str, states: ObserverStates) -> None: ...


def record_key(exported: ExportResult, calibration: Dataset, batch: int) -> str | None:
    """The content key of a calibration of ``exported`` (an ExportResult) on ``calibration``; None when some tensor
    cannot be hashed (a tensor subclass), in which case nothing is reused."""
    from importlib.metadata import version

    versions = " ".join(f"{p}={version(p)}" for p in ("torch", "torchao", "executorch"))
    h = hashlib.sha256(f"{versions} batch={batch}\n".encode())
    h.update(str(exported.program.graph).encode())
    program = exported.program
    try:
        for name, t in sorted({**program.state_dict, **program.constants}.items()):
            h.update(name.encode())
            h.update(_bytes(t))
        for t in calibration.inputs:
            h.update(_bytes(t))
    except (TypeError, RuntimeError, AttributeError):
        return None
    return h.hexdigest()[:32]


def _bytes(t: object) -> bytes:
    if not isinstance(t, torch.Tensor) or (type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter)):
        raise TypeError(f"cannot hash {type(t).__name__}")
    head = f"{t.dtype}{tuple(t.shape)}".encode()
    return head + t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _observers(prepared: GraphModule) -> list[tuple[torch.nn.Module, list[Node]]]:
    """Every observer module of a prepared GraphModule with the nodes it observes. One instance can be called at
    several nodes (a shared quantization spec: a relu6's output and the conv output it clamps), and then its state
    mixes all of them."""
    from torchao.quantization.pt2e import ObserverBase

    def observer(node: Node) -> torch.nn.Module | None:
        if node.op != "call_module":
            return None
        module = prepared.get_submodule(node.target)
        return module if isinstance(module, ObserverBase) else None

    found: dict[int, tuple[torch.nn.Module, list[Node]]] = {}
    for node in prepared.graph.nodes:
        module = observer(node)
        if module is not None and node.args:
            root = node.args[0]
            while observer(root) is not None:  # an observer of an observer's output sees the same tensor
                root = root.args[0]
            found.setdefault(id(module), (module, []))[1].append(root)
    return list(found.values())


def _key(module: torch.nn.Module, roots: list[Node]) -> str:
    """What an observer's state depends on: the tensors it saw (by node) and its kind. In another recipe the same
    node can be watched by an observer shared differently, with another key: that one is calibrated afresh."""
    return ",".join(sorted({r.name for r in roots})) + ":" + type(module).__name__


def _weights_only(roots: list[Node]) -> bool:
    return all(r.op == "get_attr" for r in roots)


def observed_states(prepared: GraphModule) -> ObserverStates:
    """The activation observers' states of a calibrated prepared model, by what they observed."""
    return {
        _key(m, roots): {k: v.clone() for k, v in m.state_dict().items()}
        for m, roots in _observers(prepared)
        if not _weights_only(roots)
    }


def restore(prepared: GraphModule, states: ObserverStates) -> bool:
    """Fill a freshly prepared model's observers from ``states`` (activations) and from the weights themselves; False,
    with nothing changed, when an activation observer has no state there (then calibrate as usual)."""
    observers = _observers(prepared)
    if any(not _weights_only(roots) and _key(m, roots) not in states for m, roots in observers):
        return False
    with torch.no_grad():
        for module, roots in observers:
            if _weights_only(roots):
                for root in roots:
                    module(functools.reduce(getattr, root.target.split("."), prepared))
            else:
                module.load_state_dict(states[_key(module, roots)])
    return True


class MemoryRecords(dict[str, ObserverStates]):
    """Calibration records in memory (one process's mixed-precision search)."""

    def put(self, key: str, states: ObserverStates) -> None:
        self[key] = {**self.get(key, {}), **states}
