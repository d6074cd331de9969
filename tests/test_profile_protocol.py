"""The worker protocol is defined once (edgekit/runner/protocol.py) and every worker speaks exactly it."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from edgekit.errors import ProfileError
from edgekit.runner import llmworker, pyworker
from edgekit.runner.protocol import (
    ERROR_PREFIX,
    GENERATION_OPTIONS,
    PHASE_PREFIX,
    PROGRESS_PREFIX,
    PROTOCOL_VERSION,
    WORKER_OPTIONS,
    CpuUsage,
    GenerationCheckResult,
    GenerationRound,
    GenerationWorkerResult,
    Phase,
    WorkerResult,
    read_result,
)

SOURCES = Path(pyworker.__file__).parent
TENSOR_MODE = (SOURCES / "runner.cpp").read_text()
GENERATION_MODE = (SOURCES / "runner_generation.cpp").read_text()
RUNNER = TENSOR_MODE + GENERATION_MODE + (SOURCES / "runner.h").read_text()


def test_the_native_runner_speaks_the_protocol():
    assert f"kProtocolVersion = {PROTOCOL_VERSION};" in RUNNER
    announced = set(re.findall(r"\"@phase ([a-z_]+)", RUNNER))
    assert announced == {p.value for p in Phase if p is not Phase.START}
    for prefix in (PROGRESS_PREFIX, ERROR_PREFIX, PHASE_PREFIX):
        assert f'"{prefix.strip()} ' in RUNNER
    options = set(re.findall(r'k == "(--[\w-]+)"', RUNNER))
    assert options == set(WORKER_OPTIONS) | set(GENERATION_OPTIONS)
    # the JSON keys the runner writes in each mode, all through its one writer (runner.h's JsonObject)
    keys = lambda text: set(re.findall(r'\.(?:num|integer|text|nums|ints|object|objects)\("(\w+)"', text))  # noqa: E731
    fields = lambda *contracts: {f.name for c in contracts for f in dataclasses.fields(c)}  # noqa: E731
    assert keys(TENSOR_MODE) == fields(WorkerResult, CpuUsage)
    assert keys(GENERATION_MODE) == fields(GenerationWorkerResult, GenerationRound, GenerationCheckResult)
    assert not re.search(r'\\"\w+\\":', TENSOR_MODE + GENERATION_MODE)  # no JSON written by hand beside it


def test_the_generation_worker_takes_the_generation_options():
    args = llmworker._parse(["--model", "m.pte", "--max-context", "64", "--result", "r.json"])
    for opt in (*GENERATION_OPTIONS, "--model", "--result", "--threads", "--warmup", "--runs"):
        assert hasattr(args, opt.lstrip("-").replace("-", "_")), opt


def test_the_python_worker_takes_the_protocols_options():
    parser_args = pyworker._parse(["--result", "r.json", "--shape", "1,2", "--threads", "2"])
    for opt in WORKER_OPTIONS:
        assert hasattr(parser_args, opt.lstrip("-").replace("-", "_"))


def test_results_of_another_version_or_shape_are_refused(tmp_path):
    good = {
        "protocol": PROTOCOL_VERSION,
        "engine": "native",
        "method": "forward",
        "loader": "mmap",
        "threads_requested": 1,
        "threads_effective": 1,
        "load_ms": 1.0,
        "first_run_ms": 1.0,
        "warmup_ms": [1.0],
        "samples_ms": [1.0, 2.0],
        "timed_wall_s": 0.1,
        "reference_before_ms": 2.0,
        "reference_after_ms": 2.1,
        "rss_baseline_bytes": 1,
        "rss_after_load_bytes": 2,
        "hwm_bytes": 3,
        "cpu_load": {"user_s": 0.1, "sys_s": 0.0, "voluntary_ctx_switches": 0, "involuntary_ctx_switches": 0},
        "cpu_timed": {"user_s": 0.1, "sys_s": 0.0, "voluntary_ctx_switches": 0, "involuntary_ctx_switches": 0},
        "etdump": "not requested",
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(good))
    assert read_result(path).samples_ms == [1.0, 2.0]
    for change, fragment in (
        ({"protocol": 0}, "protocol 0"),
        ({"samples_ms": "x"}, "samples_ms must be a list"),
        ({"samples_ms": []}, "no timed runs"),
        ({"load_ms": None}, "load_ms"),
    ):
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ProfileError, match=fragment):
            read_result(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "hwm_bytes"}))
    with pytest.raises(ProfileError, match="missing field hwm_bytes"):
        read_result(path)
