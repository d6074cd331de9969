"""edgekit explain and reference vectors on the real stack: build, ETDump from the native runner, module names."""

import json
import shutil

import numpy as np
import pytest
from helpers import run_cli

import edgekit
from edgekit.errors import ProgramError
from edgekit.explain import explain
from edgekit.manifest import read_manifest
from edgekit.targets import load_target


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """The outlier MLP in int8 (fc2 is the layer that breaks it) and with fc2 kept in fp32, on the same data."""
    d = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((64, 64)).astype(np.float32))
    np.savez(d / "eval.npz", x=rng.standard_normal((32, 64)).astype(np.float32))
    common = dict(calibration=d / "calib.npz", eval=d / "eval.npz")
    int8 = edgekit.build("toy_models:outlier_mlp", "xnnpack-int8", out=d / "int8", **common)
    return {"dir": d, "int8": int8, "common": common}


def test_explain_names_the_layer_that_makes_int8_wrong_and_keeping_it_fp32_helps(outlier, tmp_path):
    ex = explain(outlier["int8"].out_dir, runs=20)
    worst = ex.least_faithful(1)[0]
    assert worst.module == "fc2" and worst.cls == "Linear", [(r.module, r.local_sqnr_db) for r in ex.rows]
    assert worst.source.startswith("toy_models.py:") and "self.fc2(x)" in worst.source  # the user's own source line
    assert "simulated" in ex.fidelity
    assert {r.module for r in ex.rows} >= {"fc1", "fc2", "head"}
    assert all(r.precision == "int8" for r in ex.rows if r.module in ("fc1", "fc2", "head"))
    kept = edgekit.build(
        "toy_models:outlier_mlp",
        load_target("xnnpack-int8").replace(quantize__fp32_layers=("fc2",)),
        out=tmp_path / "kept",
        **outlier["common"],
    )
    before, after = outlier["int8"].manifest.verify.sqnr_db, kept.manifest.verify.sqnr_db
    assert after > before + 10, (before, after)


def test_explain_names_the_slowest_module_with_its_source_line_and_its_share(tmp_path):
    # a CNN whose convolutions take microseconds (XNNPACK logs its operators to the microsecond)
    res = edgekit.build(
        "toy_models:small_cnn", "xnnpack-fp32", out=tmp_path / "cnn", inputs=[edgekit.parse_input_spec("1x1x32x32")]
    )
    ex = explain(res.out_dir, runs=30)
    slow = ex.slowest(1)[0]
    assert slow.module == "features.3" and slow.cls == "Conv2d" and slow.p50_ms > 0, [
        (r.module, r.p50_ms) for r in ex.rows
    ]
    assert slow.source.startswith("toy_models.py:") and "XNNPACK: Convolution (NHWC, F32)" in slow.where
    first = next(r for r in ex.rows if r.module == "features.0")  # its BatchNorm and ReLU run inside its convolution
    assert any(f.endswith("@features.1") for f in first.fused) and any(f.endswith("@features.2") for f in first.fused)
    assert 0.95 <= sum(r.share for r in ex.rows) + ex.unattributed_ms / ex.method_p50_ms <= 1.3  # the whole run
    assert "not applicable" in ex.fidelity  # fp32: nothing to be unfaithful


def test_the_memory_plan_totals_the_programs_planned_bytes_and_the_cli_table_and_html(outlier, tmp_path):
    pkg = outlier["int8"].out_dir
    r = run_cli("explain", str(pkg), "--runs", "10", "--sort", "sqnr", "--html", str(tmp_path / "e.html"), "-q")
    assert r.exit_code == 0, r.output
    assert "least faithful:" in r.stdout and "fc2 (Linear)" in r.stdout and "memory plan:" in r.stdout
    page = (tmp_path / "e.html").read_text()
    planned = read_manifest(pkg).program.planned_memory.planned_bytes
    assert page.count("data:image/png;base64") == 2 and f"{planned:,} bytes planned" in page
    j = run_cli("explain", str(pkg), "--runs", "10", "--json", "-q")
    doc = json.loads(j.stdout)
    m = read_manifest(pkg)
    assert doc["memory"]["planned_bytes"] == m.program.planned_memory.planned_bytes  # the .pte's own plan
    assert doc["plan"]["tensors"] and doc["memory"]["peak_live_bytes"] > 0


def test_explain_on_a_package_from_before_it_and_on_a_non_package(outlier, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(outlier["int8"].out_dir, old)
    doc = json.loads((old / "manifest.json").read_text())
    doc.pop("explain")
    (old / "explain.json").unlink()
    (old / "manifest.json").write_text(json.dumps(doc))
    ex = explain(old, runs=10)
    assert ex.notes and "no explain.json" in ex.notes[0] and ex.memory is None
    assert any(r.module.startswith("XNNPACK: Fully Connected") for r in ex.rows)  # by XNNPACK's names, still timed
    r = run_cli("explain", str(tmp_path))
    assert r.exit_code == 1 and len([ln for ln in r.stderr.splitlines() if ln.startswith("Error")]) == 1
    assert "manifest" in r.stderr and "Traceback" not in r.output


# ------------------------------------------------------------------------------------------ reference vectors
def test_every_package_carries_reference_vectors_that_a_profile_checks_first(outlier, tmp_path):
    m = outlier["int8"].manifest
    assert m.reference.samples == 4 and "eval.npz" in m.reference.source
    assert (outlier["int8"].out_dir / "reference.npz").is_file()
    with np.load(outlier["int8"].out_dir / "reference.npz", allow_pickle=False) as z:
        assert z["input_0"].shape == (4, 1, 64) and z["expected_0"].shape == (4, 1, 8)
    prof = edgekit.profile(outlier["int8"].out_dir, runs=5, warmup=1, warmup_seconds=0.0)
    assert prof.check.status == "passed" and prof.check.samples == 4
    # altered after the build: refused by its sha256, in one line
    bad = tmp_path / "bad"
    shutil.copytree(outlier["int8"].out_dir, bad)
    with open(bad / "reference.npz", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01")
    r = run_cli("profile", str(bad), "--runs", "5")
    assert r.exit_code == 1 and "reference.npz does not match its manifest" in r.stderr and "Traceback" not in r.output
    r = run_cli("profile", str(bad), "--runs", "5", "--no-check")
    assert r.exit_code == 1  # the file is still the package's, damaged: --no-check does not make it readable
    # a package from before reference vectors profiles with a note
    old = tmp_path / "old"
    shutil.copytree(outlier["int8"].out_dir, old)
    doc = json.loads((old / "manifest.json").read_text())
    doc.pop("reference")
    (old / "manifest.json").write_text(json.dumps(doc))
    r = run_cli("profile", str(old), "--runs", "5")
    assert r.exit_code == 0 and "answers not checked" in r.stdout and "before reference vectors" in r.stdout


def test_a_build_asked_for_no_reference_vectors_stores_none(tmp_path):
    res = edgekit.build("toy_models:mlp", "xnnpack-fp32", out=tmp_path / "o", reference_samples=0, explain=False)
    assert res.manifest.reference is None and res.manifest.explain is None
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["manifest.json", "model.pte"]
    with pytest.raises(ProgramError):
        explain(tmp_path / "nothing")


def test_per_module_fidelity_survives_in_place_activations():
    # conv → BatchNorm → ReLU(inplace=True): the simulation computes relu_ on the conv's own output tensor, so a value
    # kept without a copy would be rectified after the fact (a bug that once read 0 dB for every such conv)
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torch import nn
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekit.pipeline.explain_fidelity import module_sqnr

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3), nn.ReLU(True)
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    fp32 = torch.export.export(net, (x,)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(net, (x,)).module(), quantizer)
    for _ in range(4):
        prepared(torch.randn(1, 3, 16, 16))
    rows = {r.module: r for r in module_sqnr(fp32, convert_pt2e(prepared), [(torch.randn(1, 3, 16, 16),)])}
    for conv in ("0", "3"):
        assert rows[conv].local_sqnr_db > 25 and rows[conv].impact_sqnr_db > 20, rows[conv]
    assert rows["1"].folded  # the BatchNorm went into the first conv


def test_pointwise_convolutions_that_xnnpack_runs_as_gemms_keep_their_time(tmp_path):
    # XNNPACK runs a quantized 1×1 convolution as a Fully Connected GEMM: explain must charge it to the conv module
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 1, 16, 16)).astype(np.float32))
    res = edgekit.build(
        "toy_models:residual_concat",
        "xnnpack-int8",
        out=tmp_path / "rc",
        inputs=[edgekit.parse_input_spec("1x1x16x16")],
        calibration=tmp_path / "calib.npz",
    )
    ex = explain(res.out_dir, runs=20)
    rows = {r.module: r for r in ex.rows}
    for pointwise in ("left", "merge"):
        assert "Fully Connected" in rows[pointwise].where and rows[pointwise].p50_ms > 0, rows[pointwise]
    assert "Convolution" in rows["right"].where  # the 3×3 beside it stays a convolution
    assert ex.unattributed_ms < 0.5 * ex.method_p50_ms, (ex.unattributed_ms, ex.method_p50_ms)
