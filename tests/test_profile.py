"""The profiler with the real worker processes (native C++ runner and Python) on real programs."""

import json
import signal
import threading
import time

import numpy as np
import psutil
import pytest
from helpers import run_cli

import edgekit
from edgekit.errors import DataError, ProfileError, ProgramError, UsageError
from edgekit.profile import ProfileOptions

FAST = dict(runs=30, warmup=3, warmup_seconds=0.0)


@pytest.fixture(scope="session")
def native_profile(fp32_build):
    return edgekit.profile(fp32_build.out_dir, ops=True, **FAST)


def test_native_profile_measures_everything(native_profile, fp32_build):
    p = native_profile
    assert p.engine == "native" and p.engine_note is None
    assert (
        p.subject["package"] == str(fp32_build.out_dir)
        and p.subject["sha256"] == fp32_build.manifest.to_dict()["program"]["sha256"]
    )
    assert p.latency_ms.count == 30 and len(p.samples_ms) == 30
    s = p.latency_ms
    assert 0 < s.min <= s.p50 <= s.p90 <= s.p99 <= s.max and s.ci95_median[0] <= s.p50 <= s.ci95_median[1]
    assert p.phases.load_ms > 0 and p.phases.first_run_ms > 0 and p.phases.warmup_runs == 3
    assert p.threads == {"requested": 1, "effective": 1, "cpus": None}


def test_native_memory_is_the_programs_not_pythons(native_profile):
    m = native_profile.memory
    assert 1 < m.baseline_rss_mb < 60  # no Python, no torch in the measured process
    assert m.baseline_rss_mb <= m.load_rss_mb <= m.peak_rss_mb < 100
    assert m.peak_delta_mb == pytest.approx(m.peak_rss_mb - m.baseline_rss_mb, abs=1e-2)
    assert m.planned_mb > 0 and m.pte_size_mb > 0 and set(m.peak_sources_mb) == {"sampler_rss", "vm_hwm"}


def test_energy_is_measured_or_labelled_estimated(native_profile):
    e = native_profile.energy
    assert e.cpu_seconds_per_run > 0 and e.cpu_utilization > 0
    assert e.joules_source in ("rapl", "estimated")
    if e.joules_source == "estimated":
        assert "ESTIMATED" in e.joules_note and e.estimate_inputs["active_watts_per_core"] == 2.0


def test_ops_table_from_etdump(native_profile):
    ops = native_profile.ops
    assert ops["runs"] == 20 and ops["total_ms"] > 0
    kinds = {o["kind"] for o in ops["ops"]}
    assert "delegate_call" in kinds and "delegate_op" in kinds
    assert any("Convolution" in o["name"] for o in ops["ops"])
    assert all(0 <= o["share"] <= 1.0 + 1e-9 for o in ops["ops"])


def test_result_json_round_trips(native_profile):
    d = json.loads(json.dumps(native_profile.to_dict()))
    assert d["schema_version"] == 1 and len(d["samples_ms"]) == 30 and d["latency_ms"]["p50"] > 0
    assert d["machine"]["cores_logical"] >= 1 and "percentile_method" in d["latency_ms"]


def test_eager_model_under_the_same_harness():
    p = edgekit.profile(eager="toy_models:small_cnn", eager_inputs=[edgekit.parse_input_spec("1x1x8x8")], **FAST)
    assert p.engine == "eager" and p.latency_ms.count == 30 and p.memory.baseline_rss_mb > 100


def test_real_inputs_are_checked_against_the_program(fp32_build, tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.random.rand(5, 1, 8, 8).astype(np.float64))  # float64 → float32 is fine
    p = edgekit.profile(fp32_build.out_dir, inputs=tmp_path / "ok.npz", **FAST)
    assert p.subject["input_source"].endswith("ok.npz")
    np.savez(tmp_path / "shape.npz", x=np.zeros((5, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"shape \(5, 3, 8, 8\) but the program expects \(1, 1, 8, 8\)"):
        edgekit.profile(fp32_build.out_dir, inputs=tmp_path / "shape.npz", **FAST)
    np.savez(tmp_path / "dtype.npz", x=np.zeros((5, 1, 8, 8), np.int64))
    with pytest.raises(DataError, match="int64 but the program expects float32"):
        edgekit.profile(fp32_build.out_dir, inputs=tmp_path / "dtype.npz", **FAST)


def test_package_whose_program_changed_is_refused(fp32_build, tmp_path):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(fp32_build.out_dir, pkg)
    with open(pkg / "model.pte", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ProgramError, match="does not match its manifest"):
        edgekit.profile(pkg, **FAST)


def test_files_that_are_not_programs(tmp_path, fp32_build):
    with pytest.raises(ProgramError, match="does not exist"):
        edgekit.profile(tmp_path / "missing.pte")
    (tmp_path / "random.pte").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ProgramError, match="not an ExecuTorch program"):
        edgekit.profile(tmp_path / "random.pte")
    data = fp32_build.pte_path.read_bytes()
    (tmp_path / "truncated.pte").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProgramError, match="truncated or corrupt"):
        edgekit.profile(tmp_path / "truncated.pte")


def _corrupt_delegate(src: bytes) -> bytes:
    """Overwrite the XNNPACK blob's own flatbuffer, which the parent does not parse: only the worker sees it."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    blob = bytes(deserialize_pte_binary(src).program.backend_delegate_data[0].data)
    start = src.find(blob[:256])
    out = bytearray(src)
    out[start + 400 : start + 464] = b"\xff" * 64
    return bytes(out)


@pytest.mark.parametrize("engine", ["native", "python"])
def test_corrupt_program_fails_in_the_worker_not_the_caller(tmp_path, fp32_build, engine):
    bad = tmp_path / "corrupt.pte"
    bad.write_bytes(_corrupt_delegate(fp32_build.pte_path.read_bytes()))
    with pytest.raises(ProfileError) as info:
        edgekit.profile(bad, engine=engine, **FAST)
    assert "phase 'load'" in info.value.message and "\n" not in str(info.value)


def _kill_worker_when_timing(sig):
    me = psutil.Process()

    def killer():
        for _ in range(400):
            for child in me.children(recursive=True):
                try:
                    if "edgekit-runner" in " ".join(child.cmdline()):
                        time.sleep(0.3)
                        child.send_signal(sig)
                        return
                except psutil.Error:
                    pass
            time.sleep(0.025)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


def test_worker_crash_is_reported_with_its_signal(fp32_build):
    t = _kill_worker_when_timing(signal.SIGSEGV)  # a real signal to the real worker, as a runtime crash would be
    with pytest.raises(ProfileError, match=r"crashed with SIGSEGV during phase '\w+'"):
        edgekit.profile(fp32_build.out_dir, runs=10**9, warmup=1, warmup_seconds=0.0, max_seconds=30)
    t.join()


def test_worker_timeout(fp32_build):
    t0 = time.monotonic()
    with pytest.raises(ProfileError, match=r"exceeded the 1.5 s timeout during phase '\w+'"):
        edgekit.profile(fp32_build.out_dir, runs=10**9, warmup=1, warmup_seconds=0.0, max_seconds=60, timeout=1.5)
    assert time.monotonic() - t0 < 20
    assert not [c for c in psutil.Process().children(recursive=True) if "edgekit-runner" in " ".join(c.cmdline())]


def test_bad_options(fp32_build):
    with pytest.raises(UsageError, match="--threads must be a positive integer"):
        ProfileOptions(threads=0)
    with pytest.raises(ProgramError, match="no method 'predict'") as info:
        edgekit.profile(fp32_build.out_dir, method="predict")
    assert "forward" in info.value.hint
    with pytest.raises(UsageError, match="--cpus 999"):
        edgekit.profile(fp32_build.out_dir, cpus=(999,), **FAST)


def test_cpu_pinning_and_threads(fp32_build):
    p = edgekit.profile(fp32_build.out_dir, cpus=(0,), threads=2, **FAST)
    assert p.threads == {"requested": 2, "effective": 2, "cpus": [0]}
    assert any("threads compete" in w for w in p.warnings)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_thread_sweep_json(fp32_build, tmp_path):
    r = run_cli(
        "profile",
        fp32_build.out_dir,
        "--threads",
        "1,2",
        "--runs",
        20,
        "--warmup",
        2,
        "--warmup-seconds",
        0,
        "--json",
        "--out",
        tmp_path / "p.json",
    )
    assert r.exit_code == 0, r.stderr
    sweep = json.loads(r.stdout)["sweep"]
    assert [s["threads"]["effective"] for s in sweep] == [1, 2]
    assert json.loads((tmp_path / "p.json").read_text())["sweep"][1]["latency_ms"]["count"] == 20


def test_cli_table_for_people(fp32_build):
    r = run_cli("profile", fp32_build.out_dir, "--runs", 20, "--warmup", 2, "--warmup-seconds", 0)
    assert r.exit_code == 0, r.stderr
    for section in ("latency (ms)", "memory (MiB", "energy proxies", "p50 95% CI"):
        assert section in r.stdout


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--threads", "0"], 2, "thread counts must be >= 1"),
        (["--method", "nope"], 1, "no method 'nope'"),
        (["--engine", "gpu"], 2, "Invalid value for '--engine'"),
    ],
)
def test_cli_bad_options(fp32_build, args, code, fragment):
    r = run_cli("profile", fp32_build.out_dir, *args)
    assert r.exit_code == code and fragment in r.stderr and "Traceback" not in r.stderr


def test_cli_missing_program_and_budget(fp32_build, tmp_path):
    r = run_cli("profile", tmp_path / "nope.pte")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    target = tmp_path / "tight.toml"
    target.write_text('schema_version = 1\nname = "tight"\n[budget]\nmax_p50_ms = 0.000001\n')
    r = run_cli("profile", fp32_build.out_dir, "-t", target, "--runs", 10, "--warmup", 1, "--warmup-seconds", 0)
    assert r.exit_code == 1 and "budget exceeded: p50_ms" in r.stderr


def test_without_a_compiler_the_python_engine_is_used_and_said(fp32_build, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no g++, no clang++
    monkeypatch.delenv("CXX", raising=False)
    p = edgekit.profile(fp32_build.out_dir, **FAST)
    assert p.engine == "python" and "no C++ compiler" in p.engine_note and p.warnings[0] == p.engine_note
    # the Python worker's own baseline (an interpreter with torch), and it runs the reference check as the runner does
    assert p.memory.baseline_rss_mb > 100 and "Python interpreter" in p.memory.baseline_note
    assert p.budget["target"] == "xnnpack-fp32" and p.check.status == "passed"
    with pytest.raises(ProfileError, match="no C\\+\\+ compiler"):
        edgekit.profile(fp32_build.out_dir, engine="native", **FAST)


def test_inputs_are_set_before_every_run(tmp_path):
    """The planner reuses an input's buffer once consumed; a runner that sets inputs once feeds garbage token
    ids to the embedding on the second run (caught by its bounds check). Every run must set its inputs."""
    res = edgekit.build(
        "toy_models:two_inputs",
        "xnnpack-fp32",
        out=tmp_path / "emb",
        inputs=[edgekit.parse_input_spec("1x6:int64"), edgekit.parse_input_spec("1x4")],
    )
    for engine in ("native", "python"):
        p = edgekit.profile(res.out_dir, engine=engine, runs=50, warmup=5, warmup_seconds=0.0)
        assert p.latency_ms.count == 50


def test_batch_sizes_of_a_dynamic_program(tmp_path, fp32_build):
    res = edgekit.build(
        "toy_models:small_cnn",
        "xnnpack-fp32",
        out=tmp_path / "dyn",
        inputs=[edgekit.parse_input_spec("1x1x8x8")],
        dynamic_batch=edgekit.parse_dynamic_batch("1:16"),
    )
    assert edgekit.profile(res.out_dir, **FAST).subject["inputs"][0]["shape"] == [16, 1, 8, 8]  # default: the bound
    assert edgekit.profile(res.out_dir, batch=4, **FAST).subject["inputs"][0]["shape"] == [4, 1, 8, 8]
    np.savez(tmp_path / "five.npz", x=np.random.rand(5, 1, 8, 8).astype(np.float32))
    assert edgekit.profile(res.out_dir, inputs=tmp_path / "five.npz", **FAST).subject["inputs"][0]["shape"] == [
        5,
        1,
        8,
        8,
    ]
    with pytest.raises(UsageError, match="exceeds the program's largest batch, 16"):
        edgekit.profile(res.out_dir, batch=17, **FAST)
    with pytest.raises(UsageError, match="static batch of 1"):
        edgekit.profile(fp32_build.out_dir, batch=4, **FAST)


def test_the_worker_starts_pinned_in_its_own_session_without_python_between_fork_and_exec():
    import os
    import sys

    from edgekit.runner.worker import run_worker

    probe = "import os, sys; sys.stderr.write(f'{sorted(os.sched_getaffinity(0))} {os.getsid(0) == os.getpid()}\\n')"
    watch = run_worker([sys.executable, "-c", probe], timeout=30, cpus=(0,), sample=False)
    assert watch.other == ["[0] True"], watch.other
    assert sorted(os.sched_getaffinity(0)) != [0] or os.cpu_count() == 1  # the parent itself was not pinned


LEAN_PROBE = """
import json, sys
import edgekit.runner.runtime as rt
if sys.argv[1] == "fallback":  # as if a later ExecuTorch needed more of exir than the placeholder gives
    def broken(*args):
        raise ImportError("forced")
    rt.load_kernel_libraries = broken
portable_lib, Runtime = rt.load_runtime(llm_ops=True)
kernels = set(portable_lib._get_operator_names())  # what a program's instructions can call in ExecuTorch's registry
print(json.dumps({
    "ops": [k in kernels for k in ("quantized_decomposed::embedding_4bit.out", "llama::custom_sdpa.out",
                                   "llama::update_cache.out")],
    "heavy": sorted(m for m in ("torch._dynamo", "torch._inductor.lowering", "executorch.exir.capture") if m in sys.modules),
    "exir_is_real": hasattr(sys.modules.get("executorch.exir"), "to_edge"),
    "runtime": Runtime.get() is not None,
}))
"""


@pytest.mark.parametrize("path", ["lean", "fallback", "off"])
def test_the_workers_runtime_loads_without_the_compiler_stack_and_falls_back_whole(path):
    """The measuring workers import executorch.runtime without exir's exporter, dynamo or inductor (4 s and ~130 MiB
    less in every worker's baseline); should that ever fail, or the upstream patch be switched off, the ordinary
    imports give the same kernels."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "EDGEKIT_UPSTREAM_OFF": "lean-runtime-import" if path == "off" else ""}
    r = subprocess.run([sys.executable, "-c", LEAN_PROBE, path], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["ops"] == [True, True, True] and got["runtime"], got
    if path == "lean":
        assert got["heavy"] == [] and not got["exir_is_real"] and "executorch.exir" not in r.stdout, got
    else:
        assert "executorch.exir.capture" in got["heavy"] and got["exir_is_real"], got
