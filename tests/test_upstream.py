"""The upstream patches (edgekit.upstream): each listed with the versions it was written for, each switchable, and
for each a test that upstream still does what the patch changes — so that an upgrade that fixes it, or changes its
shape, fails here and the patch is looked at again (the patch's own effect is tested beside the code that uses it:
the same bytes, the same histories, the same kernels)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgekit import upstream
from edgekit.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def test_every_patch_is_listed_with_its_versions_its_switch_and_a_test_that_exists():
    assert upstream.version_mismatches() == []  # an upgrade: re-check the patches named, then update written_for
    names = [p.name for p in upstream.PATCHES]
    assert len(names) == len(set(names)) >= 10
    for p in upstream.PATCHES:
        assert p.changes and p.buys and p.written_for and p.kind in ("speed", "correctness", "replacement"), p
        path, _, test = p.test.partition("::")
        assert (ROOT / path).is_file() and (not test or f"def {test}(" in (ROOT / path).read_text()), p.test
        if p.apply is not None:  # in edgekit/upstream itself: imported by name, so the import tools cannot see it
            module, function = p.apply.split(":")
            assert module.startswith("edgekit.upstream.") and callable(
                getattr(__import__(module, fromlist=[function]), function)
            ), p.apply
    with pytest.raises(KeyError, match="there are: shared-provenance"):
        upstream.patch("nope")


def test_a_patch_switched_off_is_not_applied_here_or_in_processes_started_with_the_variable(monkeypatch):
    from torch.fx.traceback import NodeSource

    own = NodeSource.__init__
    with upstream.applied("shared-provenance"):
        assert NodeSource.__init__ is not own
    with upstream.switched_off("shared-provenance"), upstream.applied("shared-provenance"):
        assert NodeSource.__init__ is own and not upstream.enabled("shared-provenance")
    assert upstream.enabled("shared-provenance")
    monkeypatch.setenv(upstream.OFF_ENV, "cia-walk-once, shared-provenance")
    assert not upstream.enabled("shared-provenance") and upstream.enabled("no-mha-fastpath")
    monkeypatch.setenv(upstream.OFF_ENV, "all")
    assert not any(upstream.enabled(p.name) for p in upstream.PATCHES)
    monkeypatch.setenv(upstream.OFF_ENV, "shared-provenanse")  # a typo must not measure everything on
    with pytest.raises(UsageError, match="names no patch 'shared-provenanse'"):
        upstream.enabled("shared-provenance")
    monkeypatch.delenv(upstream.OFF_ENV)
    # overlapping blocks: a name is back on when the last block that switched it off ends
    first, second = upstream.switched_off("cia-walk-once"), upstream.switched_off("cia-walk-once")
    first.__enter__(), second.__enter__()
    first.__exit__(None, None, None)
    assert not upstream.enabled("cia-walk-once")
    second.__exit__(None, None, None)
    assert upstream.enabled("cia-walk-once")


def test_patches_shared_by_builds_in_threads_are_undone_by_the_last_block_whatever_the_order():
    import threading

    from executorch.backends.xnnpack.quantizer import xnnpack_quantizer_utils as utils

    own_pattern, own_fastpath = utils._get_aten_graph_module_for_pattern, torch.backends.mha.get_fastpath_enabled()
    for name, changed in (
        ("xnnpack-quantizer-patterns-once", lambda: utils._get_aten_graph_module_for_pattern is not own_pattern),
        ("no-mha-fastpath", lambda: torch.backends.mha.get_fastpath_enabled() != own_fastpath),
    ):
        a, b = upstream.applied(name), upstream.applied(name)
        ready, done, inside = threading.Event(), threading.Event(), []

        def other(block=b, ready=ready, done=done, inside=inside, changed=changed):  # a build in a thread, ending last
            with block:
                ready.set()
                done.wait(30)
                inside.append(changed())

        t = threading.Thread(target=other)
        with a:
            t.start()
            ready.wait(30)
        assert changed(), name  # the other build's block is still open
        done.set()
        t.join(30)
        assert inside == [True] and not changed(), name  # and it was the last


# ------------------------------------------------------------------------------------------------ still needed
def test_torch_still_deep_copies_provenance_histories():
    from torch.fx.traceback import NodeSource

    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU()))
    node = next(n for n in gm.graph.nodes if n.op == "call_module")
    node.meta["from_node"] = [NodeSource(node, "first")]
    made = NodeSource(node, "second")
    assert made.from_node and made.from_node[0] is not node.meta["from_node"][0]  # a copy: shared-provenance pays


def test_torch_still_walks_the_operator_table_in_every_decomposition(monkeypatch):
    from torch._export import utils

    walks, own = [], utils._materialize_cpp_cia_ops
    monkeypatch.setattr(utils, "_materialize_cpp_cia_ops", lambda *a, **k: walks.append(1) or own(*a, **k))
    exported = torch.export.export(torch.nn.Linear(4, 4), (torch.randn(1, 4),))
    exported.run_decompositions()
    exported.run_decompositions()
    assert len(walks) >= 2  # every time: cia-walk-once pays


def test_xnnpacks_passes_still_retrace_a_partition_they_cannot_change():
    from executorch.backends.xnnpack._passes.decompose_cat import DecomposeConcatenate
    from executorch.exir import to_edge

    edge = to_edge(torch.export.export(torch.nn.Linear(4, 4), (torch.randn(1, 4),)))
    gm = edge.exported_program().graph_module
    assert not any("cat" in str(n.target) for n in gm.graph.nodes)
    assert DecomposeConcatenate().call(gm).graph_module is not gm  # retraced with nothing to change: the skip pays


def test_torchaos_quant_ops_still_decompose_on_fake_tensors():
    import torchao.quantization.quant_primitives  # noqa: F401  (registers torch.ops.torchao)
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    FakeTensorMode.cache_clear()  # outputs fake propagation cached earlier in this process (patched or not)
    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(4, 64))
        with Ops() as ops:
            torch.ops.torchao.choose_qparams_affine(x, "SYMMETRIC", [1, 32], torch.int8, -128, 127)
    assert len(ops.seen) > 5, ops.seen  # its arithmetic, op by op, on fake tensors: shapes-only-quant-ops pays


def test_lowering_still_narrows_a_dynamic_batch():
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from toy_models import SmallCNN

    from edgekit.upstream.export import shape_envs

    batch = torch.export.Dim("batch", min=1, max=32)
    exported = torch.export.export(SmallCNN().eval(), (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    uppers = [int(r.upper) for env in shape_envs(exported) for r in env.var_to_range.values() if r.upper < 1000]
    assert uppers and max(uppers) < 32, uppers  # the fake convolution's guard: exported-ranges-kept is needed


def test_strict_export_still_captures_the_fused_encoder_fast_path():
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True).eval()
    with torch.no_grad():
        strict = str(torch.export.export(layer, (torch.randn(1, 4, 16),), strict=True).graph)
    assert "_transformer_encoder_layer_fwd" in strict  # what ExecuTorch cannot lower: no-mha-fastpath is needed


def test_the_runtimes_own_import_still_pulls_in_the_compiler():
    probe = (
        "import sys, torch\n"
        "from executorch.extension.pybindings import portable_lib\n"
        "print('torch._dynamo' in sys.modules and hasattr(sys.modules['executorch.exir'], 'to_edge'))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "True", r.stderr[-500:]  # lean-runtime-import pays


def test_dask_still_drops_its_defaults_with_a_config_block():
    probe = (
        "import dask\n"
        "with dask.config.set({'distributed.comm.tls.ca-file': None}):\n"
        "    import distributed\n"
        "from distributed.security import Security\n"
        "try:\n"
        "    Security()\n"
        "    print('fine')\n"
        "except KeyError as exc:\n"
        "    print('KeyError', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert r.stdout.strip().startswith("KeyError"), r.stdout + r.stderr[-500:]  # dask-config-defaults is needed
