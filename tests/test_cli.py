"""The command line as a user drives it: exit codes, one-line errors, JSON output."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import one_line_error, run_cli

from edgekit.cli import cli


def test_build_json_prints_the_manifest(tmp_path, digits_like):
    r = run_cli(
        "build",
        "toy_models:small_cnn",
        "-i",
        "1x1x8x8",
        "-t",
        "xnnpack-int8",
        "-c",
        digits_like["calib"],
        "--eval",
        digits_like["eval"],
        "-o",
        tmp_path / "o",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest["quantize"]["calibration_samples"] == 64 and manifest["verify"]["samples"] == 100
    assert "export" in r.stderr and "lower" in r.stderr  # progress goes to stderr, JSON alone on stdout
    assert (tmp_path / "o" / "model.pte").is_file()


def test_build_table_for_people(tmp_path):
    r = run_cli("build", "toy_models:mlp", "-o", tmp_path / "o")
    assert r.exit_code == 0, r.stderr
    assert "verify" in r.stdout and "delegation" in r.stdout and "SQNR" in r.stdout


def test_targets_list_and_show():
    r = run_cli("targets", "list")
    assert r.exit_code == 0 and "xnnpack-int8-dynamic" in r.stdout and "portable-fp32" in r.stdout
    r = run_cli("targets", "show", "xnnpack-int8")
    assert r.exit_code == 0 and 'scheme = "int8-static-per-channel"' in r.stdout
    r = run_cli("targets", "list", "--json")
    assert {t["name"] for t in json.loads(r.stdout)} >= {"xnnpack-fp32", "xnnpack-int8"}


def test_unknown_target_is_a_usage_error_listing_valid_ones(tmp_path):
    r = run_cli("build", "toy_models:mlp", "-t", "xnnpack-int9", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "xnnpack-fp32" in r.stderr and "did you mean 'xnnpack-int8'" in r.stderr
    r = run_cli("targets", "show", "nope")
    assert r.exit_code == 2


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["build", "toy_models:mlp", "-t", "xnnpack-int9", "-o", "o"], "did you mean 'xnnpack-int8'"),  # edgekit's
        (["build", "toy_models:mlp", "--bogus"], "(hint: see `edgekit build --help`)"),  # click's own
        (["biuld"], "No such command 'biuld'"),
        (["bench", "run", "suite.toml", "--fail-on"], "(hint: see `edgekit bench run --help`)"),
        (["build", "toy_models:mlp", "--max-seq-len", "-3", "-o", "o"], "--max-seq-len"),
    ],
)
def test_usage_errors_are_the_error_line_alone(tmp_path, monkeypatch, args, fragment):
    """No usage lines before the error (click prints them): one line, with the command's --help as the hint."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, args, prog_name="edgekit")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [one_line_error(r, 2, fragment)], r.stderr


def test_malformed_input_spec_is_a_usage_error(tmp_path):
    r = run_cli("build", "toy_models:small_cnn", "-i", "1x3xfoo", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "1x3x224x224" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("no_such_pkg:make", "cannot import module 'no_such_pkg'"),
        ("toy_models:smal_cnn", "did you mean small_cnn"),
        ("toy_models:raises", "raised RuntimeError"),
        ("toy_models:data_dependent", "torch.export failed"),
    ],
)
def test_model_errors_exit_1_in_one_line(tmp_path, spec, fragment):
    r = run_cli("build", spec, "-i", "1x1x8x8", "-o", tmp_path / "o")
    one_line_error(r, 1, fragment)
    assert not (tmp_path / "o").exists()


def test_not_a_model_file(tmp_path):
    (tmp_path / "m.pt2").write_bytes(b"junk")
    one_line_error(run_cli("build", tmp_path / "m.pt2", "-o", tmp_path / "o"), 1, "not a saved ExportedProgram")


def test_bad_calibration_files(tmp_path):
    for flag, role in (("-c", "calibration"), ("--eval", "eval"), ("--finetune", "finetune")):
        # a path that does not exist: said before the model is loaded (no stage has run, nothing is written)
        r = run_cli("build", "toy_models:small_cnn", "-i", "1x1x8x8", flag, tmp_path / "nope.npz", "-o", tmp_path / "o")
        one_line_error(r, 1, f"{role} data {tmp_path / 'nope.npz'} does not exist")
        assert "load" not in r.stderr and not (tmp_path / "o").exists()
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    one_line_error(
        run_cli(
            "build",
            "toy_models:small_cnn",
            "-i",
            "1x1x8x8",
            "-t",
            "xnnpack-int8",
            "-c",
            tmp_path / "c.npz",
            "-o",
            tmp_path / "o",
        ),
        1,
        "unreadable or corrupt",
    )
    np.save(tmp_path / "wrong.npy", np.zeros((4, 2, 8, 8), np.float32))
    one_line_error(
        run_cli(
            "build",
            "toy_models:small_cnn",
            "-i",
            "1x1x8x8",
            "-t",
            "xnnpack-int8",
            "-c",
            tmp_path / "wrong.npy",
            "-o",
            tmp_path / "o",
        ),
        1,
        "model expects (1, 8, 8)",
    )
    assert not (tmp_path / "o").exists()


def test_output_exists(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "manifest.json").write_text("{}")  # an earlier package
    line = one_line_error(run_cli("build", "toy_models:mlp", "-o", tmp_path / "o"), 1, "already exists")
    assert "--force" in line
    (tmp_path / "f").write_text("mine")
    one_line_error(run_cli("build", "toy_models:mlp", "-o", tmp_path / "f", "--force"), 1, "never replaces it")
    assert (tmp_path / "f").read_text() == "mine"


def test_invalid_target_file(tmp_path):
    (tmp_path / "t.toml").write_text('schema_version = 1\nname = "t"\n[quantize]\nscheme = "int3"\n')
    line = one_line_error(
        run_cli("build", "toy_models:mlp", "-t", tmp_path / "t.toml", "-o", tmp_path / "o"), 1, "t.toml"
    )
    assert "int8-static-per-channel" in line


def test_python_m_edgekit_and_version():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edgekit", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "edgekit, version" in r.stdout


def test_commands_that_only_read_files_do_not_import_torch(fp32_build, tmp_path):
    """Start-up is part of the product: --help, targets, profile of a package and clean never load torch or exir."""
    script = f"""
import sys
from click.testing import CliRunner
from edgekit.cli import cli
for args in (["--help"], ["targets", "list"], ["profile", {str(fp32_build.out_dir)!r}, "--runs", "3", "--warmup-seconds", "0"],
             ["clean", {str(tmp_path)!r}]):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, (args, r.output)
print(sorted(m for m in ("torch", "executorch.exir", "executorch.runtime") if m in sys.modules))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
