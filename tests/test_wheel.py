"""The wheel, as a user installs it: built from this checkout, installed (not editable) into a fresh venv, and run
from a folder outside the checkout. A module or data file missing from the wheel fails here, not on a user's machine
(a hand-written package list once left edgekit.tune out, and every command of an installed wheel died on import)."""

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, cwd, env=None, timeout=300):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
    return r


def test_the_wheel_installs_outside_the_checkout_and_builds_and_profiles_a_model(tmp_path):
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        tmp_path,
    )
    (wheel,) = wheels.glob("edgekit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # every package of the source tree is in the wheel, with the data files the code reads at run time
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "edgekit").rglob("__init__.py")}
    assert packages <= {str(Path(n).parent) for n in names}, packages - {str(Path(n).parent) for n in names}
    data_files = (
        "edgekit/runner/runner.cpp",
        "edgekit/builtin_targets/xnnpack-int8.toml",
        "edgekit/device/check.pte",
        "edgekit/pipeline/generation/sample_text.txt",  # a generation build's eval text without --eval
    )
    for data in data_files:
        assert data in names, data
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)

    # a fresh venv that sees this venv's dependencies (torch, executorch, ...) but none of the checkout: the
    # dependencies' folder is added as a plain path, so the editable install's own .pth hook there is not run
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    site = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    )
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], tmp_path)

    work = tmp_path / "user"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run([str(py), "-c", "import edgekit; print(edgekit.__file__)"], work, env).stdout.strip()
    assert where.startswith(str(site)), where  # the installed copy, not the checkout
    edgekit = str(venv / "bin" / "edgekit")
    assert "build" in _run([edgekit, "--help"], work, env).stdout
    assert "xnnpack-int8" in _run([edgekit, "targets", "list"], work, env).stdout
    (work / "net.py").write_text(
        textwrap.dedent("""
        import torch

        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)), torch.randn(1, 16)
    """)
    )
    _run([edgekit, "build", "net.py:make", "-t", "xnnpack-fp32", "-o", "pkg", "-q"], work, env)
    prof = json.loads(
        _run([edgekit, "profile", "pkg", "--runs", "5", "--warmup-seconds", "0", "--json"], work, env).stdout
    )
    assert prof["latency_ms"]["count"] == 5 and prof["engine"] == "native"
