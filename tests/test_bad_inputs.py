"""Bad input of every kind ends as one clean line (exit 1 or 2) with nothing written: never `unexpected …`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error, run_cli
from mutants import run_mutants

import edgekit
from edgekit.errors import ConfigError, DataError, ProgramError
from edgekit.models import parse_input_spec
from edgekit.profile.subject import to_bytes
from edgekit.program import FlatTable, inspect_program
from edgekit.targets import load_target

TESTS = Path(__file__).parent
X8 = [parse_input_spec("1x1x8x8")]


# ------------------------------------------------------------------------------------------ build
def test_non_exportable_model_prints_only_the_error(tmp_path):
    # a bare environment, but for where Python keeps its bytecode: without it the child compiles torch, executorch
    # and transformers from source (19 s instead of 7 on a fresh clone) and writes __pycache__ into the venv
    keep = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS")
    env = {"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin", **{k: os.environ[k] for k in keep if k in os.environ}}
    p = subprocess.run(
        [sys.executable, "-m", "edgekit", "build", "toy_models:data_dependent", "-o", str(tmp_path / "o"), "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "torch.export failed" in p.stderr  # no graph dumps
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("[budget]\nmax_size_mb = nan\n", "budget.max_size_mb must be a finite number, got nan"),
        ("[prune]\nsparsity = inf\n", "prune.sparsity must be a finite number"),
        ("[power]\nidle_watts = -inf\n", "power.idle_watts must be a finite number"),
    ],
)
def test_non_finite_numbers_in_targets_are_refused(tmp_path, body, fragment):
    (tmp_path / "t.toml").write_text(f'schema_version = 1\nname = "t"\n{body}')
    with pytest.raises(ConfigError, match=fragment):
        load_target(tmp_path / "t.toml")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sparsity", "nan"], "not a finite number"),
        (["--prune-channels", "inf"], "inf"),
        (["--max-accuracy-drop", "nan", "--eval", "x.npz"], "not a finite number"),
        (["--prune-layer", "conv1=nan"], "not LAYER=RATIO"),
    ],
)
def test_non_finite_numbers_on_the_command_line_are_usage_errors(tmp_path, args, fragment):
    r = run_cli("build", "toy_models:small_cnn", "-i", "1x1x8x8", "-o", tmp_path / "o", *args)
    one_line_error(r, 2, fragment)
    assert not (tmp_path / "o").exists()


def test_nan_in_data_is_refused_and_never_reaches_json(tmp_path):
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    x[3, 0, 2, 2] = np.nan
    np.savez(tmp_path / "eval.npz", x=x, y=np.zeros(8, np.int64))
    with pytest.raises(DataError, match="NaN or infinity .*sample 3"):
        edgekit.build("toy_models:small_cnn", "xnnpack-fp32", out=tmp_path / "o", inputs=X8, eval=tmp_path / "eval.npz")
    assert not (tmp_path / "o").exists()


def test_eval_data_smaller_than_the_programs_batch(tmp_path):
    np.savez(tmp_path / "eval.npz", x=np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="2 sample.*batches of 4"):
        edgekit.build(
            "toy_models:small_cnn",
            "xnnpack-fp32",
            out=tmp_path / "o",
            inputs=[parse_input_spec("4x1x8x8")],
            eval=tmp_path / "eval.npz",
        )


def test_a_folder_named_like_a_target_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "xnnpack-int8").mkdir()
    assert load_target("xnnpack-int8").quantize.scheme.value == "int8-static-per-channel"


# ---------------------------------------------------------------------------------------- programs
def _input_tensor(data: bytes, method: int = 0, index: int = 0) -> FlatTable:
    """The flatbuffer table of a method's input tensor (to damage its metadata in place)."""
    from edgekit.program import read_at

    root = FlatTable(data, read_at(data, "<I", 0))
    plan = root.tables(1)[method]
    return plan.tables(2)[plan.scalars(3, "<i")[index]].table(1)


def _patched(data: bytes, tensor: FlatTable, slot: int, value: bytes) -> bytes:
    out = bytearray(data)
    at = tensor.pos + tensor.slot_offset(slot)
    out[at : at + len(value)] = value
    return bytes(out)


def test_programs_with_corrupt_metadata_are_clean_errors(tmp_path, fp32_build):
    data = fp32_build.pte_path.read_bytes()
    t = _input_tensor(data)
    cases = {"scalar": (_patched(data, t, 0, bytes([99])), "unknown scalar type 99")}
    sizes_at = t.pos + t.slot_offset(2)
    sizes_at += int.from_bytes(data[sizes_at : sizes_at + 4], "little") + 4  # first element of the sizes vector
    neg = bytearray(data)
    neg[sizes_at : sizes_at + 4] = (-3).to_bytes(4, "little", signed=True)
    cases["negative"] = (bytes(neg), "impossible shape [-3")
    for name, (blob, fragment) in cases.items():
        path = tmp_path / f"{name}.pte"
        path.write_bytes(blob)
        with pytest.raises(ProgramError) as info:
            inspect_program(path)
        assert fragment in info.value.message
        one_line_error(run_cli("profile", path, "--runs", "3"), 1, fragment)
    line = one_line_error(run_cli("profile", fp32_build.pte_path, "--method", "predict"), 1, "has no method 'predict'")
    assert "forward" in line


def test_seeded_mutants_never_crash_hang_or_surprise(tmp_path, fp32_build, int8_build):
    report = run_mutants([fp32_build.pte_path, int8_build.pte_path], count=60, seed=1, work=tmp_path)
    o = report["outcomes"]
    assert sum(o.values()) == 60 and o.get("clean error", 0) > 10, report
    assert not any(o.get(k) for k in ("unexpected", "hang", "crash")), report


def test_bfloat16_inputs_are_written_as_bfloat16(tmp_path):
    x = np.array([1.0, -2.5, 3.14159, 1e-3], np.float32)
    assert to_bytes(x, "bfloat16") == torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    assert len(to_bytes(x, "bfloat16")) == 2 * x.size


# ----------------------------------------------------------------------------------------- bench
def test_run_files_with_missing_fields_name_the_field(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 2, "kind": "edgekit-bench-run", "results": []}))
    r = run_cli("bench", "report", tmp_path / "run.json", "-o", tmp_path / "rep")
    one_line_error(r, 1, "missing field")


def test_a_report_of_no_runs_is_a_clean_error(tmp_path):
    from edgekit.bench.report import write_report
    from edgekit.errors import BenchError

    with pytest.raises(BenchError, match="no runs"):
        write_report([], tmp_path / "r")


def test_a_broken_manifest_names_its_field(tmp_path, fp32_build):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(fp32_build.out_dir, pkg)
    m = json.loads((pkg / "manifest.json").read_text())
    del m["program"]["sha256"]
    (pkg / "manifest.json").write_text(json.dumps(m))
    one_line_error(run_cli("profile", pkg), 1, "missing field program.sha256")
    (pkg / "manifest.json").write_text('{"schema_version": 2, "verify": NaN')
    one_line_error(run_cli("profile", pkg), 1, "corrupt")


def test_packages_of_the_previous_manifest_version_stay_usable(tmp_path, fp32_build):
    import shutil

    pkg = tmp_path / "old"
    shutil.copytree(fp32_build.out_dir, pkg)
    m = json.loads((pkg / "manifest.json").read_text())
    m["schema_version"] = 1  # edgekit 0.1 wrote the same fields, untyped
    for entry in m["model"]["inputs"]:
        del entry["dynamic"]
    (pkg / "manifest.json").write_text(json.dumps(m))
    assert run_cli("profile", pkg, "--runs", "3", "--warmup-seconds", "0", "--json").exit_code == 0
    m["schema_version"] = 7
    (pkg / "manifest.json").write_text(json.dumps(m))
    one_line_error(run_cli("profile", pkg), 1, "schema_version 7 is not one this edgekit reads")


def test_non_finite_numbers_in_bench_options_and_suites(tmp_path):
    one_line_error(run_cli("bench", "compare", "--alpha", "nan", "--store", tmp_path), 2, "not a finite number")
    one_line_error(
        run_cli("bench", "compare", "--fail-on", "latency_p50:nan%", "--store", tmp_path), 2, "finite number"
    )
    (tmp_path / "s.toml").write_text(
        'schema_version = 1\nname = "s"\n[run]\ntimeout = inf\n'
        '[[model]]\nname = "m"\nspec = "toy_models:mlp"\ntargets = ["xnnpack-fp32"]\n'
    )
    one_line_error(
        run_cli("bench", "run", tmp_path / "s.toml", "--store", tmp_path / "st"), 1, "timeout must be a finite number"
    )


def test_a_saved_program_refuses_an_input_it_was_not_exported_for_and_a_missing_one_is_named(tmp_path):
    """--input for a .pt2 must fit the shapes it was exported for: said at load, not as a calibration failure later;
    a .pt2 path that does not exist is named as a missing file."""
    import torch
    from toy_models import SmallCNN

    torch.export.save(torch.export.export(SmallCNN().eval(), (torch.randn(1, 1, 8, 8),)), tmp_path / "net.pt2")
    out = tmp_path / "out"
    line = one_line_error(
        run_cli("build", tmp_path / "net.pt2", "-i", "1x3x8", "-o", out), 2, "exported for input(s) 1x1x8x8"
    )
    assert "--input gave 1x3x8" in line and not out.exists()
    one_line_error(run_cli("build", tmp_path / "nope.pt2", "-o", out), 1, "nope.pt2 does not exist")


def test_a_torchvision_built_for_another_torch_is_named_with_the_fix(tmp_path, monkeypatch):
    """A common leftover: a torchvision wheel that pins another torch. transformers imports it lazily and used to fail
    as "unexpected ModuleNotFoundError: Could not import module 'LlamaConfig'"; the build names it first, in one line.
    (A torchvision distribution's metadata, written here: importlib.metadata reads it as pip's.)"""
    from importlib import metadata

    from edgekit.stack_check import torchvision_failure

    # no torchvision installed (this venv): a model that needs it is not blamed on it
    missing = ModuleNotFoundError("No module named 'torchvision'")
    assert torchvision_failure(missing) is None
    dist = tmp_path / "site" / "torchvision-0.20.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.20.0\nRequires-Dist: torch==2.5.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert metadata.version("torchvision") == "0.20.0"
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text("{}")
    for args in (["--task", "text-generation"], ["-i", "1x8"]):  # a decoder's build and an encoder's
        r = run_cli("build", f"hf:{tmp_path / 'lm'}", *args, "-o", str(tmp_path / "out"))
        one_line_error(r, 1, "torchvision 0.20.0 (built for torch 2.5.0)", "pip uninstall torchvision")
        assert not (tmp_path / "out").exists()
    # the failure itself, as transformers raises it (a torchvision that matches the pin but not the build, CUDA's)
    try:
        try:
            raise RuntimeError("operator torchvision::nms does not exist")
        except RuntimeError as cause:
            raise ModuleNotFoundError("Could not import module 'LlamaConfig'") from cause
    except ModuleNotFoundError as exc:
        named = torchvision_failure(exc)
    assert named is not None and "torchvision::nms" in str(named) and "pip uninstall torchvision" in named.hint
    assert torchvision_failure(ModuleNotFoundError("No module named 'sentencepiece'")) is None
