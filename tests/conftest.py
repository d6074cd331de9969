"""Shared fixtures. Builds that really lower a model are session-scoped so the suite stays fast."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import edgekit
from edgekit.manifest import PTE_NAME
from edgekit.models import parse_input_spec
from edgekit.pipeline.state import BuildResult

TESTS = Path(__file__).parent
# Two test processes share two cores: a process's own torch work (training, export, verify) on one thread each keeps
# them from fighting over both (a toy CNN trains in 0.6 s on one thread, 1.5 s on two beside the other process).
torch.set_num_threads(1)
# ... and so does every process the tests start (Dask workers, CLIs, workers, builds): each would otherwise start an
# OpenMP pool per core, and threads that wait by spinning cost the other test process its core (the suite took 10%
# less wall time and user CPU with this set)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Seconds each file took in a `--durations=0` run here (setup + call + teardown). `make test` hands whole files to two
# processes (--dist loadfile); xdist would queue them by test count, so a slow file with few tests (the wheel, the Dask
# cluster) could start last and leave one core idle at the end. Longest first keeps both busy. The device tests sit
# mid-queue: on a fresh machine they wait for the background apt-get, and by then it has finished. A file missing here
# runs after these; a stale figure only costs balance, never a test.
FILE_SECONDS = {
    "test_generation.py": 150,
    "test_scale.py": 82,
    "test_device.py": 51,
    "test_pipeline.py": 38,
    "test_hf.py": 34,
    "test_tune.py": 34,
    "test_quantize.py": 30,
    "test_attention_kernels.py": 25,
    "test_wheel.py": 23,
    "test_profile.py": 23,
    "test_explain.py": 18,
    "test_prune.py": 18,
    "test_demo.py": 13,
    "test_bad_inputs.py": 10,
    "test_bench.py": 8,
    "test_upstream.py": 12,
}


#: The fast tier (`make test-fast`, marker `fast`; `make test` hands its files out first): the real stack on the
#: smallest models — configuration, data, the CLI's errors, statistics, the bench store, the build cache, profiling a
#: tiny program in both engines — in under a minute on two cores (48 s here). A file joins it when it stays cheap;
#: what trains, builds many or real-size programs, compiles runners, or starts clusters, boards or language models
#: stays in the full tier.
FAST_FILES = {
    "test_architecture.py",
    "test_bad_inputs.py",
    "test_bench.py",
    "test_builds.py",
    "test_cli.py",
    "test_data.py",
    "test_docs.py",
    "test_fileops.py",
    "test_models.py",
    "test_profile.py",
    "test_profile_protocol.py",
    "test_profile_stats.py",
    "test_readme.py",
    "test_targets.py",
    "test_token_fidelity.py",
    "test_perplexity_protocol.py",
}


def pytest_collection_modifyitems(items: list) -> None:
    """Mark the fast tier; its files first, then the rest; whole files, longest first within each (stable within a
    file; see FILE_SECONDS)."""
    for item in items:
        if Path(str(item.fspath)).name in FAST_FILES:
            item.add_marker(pytest.mark.fast)

    def order(item: Any) -> tuple:
        name = Path(str(item.fspath)).name
        return (name not in FAST_FILES, -FILE_SECONDS.get(name, 0))

    items.sort(key=order)


@pytest.fixture(scope="session")
def digits_like(tmp_path_factory) -> dict:
    """A learnable 10-class problem on 1x8x8 inputs, saved as calibration and labelled eval data."""
    from toy_models import digits_like_arrays

    x, y = digits_like_arrays()
    folder = tmp_path_factory.mktemp("data")
    np.savez(folder / "calib.npz", x=x[:64])
    np.savez(folder / "eval.npz", x=x[300:], y=y[300:])
    np.savez(folder / "train.npz", x=x[:300], y=y[:300])
    return {
        "dir": folder,
        "calib": folder / "calib.npz",
        "eval": folder / "eval.npz",
        "train": folder / "train.npz",
        "x": x,
        "y": y,
    }


@pytest.fixture(scope="session")
def trained_cnn(digits_like):
    """toy SmallCNN trained briefly on digits_like, so accuracy figures mean something."""
    from toy_models import SmallCNN, train

    torch.manual_seed(0)
    return train(SmallCNN())


def _shared_build(tmp_path_factory, name: str, make) -> BuildResult:
    """A session build made once for every test process: xdist gives each process a session of its own, so the first
    process to ask builds into the run's shared temp folder (under a lock) and the others read the package it wrote.
    (A process that reads int8_build and trains its own trained_cnn compares the two: training is seeded and runs on
    one thread, so both processes train the same network.)"""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-builds"
    root.mkdir(exist_ok=True)
    out = root / name
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "manifest.json").is_file():
            manifest = edgekit.read_manifest(out)
            return BuildResult(out, out / PTE_NAME, manifest, tuple(manifest.warnings))
        return make(out)


@pytest.fixture(scope="session")
def int8_build(tmp_path_factory, digits_like, request):
    return _shared_build(
        tmp_path_factory,
        "int8",
        lambda out: edgekit.build(
            request.getfixturevalue("trained_cnn"),
            "xnnpack-int8",
            out=out,
            inputs=[parse_input_spec("1x1x8x8")],
            calibration=digits_like["calib"],
            eval=digits_like["eval"],
        ),
    )


@pytest.fixture(scope="session")
def fp32_build(tmp_path_factory):
    return _shared_build(
        tmp_path_factory,
        "fp32",
        lambda out: edgekit.build(
            "toy_models:small_cnn", "xnnpack-fp32", out=out, inputs=[parse_input_spec("1x1x8x8")]
        ),
    )
