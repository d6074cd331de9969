"""Backends as registered families: what each ExecuTorch backend a target may name brings with it.

A :class:`BackendFamily` says which quantization schemes it runs, how a program is lowered to it (its partitioner and
the rewrites before it) and quantized for it (its PT2E quantizer), which upstream patches its lowering applies, which
of the wheel's runtime libraries its programs need, and which CPU architectures can run them. Its steps live in the
rooms that own them, named as ``"module:function"`` and imported on use, so this ground-floor module imports no room.
Lowering, quantizing, target validation, the native runner's link line and device profiles ask :func:`family`; a new
backend (OpenVINO next) is one more entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .errors import UsageError
from .target_config import Backend, QuantScheme


@dataclass(frozen=True)
class BackendFamily:
    """One backend (see the module docstring)."""

    backend: Backend
    schemes: frozenset[QuantScheme]  # the quantization schemes its programs run
    #: "module:function" → (program, prepare) -> (the partitioners to lower with, the program rewritten for them when
    #: ``prepare``, the edge passes, the names of the rewrites applied); None: no delegate, ExecuTorch's portable kernels
    partition: str | None
    #: "module:function" → (scheme, fp32_layers) -> its PT2E quantizer; None: it runs fp32 only
    quantizer: str | None
    quantizer_label: str  # what the manifest says quantized the program
    runtime_libraries: tuple[str, ...]  # the wheel's lib/ libraries its programs need (linked into the native runner)
    archs: tuple[str, ...]  # the CPU architectures (uname -m) whose devices run its programs
    lowering_patches: tuple[str, ...] = ()  # upstream patches (edgekit.upstream) its lowering applies

    def step(self, name: str) -> Callable:
        """Its ``partition`` or ``quantizer`` step, imported from the room that owns it."""
        ref = getattr(self, name)
        if ref is None:
            raise UsageError(f"the {self.backend.value} backend has no {name} step", "use the xnnpack backend")
        module, _, function = ref.partition(":")
        return getattr(importlib.import_module(module), function)

    def runs_on(self, arch: str) -> bool:
        return arch in self.archs


FAMILIES: dict[Backend, BackendFamily] = {
    Backend.XNNPACK: BackendFamily(
        backend=Backend.XNNPACK,
        schemes=frozenset(QuantScheme),
        partition="edgekit.pipeline.xnnpack:xnnpack_partition",
        quantizer="edgekit.pipeline.quantize:xnnpack_quantizer",
        quantizer_label="XNNPACKQuantizer (torchao PT2E prepare/convert)",
        runtime_libraries=("executorch_backend_xnnpack",),
        archs=("x86_64", "aarch64"),
        lowering_patches=("xnnpack-skip-unchanging-passes",),
    ),
    Backend.PORTABLE: BackendFamily(
        backend=Backend.PORTABLE,
        schemes=frozenset({QuantScheme.NONE}),
        partition=None,
        quantizer=None,
        quantizer_label="",
        runtime_libraries=(),
        archs=("x86_64", "aarch64"),
    ),
}


def family(backend: Backend | str) -> BackendFamily:
    """The registered family of ``backend`` (its enum or name)."""
    try:
        return FAMILIES[Backend(backend)]
    except (ValueError, KeyError):
        raise UsageError(f"unknown backend {backend!r}", f"one of {', '.join(b.value for b in FAMILIES)}") from None


def runtime_libraries() -> tuple[str, ...]:
    """Every family's runtime libraries, in registration order (what the native runner links)."""
    return tuple(dict.fromkeys(lib for f in FAMILIES.values() for lib in f.runtime_libraries))
