"""The demo end to end on real digits data (short training to keep the suite fast)."""

from pathlib import Path

from helpers import run_cli

from edgekit.demo import run_demo
from edgekit.manifest import read_manifest


def test_demo_builds_fp32_and_int8_with_real_accuracy(tmp_path):
    result = run_demo(tmp_path / "demo", epochs=3, time_runs=20, finetune_epochs=2)
    rows = {r["variant"].split(" (")[0]: r for r in result["rows"]}
    assert set(rows) >= {"eager PyTorch", "ExecuTorch fp32", "ExecuTorch int8", "pruned 50% + fine-tune + int8"}
    assert result["test_samples"] == 360
    assert rows["eager PyTorch"]["accuracy"] > 0.85
    assert abs(rows["ExecuTorch fp32"]["accuracy"] - rows["eager PyTorch"]["accuracy"]) < 1e-5
    assert rows["eager PyTorch"]["accuracy"] - rows["ExecuTorch int8"]["accuracy"] < 0.03
    assert rows["ExecuTorch int8"]["size_kib"] < rows["ExecuTorch fp32"]["size_kib"] / 2.5
    assert all(r["p50_ms"] > 0 for r in result["rows"])
    pruned = rows["pruned 50% + fine-tune + int8"]
    assert pruned["size_kib"] < rows["ExecuTorch int8"]["size_kib"] / 2 and pruned["accuracy"] > 0.8
    for target in ("xnnpack-fp32", "xnnpack-int8", "xnnpack-int8-pruned"):
        assert (tmp_path / "demo" / target / "model.pte").is_file()
        # the data each manifest names is where the demo left it, not in its (gone) staging folder
        assert ".tmp" not in (tmp_path / "demo" / target / "manifest.json").read_text()
    assert Path(read_manifest(tmp_path / "demo" / "xnnpack-int8").quantize.calibration).is_file()
    assert (tmp_path / "demo" / "digits_cnn.pt2").is_file() and (tmp_path / "demo" / "data" / "test.npz").is_file()


def test_demo_cli_refuses_to_overwrite(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.json").write_text("{}")  # an earlier demo: replaced only with --force
    r = run_cli("demo", "--out", str(tmp_path / "demo"))
    assert r.exit_code == 1 and "--force" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")  # the user's folder: never replaced
    r = run_cli("demo", "--out", str(tmp_path / "mine"), "--force")
    assert r.exit_code == 1 and "never replaces" in r.stderr and (tmp_path / "mine" / "notes.txt").is_file()
