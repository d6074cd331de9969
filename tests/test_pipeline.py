"""The build pipeline on the real stack: export, PT2E quantization, XNNPACK lowering, ExecuTorch runtime."""

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli

import edgekit
from edgekit.errors import BudgetError, DataError, EdgekitError, ExportError, OutputExistsError
from edgekit.manifest import read_manifest
from edgekit.models import parse_dynamic_batch, parse_input_spec
from edgekit.program import InProcessProgram, inspect_program, sha256_file
from edgekit.targets import load_target

X8 = [parse_input_spec("1x1x8x8")]


def test_int8_manifest_records_everything(int8_build):
    m = int8_build.manifest.to_dict()
    assert int8_build.pte_path.is_file()
    assert json.loads((int8_build.out_dir / "manifest.json").read_text()) == m
    assert read_manifest(int8_build.out_dir) == int8_build.manifest  # the typed document round-trips
    assert m["schema_version"] == 2
    assert set(m["versions"]) >= {"edgekit", "torch", "executorch", "python"}
    assert m["versions"]["torch"].startswith("2.13.0")
    assert m["model"]["inputs"] == [{"name": "x", "shape": [1, 1, 8, 8], "dtype": "float32", "dynamic": False}]
    assert m["model"]["outputs"][0]["shape"] == [1, 10]
    assert m["target"]["name"] == "xnnpack-int8" and m["target"]["quantize"]["calibration_samples"] == 64
    assert m["quantize"]["applied"] and m["quantize"]["calibration_samples"] == 64
    assert m["quantize"]["calibration"].endswith("calib.npz")
    assert m["program"]["sha256"] == sha256_file(int8_build.pte_path)
    assert m["program"]["size_bytes"] == int8_build.pte_path.stat().st_size
    d = m["program"]["delegation"]
    assert d["delegated_partitions"] >= 1 and d["by_operator"]["aten_convolution_default"]["delegated"] == 2
    assert m["program"]["planned_memory"]["planned_bytes"] > 0
    assert list(m["timings_s"])[:5] == ["load", "prune", "export", "quantize", "lower"]  # the stages, in their order
    assert set(m["timings_s"]) >= {"verify", "total"}
    assert not m["prune"]["applied"] and m["prune"]["reason"] == "target asks for no pruning"


def test_int8_verify_metrics_and_accuracy(int8_build):
    v = int8_build.manifest.to_dict()["verify"]
    assert v["data"].endswith("eval.npz") and v["samples"] == 100
    assert v["sqnr_db"] > 20 and v["cosine_similarity"] > 0.99 and v["top1_agreement"] >= 0.95
    acc = v["accuracy"]
    assert acc["eager"] > 0.9 and abs(acc["drop"]) <= 0.03
    assert acc["drop"] == pytest.approx(acc["eager"] - acc["program"], abs=1e-6)


def test_program_runs_like_eager_in_a_fresh_runtime(int8_build, trained_cnn, digits_like):
    x = torch.from_numpy(digits_like["x"][350:351])  # in the calibrated range (random normals are not)
    out = InProcessProgram(int8_build.pte_path).run((x,))[0]
    assert torch.nn.functional.cosine_similarity(out, trained_cnn(x)).item() > 0.99


def test_fp32_build_matches_eager_closely(fp32_build):
    v = fp32_build.manifest.to_dict()["verify"]
    assert v["sqnr_db"] is None or v["sqnr_db"] > 60
    assert v["data"] == "random (held-out seed)"
    assert fp32_build.manifest.quantize.scheme == "none" and not fp32_build.manifest.quantize.applied


def test_portable_target_has_no_delegate(tmp_path):
    res = edgekit.build("toy_models:mlp", "portable-fp32", out=tmp_path / "p")
    d = res.manifest.to_dict()["program"]["delegation"]
    assert d["delegated_partitions"] == 0 and d["portable_nodes"] > 0
    assert not inspect_program(res.pte_path).method().delegates


def test_dynamic_batch_program_accepts_several_batch_sizes(tmp_path, digits_like):
    res = edgekit.build(
        "toy_models:small_cnn",
        "xnnpack-int8",
        out=tmp_path / "dyn",
        inputs=X8,
        dynamic_batch=parse_dynamic_batch("1:33"),
        calibration=digits_like["calib"],
    )
    prog = InProcessProgram(res.pte_path)
    # 16 and above matters: a torch heuristic used to cap the planned batch at 15 (see lower.py).
    for batch in (1, 5, 16, 33):
        assert prog.run((torch.randn(batch, 1, 8, 8),))[0].shape == (batch, 10)
    assert res.manifest.to_dict()["model"]["dynamic_batch"] == {"min": 1, "max": 33, "program_max": 33}
    assert not [w for w in res.warnings if "batches up to" in w]


def test_numpy_strided_example_builds_and_runs(tmp_path):
    res = edgekit.build("toy_models:numpy_strided_inputs", "xnnpack-fp32", out=tmp_path / "s")
    assert res.manifest.to_dict()["verify"]["cosine_similarity"] > 0.9999


def test_saved_exported_program_builds(tmp_path):
    from toy_models import small_cnn_with_inputs

    model, x = small_cnn_with_inputs()
    torch.export.save(torch.export.export(model.eval(), (x,)), str(tmp_path / "m.pt2"))
    res = edgekit.build(str(tmp_path / "m.pt2"), "xnnpack-fp32", out=tmp_path / "o")
    assert res.manifest.to_dict()["export"]["mode"] == "loaded"


def test_non_strict_failure_falls_back_to_strict_and_says_so(tmp_path):
    res = edgekit.build("toy_models:dynamo_only", "xnnpack-fp32", out=tmp_path / "o")
    assert res.manifest.to_dict()["export"]["mode"] == "strict"
    assert "only traces under TorchDynamo" in res.manifest.to_dict()["export"]["fallback_reason"]
    assert any("non-strict torch.export failed" in w for w in res.warnings)
    locked = edgekit.build("toy_models:locked_linear", "xnnpack-fp32", out=tmp_path / "l")  # strict refuses the lock
    assert locked.manifest.export.mode == "non-strict" and locked.manifest.export.fallback_reason is None


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_failure_is_one_line_and_leaves_nothing(tmp_path):
    with pytest.raises(ExportError) as info:
        edgekit.build("toy_models:data_dependent", "xnnpack-fp32", out=tmp_path / "o")
    assert "data-dependent" in info.value.message and "\n" not in str(info.value)
    assert "torch.cond" in info.value.hint
    assert _leftovers(tmp_path) == []


def test_calibration_shape_mismatch_fails_before_writing(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"\(3, 8, 8\).*\(1, 8, 8\)"):
        edgekit.build(
            "toy_models:small_cnn", "xnnpack-int8", out=tmp_path / "o", inputs=X8, calibration=tmp_path / "bad.npy"
        )
    assert _leftovers(tmp_path) == ["bad.npy"]


def test_existing_output_needs_force_and_only_a_package_is_ever_replaced(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for force in (False, True):  # a folder of the user's is never replaced, even with --force
        with pytest.raises(OutputExistsError, match="not an edgekit package"):
            edgekit.build("toy_models:mlp", "xnnpack-fp32", out=out, force=force)
    assert _leftovers(out) == ["keep.txt"]
    (out / "keep.txt").unlink()  # an empty folder is fine
    edgekit.build("toy_models:mlp", "xnnpack-fp32", out=out)
    assert _leftovers(out) == ["explain.json", "manifest.json", "model.pte", "reference.npz"]
    with pytest.raises(OutputExistsError, match="already exists"):
        edgekit.build("toy_models:mlp", "xnnpack-fp32", out=out)
    edgekit.build("toy_models:mlp", "xnnpack-fp32", out=out, force=True)  # a package is, with --force
    assert _leftovers(out) == ["explain.json", "manifest.json", "model.pte", "reference.npz"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_bad_output_locations_fail_before_any_work(tmp_path):
    (tmp_path / "file").write_text("mine")
    cases = [
        (tmp_path / "file", OutputExistsError, "is not a folder"),  # even with --force
        (tmp_path / "file" / "o", EdgekitError, "is a file, not a folder"),
        (Path("/proc/edgekit-cannot-write-here"), EdgekitError, "cannot write"),
    ]
    for out, error, fragment in cases:
        t0 = time.perf_counter()
        with pytest.raises(error, match=fragment):
            edgekit.build("toy_models:mlp", "xnnpack-fp32", out=out, force=True)
        assert time.perf_counter() - t0 < 5  # checked before loading, exporting or lowering anything
    assert (tmp_path / "file").read_text() == "mine"


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".o.{dead.pid}.0badc0de.tmp"
    stale.mkdir()
    (stale / "model.pte").write_bytes(b"half")
    live = tmp_path / f".other.{os.getpid() + 0}.00c0ffee.tmp"  # this process: alive, so never touched
    live.mkdir()
    edgekit.build("toy_models:mlp", "xnnpack-fp32", out=tmp_path / "o")
    assert not stale.exists() and live.exists()
    stale.mkdir()
    r = run_cli("clean", str(tmp_path))
    assert r.exit_code == 0 and "1 leftover(s) removed" in r.output and not stale.exists() and live.exists()


def test_size_budget_failure_leaves_nothing(tmp_path):
    tight = load_target("xnnpack-fp32").replace(name="tight", budget__max_size_mb=0.001)
    with pytest.raises(BudgetError) as info:
        edgekit.build("toy_models:small_cnn", tight, out=tmp_path / "o", inputs=X8)
    assert "size_mb" in info.value.message and "limit 0.001" in info.value.message
    assert _leftovers(tmp_path) == []


def test_dict_outputs_are_verified_leaf_by_leaf(tmp_path):
    res = edgekit.build("toy_models:dict_out", "xnnpack-fp32", out=tmp_path / "d")
    v = res.manifest.to_dict()["verify"]
    assert len(v["outputs"]) == 2 and v["cosine_similarity"] > 0.9999
    assert [o["shape"] for o in res.manifest.to_dict()["model"]["outputs"]] == [[1, 3], [1, 3]]


def test_labels_for_a_non_classifier_are_noted_not_crashed_on(tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.random.rand(8, 4).astype(np.float32), y=np.zeros(8, np.int64))
    res = edgekit.build("toy_models:regressor", "xnnpack-fp32", out=tmp_path / "o", eval=tmp_path / "eval.npz")
    v = res.manifest.to_dict()["verify"]
    assert v["accuracy"] is None and "not N x classes" in v["accuracy_note"] and v["samples"] == 8


def test_verify_figures_fit_what_the_output_is(tmp_path, int8_build):
    assert int8_build.manifest.verify.task == "classify" and int8_build.manifest.verify.top1_agreement is not None
    reg = edgekit.build("toy_models:regressor", "xnnpack-fp32", out=tmp_path / "r")
    assert reg.manifest.verify.task == "regress" and reg.manifest.verify.top1_agreement is None
    emb = edgekit.build("toy_models:mlp", "xnnpack-int8-dynamic", out=tmp_path / "e", task="embed", verify_samples=16)
    v = emb.manifest.verify
    assert v.task == "embed" and v.task_reason == "given with --task" and v.top1_agreement is None
    assert 0.9 < v.cosine_min <= v.cosine_similarity <= 1.0 and 0.5 <= v.nn_agreement <= 1.0
    r = run_cli("build", "toy_models:mlp", "-t", "xnnpack-int8-dynamic", "--task", "embed", "-o", tmp_path / "c", "-q")
    assert r.exit_code == 0 and "nearest-neighbour agreement" in r.stdout and "top-1" not in r.stdout


def test_the_output_kind_is_guessed_from_shape_values_and_labels():
    from edgekit.pipeline.verify import Task, guess_task

    logits = torch.randn(8, 10)
    assert (
        guess_task(logits, labelled=False)[0] is Task.CLASSIFY and guess_task(logits, labelled=True)[0] is Task.CLASSIFY
    )
    assert guess_task(torch.nn.functional.normalize(torch.randn(8, 384), dim=1), labelled=False)[0] is Task.EMBED
    assert guess_task(torch.randn(8, 32, 384), labelled=False)[0] is Task.EMBED  # a last hidden state
    assert guess_task(torch.randn(8, 1), labelled=False)[0] is Task.REGRESS


def test_a_shared_dynamic_dimension_is_one_symbol_and_a_half_declared_one_says_how(tmp_path):
    from edgekit.dynamic import parse_dynamic_dim
    from edgekit.errors import ExportError

    res = edgekit.build(
        "toy_models:sequence_mixer", "xnnpack-fp32", out=tmp_path / "ok", dynamic_dims=[parse_dynamic_dim("a,b:1:2:40")]
    )
    assert [c.sizes for c in res.manifest.verify.at_sizes] == [{"a,b:1": 2}, {"a,b:1": 40}]
    assert all(c.sqnr_db is None or c.sqnr_db > 60 for c in res.manifest.verify.at_sizes)
    assert (
        res.manifest.model.inputs[0].dynamic and not res.manifest.program.delegation.portable_ops
    )  # layer_norm delegated
    with pytest.raises(ExportError) as err:
        edgekit.build(
            "toy_models:sequence_mixer",
            "xnnpack-fp32",
            out=tmp_path / "half",
            dynamic_dims=[parse_dynamic_dim("a:1:2:40")],
        )
    assert "declare them together: --dynamic-dim a,b:1:2:40" in err.value.hint, err.value.hint
    assert not (tmp_path / "half").exists()


def test_a_build_leaves_the_host_applications_gc_freeze_warning_filters_and_loggers_as_they_were(tmp_path):
    import gc
    import logging
    import warnings

    gc.freeze()  # a host that froze its heap (before forking workers, say)
    frozen = gc.get_freeze_count()
    filters, level = list(warnings.filters), logging.getLogger("torch._dynamo").level
    try:
        edgekit.build("toy_models:mlp", "xnnpack-fp32", out=tmp_path / "a", verify_samples=2)
        assert gc.get_freeze_count() > 0.9 * frozen > 0  # not unfrozen (some frozen objects die by refcount)
        assert warnings.filters == filters and logging.getLogger("torch._dynamo").level == level
    finally:
        gc.unfreeze()
    edgekit.build("toy_models:mlp", "xnnpack-fp32", out=tmp_path / "b", verify_samples=2)
    assert gc.get_freeze_count() == 0  # its own freeze is handed back


#: patches applied where a program runs or builds are scheduled, not by a build
RUN_TIME_PATCHES = {"lean-runtime-import", "dask-config-defaults", "native-llama-kernels"}


def test_shared_provenance_changes_neither_the_program_nor_any_nodes_history(tmp_path, monkeypatch):
    """Builds share torch's FX provenance records instead of deep-copying them at every pass: every node of a real
    lowering carries the same history either way, the build's program and explain record are byte for byte the same,
    and torch's own constructor is back once the build ends. The build applies every build-time upstream patch."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torch.fx.traceback import NodeSource
    from toy_models import SmallCNN

    from edgekit import upstream
    from edgekit.upstream.fx import shared_provenance

    torch_init = NodeSource.__init__

    def histories():
        exported = torch.export.export(SmallCNN().eval(), (torch.randn(1, 1, 8, 8),))
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        graphs = [edge.exported_program().graph_module] + [
            m.original_module.graph_module
            for m in edge.exported_program().graph_module.modules()
            if hasattr(m, "original_module")
        ]

        def plain(record):  # a graph's id is its address in this process: the rest must be equal
            return {k: [plain(r) for r in v] if k == "from_node" else v for k, v in record.items() if k != "graph_id"}

        return [
            (n.name, [plain(s.to_dict()) for s in n.meta.get("from_node", [])]) for g in graphs for n in g.graph.nodes
        ]

    deep = histories()
    with shared_provenance():
        assert NodeSource.__init__ is not torch_init
        shared = histories()
    assert NodeSource.__init__ is torch_init
    # real histories, several levels deep (the records a shared history is made of), compared entry by entry
    assert shared == deep and sum(bool(r["from_node"]) for _, h in deep for r in h) > 10
    # blocks nest and may end in any order (builds in threads): torch's constructor is back after the last
    first, second = shared_provenance(), shared_provenance()
    first.__enter__(), second.__enter__()
    first.__exit__(None, None, None)
    assert NodeSource.__init__ is not torch_init
    second.__exit__(None, None, None)
    assert NodeSource.__init__ is torch_init

    def build(name):
        res = edgekit.build(
            "toy_models:small_cnn", "xnnpack-int8", out=tmp_path / name, inputs=[parse_input_spec("1x1x8x8")]
        )
        return res.manifest.program.sha256, (res.out_dir / "explain.json").read_bytes()

    seen, own_applied = set(), upstream.applied  # and every build-time upstream patch is applied by a build
    monkeypatch.setattr(upstream, "applied", lambda name, *args: seen.add(name) or own_applied(name, *args))
    sharing = build("shared")
    monkeypatch.undo()
    assert seen == {p.name for p in upstream.PATCHES if p.name not in RUN_TIME_PATCHES}, seen
    assert NodeSource.__init__ is torch_init
    # torch's own provenance copying and operator-table walks (cia-walk-once, below): the same bytes
    with upstream.switched_off("shared-provenance", "cia-walk-once"):
        assert build("deep") == sharing


def test_the_operator_table_is_walked_once_per_set_of_registrations_and_a_new_op_is_still_seen(monkeypatch):
    """Inside a build, torch's CIA operator table is walked once per set of registrations: the operators
    run_decompositions may keep are the ones torch lists itself, an operator registered mid-block is among them, one
    destroyed and defined again too, and torch's own functions are back after the last block, in any order."""
    import torch.library
    from torch._export import utils

    from edgekit.upstream.fx import cia_ops_materialized_once

    own, clear, collect = (
        utils._materialize_cpp_cia_ops,
        torch.library._clear_torch_ops_cache,
        utils._collect_all_valid_cia_ops,
    )
    listed, walks = collect(), []

    def counted() -> None:  # torch's walk, counted
        walks.append(1)
        own()

    monkeypatch.setattr(utils, "_materialize_cpp_cia_ops", counted)

    def twice_op():
        lib = torch.library.Library("edgekit_test_cia", "DEF")
        lib.define("twice(Tensor x) -> Tensor")
        lib.impl("twice", lambda x: x * 2, "CompositeImplicitAutograd")
        return lib

    def listed_now() -> set:
        return {str(op) for op in collect()}

    with cia_ops_materialized_once():
        assert collect() == listed and collect() == listed and len(walks) == 1  # torch: once per namespace, each time
        lib = twice_op()
        try:
            assert "edgekit_test_cia.twice.default" in listed_now() and len(walks) == 2
        finally:
            lib._destroy()  # torch deletes the op from torch.ops: the same table as before must be walked again
        lib = twice_op()
        try:
            assert "edgekit_test_cia.twice.default" in listed_now()
        finally:
            lib._destroy()
        first, second = cia_ops_materialized_once(), cia_ops_materialized_once()
        first.__enter__(), second.__enter__()  # nested blocks (builds in threads) end in any order
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        assert utils._materialize_cpp_cia_ops is not counted
    assert utils._materialize_cpp_cia_ops is counted and torch.library._clear_torch_ops_cache is clear
    assert "edgekit_test_cia.twice.default" not in listed_now()


def test_xnnpack_passes_are_skipped_only_where_they_cannot_change_the_program(tmp_path):
    """The lowering skips XNNPACK passes on partitions that hold none of their ops (and so never builds the SDPA and
    bilinear patterns for a model without them): the program is byte for byte the one the full pass list makes, each
    pattern a skip relies on really holds the op that decides it, and the passes are XNNPACK's own again afterwards."""
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa

    from edgekit import upstream
    from edgekit.upstream.xnnpack import SKIPPABLE_PASSES, skip_unchanging_passes

    def build(name):
        return edgekit.build("toy_models:mlp", "xnnpack-int8", out=tmp_path / name).manifest.program.sha256

    table = SKIPPABLE_PASSES()
    own = {cls: cls.call for cls in table}
    with skip_unchanging_passes():
        assert all(cls.call is not own[cls] for cls in table)
    guarded = build("guarded")
    assert all(cls.call is own[cls] for cls in table)  # XNNPACK's own passes once the lowering is over
    with upstream.switched_off("xnnpack-skip-unchanging-passes"):
        assert build("full") == guarded
    needs = {cls.__name__: ops for cls, ops in table.items()}
    for name, graphs in (
        ("ConvertToSDPAPass", sdpa.get_graphs()),
        ("ConvertToUpsampleBilinear2d", bilinear_2d.get_graphs()),
    ):
        for g in graphs:
            assert needs[name] <= {n.target for n in g.graph.nodes if n.op == "call_function"}, name
