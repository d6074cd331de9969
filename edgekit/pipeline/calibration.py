"""Calibration records: what a static int8 calibration observed, kept so that a later quantization of the same traced
model on the same data (the other weight granularity, some layers kept in fp32, each step of mixed precision's
sensitivity scan) loads it instead of running the data through the model again.

During calibration the prepared model computes in fp32, so what an activation observer sees does not depend on which
*other* layers are quantized: the observer of a given node ends in the same state in every recipe. A record holds
those states by the observed node's name. Weight observers are not kept: they see only their weight and are filled
from it directly.

A record's key is its content: the traced graph, its weights and constants, the calibration samples, the calibration
batch and the stack's versions. A pruned or fine-tuned model, other data or another torch gets its own record.
Records are stored next to the build cache (``<cache>/.calibration/<key>.pt``, tensors only, read with
``weights_only=True``); a missing, unreadable or incomplete record only means calibrating as usual.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from typing import Any

import torch

STATE_DIR = ".calibration"


def record_key(exported: Any, calibration: Any, batch: int) -> str | None:
    """The content key of a calibration of ``exported`` (an ExportResult) on ``calibration``; None when some tensor
    cannot be hashed (a tensor subclass), in which case nothing is reused."""
    import torchao

    h = hashlib.sha256(f"{torch.__version__} {torchao.__version__} batch={batch}\n".encode())
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


def _bytes(t: Any) -> bytes:
    if not isinstance(t, torch.Tensor) or type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
        raise TypeError(f"cannot hash {type(t).__name__}")
    t = t.detach().contiguous().reshape(-1)
    return f"{t.dtype}{tuple(t.shape)}".encode() + t.view(torch.uint8).numpy().tobytes()


def _observers(prepared: Any) -> list[tuple[Any, Any]]:
    """(observer module, the node it observes) for every observer call in a prepared GraphModule."""
    from torchao.quantization.pt2e import ObserverBase

    found = []
    for node in prepared.graph.nodes:
        if node.op == "call_module":
            module = prepared.get_submodule(node.target)
            if isinstance(module, ObserverBase) and node.args:
                found.append((module, node.args[0]))
    return found


def _key(module: Any, node: Any) -> str:
    return f"{node.name}:{type(module).__name__}"


def observed_states(prepared: Any) -> dict[str, dict[str, torch.Tensor]]:
    """The activation observers' states of a calibrated prepared model, by observed node."""
    return {_key(m, n): {k: v.clone() for k, v in m.state_dict().items()}
            for m, n in _observers(prepared) if n.op != "get_attr"}


def restore(prepared: Any, states: dict[str, dict[str, torch.Tensor]]) -> bool:
    """Fill a freshly prepared model's observers from ``states`` (activations) and from the weights themselves; False,
    with nothing changed, when an activation observer has no state there (then calibrate as usual)."""
    observers = _observers(prepared)
    if any(n.op != "get_attr" and _key(m, n) not in states for m, n in observers):
        return False
    with torch.no_grad():
        for module, node in observers:
            if node.op == "get_attr":
                module(functools.reduce(getattr, node.target.split("."), prepared))
            else:
                module.load_state_dict(states[_key(module, node)])
    return True


class RecordStore:
    """Calibration records on the build cache's filesystem (any fsspec URL)."""

    def __init__(self, cache_url: str):
        from ..scale.cache import BuildCache

        cache = BuildCache(cache_url)
        self.fs, self.folder = cache.fs, f"{cache.root}/{STATE_DIR}"

    def get(self, key: str) -> dict | None:
        try:
            data = self.fs.cat_file(f"{self.folder}/{key}.pt")
            return torch.load(io.BytesIO(data), weights_only=True)
        except Exception:  # missing, half-written by a crashed writer or unreadable: calibrate instead
            return None

    def put(self, key: str, states: dict) -> None:
        """Add ``states`` to the record (a recipe with layers in fp32 observes fewer nodes than the full one)."""
        merged = {**(self.get(key) or {}), **states}
        buf = io.BytesIO()
        torch.save(merged, buf)
        self.fs.makedirs(self.folder, exist_ok=True)
        tmp = f"{self.folder}/{key}.pt.{os.getpid()}.tmp"
        self.fs.pipe_file(tmp, buf.getvalue())
        self.fs.mv(tmp, f"{self.folder}/{key}.pt")


class MemoryRecords(dict):
    """Calibration records in memory (one process's mixed-precision search)."""

    def put(self, key: str, states: dict) -> None:
        self[key] = {**self.get(key, {}), **states}
