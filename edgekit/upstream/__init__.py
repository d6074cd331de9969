"""Every change edgekit makes to the behaviour of the libraries it builds on, listed in one place.

Each :class:`Patch` says what it changes, the versions it was written for, what it buys (measured, with where the
figures are), the test that fails when it stops paying (upstream fixed the cost, or changed shape), and how to turn it
off: ``EDGEKIT_UPSTREAM_OFF`` (comma-separated names, or ``all``) switches patches off in every process that inherits
the variable, and :func:`switched_off` in this one (what A/B measurements toggle). The code of each patch is in this
package, and code anywhere else never replaces an attribute of an upstream module (``tests/test_architecture.py``);
the rest of edgekit applies a patch with ``with upstream.applied(NAME):``. Importing this module imports nothing but
the standard library: measured workers use it too.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import importlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import ContextManager

from ..errors import UsageError

#: names of patches to leave off, comma-separated, or ``all``
OFF_ENV = "EDGEKIT_UPSTREAM_OFF"


class PatchKind(enum.StrEnum):
    SPEED = "speed"  # off: the same program, slower (what an A/B measures)
    CORRECTNESS = "correctness"  # off: fails as upstream does
    REPLACEMENT = "replacement"  # not a Python patch: edgekit's own implementation of an upstream contract


@dataclass(frozen=True)
class Patch:
    """One change to upstream behaviour."""

    name: str
    changes: str  # what upstream does that this changes
    # distribution → the version it was written and measured for: a prefix ("2.13.") for the pinned stack, ">=X" for a
    # dependency the project leaves open (then the still-pays test is what says it must be looked at again)
    written_for: dict[str, str]
    buys: str  # what it buys, measured: figures and where they are
    test: str  # the test that fails when it stops paying
    apply: str | None  # "module:function" of its context manager (None: not a Python patch, see ``changes``)
    kind: PatchKind = PatchKind.SPEED
    notes: list[str] = field(default_factory=list)


TORCH, EXECUTORCH, TORCHAO = {"torch": "2.13."}, {"executorch": "1.5.1"}, {"torchao": "0.18."}

PATCHES: tuple[Patch, ...] = (
    Patch(
        "shared-provenance",
        "torch.fx.traceback.NodeSource.__init__ deep-copies a node's whole from_node history for every node in every "
        "FX pass; the records share it instead (NodeSource objects are never changed once made)",
        dict(TORCH),
        "tiny BERT lowering 7-9 s instead of 11, suite CPU -6%; SmolLM2-135M 8da4w lowering 257 → 253 s "
        "(benchmarks/results/llm_build_time.txt); the same bytes and histories (tests/test_pipeline.py)",
        "tests/test_upstream.py::test_torch_still_deep_copies_provenance_histories",
        "edgekit.upstream.fx:shared_provenance",
    ),
    Patch(
        "cia-walk-once",
        "torch._export.utils._materialize_cpp_cia_ops re-reads the CompositeImplicitAutograd table and looks every "
        "operator up again in every run_decompositions; walked once per set of registrations (and "
        "torch.library._clear_torch_ops_cache forgets what was walked)",
        dict(TORCH),
        "small CNN int8 build 1.55 → 1.41 s, ResNet-18 @224 17.0 → 16.9 s (benchmarks/results/cia_walk.txt)",
        "tests/test_upstream.py::test_torch_still_walks_the_operator_table_in_every_decomposition",
        "edgekit.upstream.fx:cia_ops_materialized_once",
    ),
    Patch(
        "xnnpack-skip-unchanging-passes",
        "eight of XNNPACK's partition passes (ConvertToSDPA, ConvertToUpsampleBilinear2d, FuseBatchNorm, "
        "DecomposeBatchNorm, Conv1dUnsqueeze, PReLUReshape, DecomposeConcatenate, FuseActivation) retrace a partition "
        "that holds none of their ops; their call returns it unchanged there",
        dict(EXECUTORCH),
        "SmolLM2-135M 8da4w lowering 306 → 253 s (benchmarks/results/llm_build_time.txt), 3 s of pattern exports per "
        "process; the same bytes (tests/test_pipeline.py)",
        "tests/test_upstream.py::test_xnnpacks_passes_still_retrace_a_partition_they_cannot_change",
        "edgekit.upstream.xnnpack:skip_unchanging_passes",
    ),
    Patch(
        "xnnpack-quantizer-patterns-once",
        "XNNPACKQuantizer traces its twelve conv + BatchNorm patterns with a strict torch.export on every prepare; "
        "traced once per process, and not at all for a graph with no batch norm left",
        dict(EXECUTORCH),
        "first int8 build in a process: small CNN 2.98 → 1.65 s, ResNet-18 18.4 → 17.5 s "
        "(benchmarks/results/first_build.txt)",
        "tests/test_quantize.py::test_the_quantizers_conv_bn_patterns_are_traced_once_and_only_where_a_batch_norm_is",
        "edgekit.upstream.xnnpack:cached_quantizer_patterns",
    ),
    Patch(
        "shapes-only-quant-ops",
        "torchao's choose_qparams_affine / quantize_affine / dequantize_affine run their Python decompositions on fake "
        "tensors in symbolic shapes in every lowering pass; fake tensors get their output shapes directly",
        {**TORCH, **TORCHAO},
        "SmolLM2-135M 8da4w lowering 201 → 118 s (benchmarks/results/llm_quant_lowering.txt); the same bytes "
        "(tests/test_generation.py)",
        "tests/test_upstream.py::test_torchaos_quant_ops_still_decompose_on_fake_tensors",
        "edgekit.upstream.quant_ops:shapes_only_quant_ops",
    ),
    Patch(
        "exported-ranges-kept",
        "torch's fake convolution, re-run by XNNPACK's channels-last pass, guards the batch below 16 on the program's "
        "shape environment, and the memory planner then sizes inputs for 15; the exported ranges are put back",
        {**TORCH, **EXECUTORCH},
        "a --dynamic-batch 1:32 program accepts 32 samples, not 15 (tests/test_pipeline.py)",
        "tests/test_upstream.py::test_lowering_still_narrows_a_dynamic_batch",
        "edgekit.upstream.export:exported_ranges_kept",
        kind=PatchKind.CORRECTNESS,
    ),
    Patch(
        "no-mha-fastpath",
        "nn.TransformerEncoder in eval mode takes a fused fast path (aten._transformer_encoder_layer_fwd) that strict "
        "export (edgekit's fallback when non-strict export fails) captures and ExecuTorch cannot lower; off while a "
        "model is exported",
        dict(TORCH),
        "nn.TransformerEncoder models build (benchmarks/suite.toml's tiny_transformer)",
        "tests/test_upstream.py::test_strict_export_still_captures_the_fused_encoder_fast_path",
        "edgekit.upstream.export:no_mha_fastpath",
        kind=PatchKind.CORRECTNESS,
    ),
    Patch(
        "lean-runtime-import",
        "executorch's portable_lib imports executorch.exir, whose __init__ pulls in the exporter, torch._dynamo and "
        "torch._inductor; a placeholder package stands in while the runtime imports",
        dict(EXECUTORCH),
        "profiling worker start-up 4.0 → 1.0 s, RSS after loading a program 362 → 228 MiB (edgekit/upstream/runtime.py)",
        "tests/test_upstream.py::test_the_runtimes_own_import_still_pulls_in_the_compiler",
        "edgekit.upstream.runtime:exir_placeholder",
    ),
    Patch(
        "dask-config-defaults",
        "distributed registers its configuration defaults on first import; imported inside a dask.config.set block "
        "they are dropped with it, and Security() then fails (KeyError 'require-encryption'); they are put back",
        {"distributed": ">=2026.8"},
        "a tls:// executor works after a user's dask.config.set block (tests/test_scale.py)",
        "tests/test_upstream.py::test_dask_still_drops_its_defaults_with_a_config_block",
        "edgekit.upstream.dask_config:dask_defaults_restored",
        kind=PatchKind.CORRECTNESS,
    ),
    Patch(
        "native-llama-kernels",
        "ExecuTorch ships its llama::update_cache / llama::custom_sdpa kernels only linked to libtorch; the native "
        "runner has its own implementation of the same contract (edgekit/runner/llm_ops.cpp)",
        dict(EXECUTORCH),
        "generation programs run with no Python and no torch, here and on boards (a 6 MiB runner baseline against "
        "224 MiB); each cached row read once per query row (benchmarks/results/llm_sdpa.txt)",
        "tests/test_attention_kernels.py::test_edgekits_attention_gives_executorchs_answers_at_the_shapes_people_ship",
        None,
        kind=PatchKind.REPLACEMENT,
        notes=["not a Python patch: --engine python runs ExecuTorch's own kernels"],
    ),
)

_BY_NAME = {p.name: p for p in PATCHES}
_local_off: collections.Counter[str] = collections.Counter()  # names switched off in this process, by open blocks
_local_lock = threading.Lock()


def patch(name: str) -> Patch:
    """The patch named ``name``.

    Raises:
        KeyError: no such patch (the message lists them).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no upstream patch {name!r}; there are: {', '.join(_BY_NAME)}") from None


def _env_off() -> set[str]:
    """The names ``EDGEKIT_UPSTREAM_OFF`` lists (``all`` included).

    Raises:
        UsageError: a name that is no patch (a typo would otherwise measure everything on).
    """
    off = {n.strip() for n in os.environ.get(OFF_ENV, "").split(",") if n.strip()}
    unknown = sorted(off - set(_BY_NAME) - {"all"})
    if unknown:
        raise UsageError(
            f"{OFF_ENV} names no patch {', '.join(map(repr, unknown))}", f"the patches: {', '.join(_BY_NAME)}, or all"
        )
    return off


def enabled(name: str) -> bool:
    """Whether ``name`` is applied here: not listed in ``EDGEKIT_UPSTREAM_OFF``, nor switched off in this process."""
    patch(name)
    return not ({"all", name} & _env_off()) and _local_off[name] == 0


def applied(name: str, *args: object) -> ContextManager[None]:
    """The patch's context manager (given ``args``: what it applies to), or nothing when it is switched off."""
    p = patch(name)
    if p.apply is None or not enabled(name):
        return contextlib.nullcontext()
    module, function = p.apply.split(":")
    return getattr(importlib.import_module(module), function)(*args)


@contextlib.contextmanager
def switched_off(*names: str) -> Iterator[None]:
    """Leave ``names`` off in this process inside the block (``EDGEKIT_UPSTREAM_OFF`` for processes it starts);
    blocks nest and overlap (a name is back on when the last block that switched it off ends)."""
    for n in names:
        patch(n)
    with _local_lock:
        _local_off.update(names)
    try:
        yield
    finally:
        with _local_lock:
            _local_off.subtract(names)


def version_mismatches() -> list[str]:
    """Installed versions outside what a patch was written for: each one means re-checking that patch."""
    out = []
    for p in PATCHES:
        for dist, wanted in p.written_for.items():
            try:
                have = version(dist)
            except PackageNotFoundError:
                continue  # an optional dependency that is not installed: nothing to patch
            if wanted.startswith(">="):
                floor = _numbers(wanted[2:])
                if _numbers(have) + (0,) * len(floor) < floor:
                    out.append(f"{p.name}: written for {dist} {wanted}, installed {have}")
            elif not _same_release(have, wanted):
                out.append(f"{p.name}: written for {dist} {wanted}*, installed {have}")
    return out


def _numbers(v: str) -> tuple[int, ...]:
    """ "2026.11.0" → (2026, 11, 0); what follows the numbers (+cpu, rc1) is ignored."""
    parts = []
    for piece in v.split("."):
        digits = ""
        for c in piece:
            if not c.isdigit():
                break
            digits += c
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _same_release(have: str, wanted: str) -> bool:
    """``have`` is the release ``wanted`` names: "2.13." for any 2.13.x; "1.5.1" for 1.5.1 or 1.5.1+cpu, not 1.5.10."""
    if wanted.endswith("."):
        return have.startswith(wanted)
    return have == wanted or have.startswith(wanted + "+") or have.startswith(wanted + ".")
