"""Devices for real: runner bundles (x86_64 native, aarch64 cross-built and run under qemu-user -cpu cortex-a76),
a private sshd on 127.0.0.1 started here, the system OpenSSH client, fleet benchmarks, and every way it can fail.

Needs openssh-server, g++-aarch64-linux-gnu and qemu-user (`make test` installs them when it runs as root).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import one_line_error, run_cli
from loopback import QEMU, QEMU_MAX, free_port, private_sshd, require_device_tools

import edgekit
from edgekit.device.bundle import BundleError, build_bundle, check_bundle, read_bundle
from edgekit.device.devices import DeviceError, load_devices
from edgekit.errors import ProfileError, UsageError
from edgekit.models import parse_input_spec

require_device_tools()

FAST = dict(runs=20, warmup=2, warmup_seconds=0.0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A private sshd (tests/loopback.py) and a devices file with good and broken devices."""
    d = Path(tmp_path_factory.mktemp("fleet"))
    full = d / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(full)]).returncode == 0
    with private_sshd(d / "sshd") as sshd:
        (d / "devices.toml").write_text(
            sshd.device_toml("loop", d / "work", extra='tags = ["ci"]')
            + sshd.device_toml("loop2", d / "work2", extra='tags = ["ci"]')
            + sshd.device_toml("arm", d / "work-arm", extra=f'arch = "aarch64"\nexec_prefix = "{QEMU}"')
            # qemu's default -cpu max: XNNPACK picks SME int8 kernels qemu 7.2 emulates wrongly (a board to catch)
            + sshd.device_toml("armmax", d / "work-max", extra=f'arch = "aarch64"\nexec_prefix = "{QEMU_MAX}"')
            + sshd.device_toml("old", d / "work-old", port=sshd.old_glibc_port)
            + sshd.device_toml("badkey", d / "work-bad", key=sshd.folder / "other_key")
            + sshd.device_toml("closed", d / "work-closed", port=free_port())
            + sshd.device_toml("full", full / "w")
        )
        yield {"dir": d, "devices": d / "devices.toml", "mounted": mounted}
    if mounted:
        subprocess.run(["umount", str(full)])


def _runs_left(fleet, name="work"):
    runs = fleet["dir"] / name / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


# ---------------------------------------------------------------------------------------------- bundles
@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_bundles_are_self_contained_and_check_out(arch, tmp_path):
    out = tmp_path / arch
    r = run_cli("runner", "build", "--arch", arch, "-o", out)
    assert r.exit_code == 0, r.output
    b = read_bundle(out)
    assert (
        b.arch == arch
        and b.glibc_floor == "2.34"
        and {f"lib/lib{n}.so" for n in ("executorch", "executorch_backend_xnnpack")} <= set(b.files)
    )
    assert b"$ORIGIN/lib" in (out / "edgekit-runner").read_bytes()  # relocatable: libraries found beside the runner
    assert build_bundle(arch) == build_bundle(arch)  # cached by content
    r = run_cli("runner", "check", out)
    assert r.exit_code == 0 and "outputs match eager PyTorch" in r.output, r.output
    assert ("qemu-aarch64 -cpu cortex-a76" in r.output) == (arch == "aarch64")
    (out / "lib" / "libexecutorch.so").write_bytes(b"damaged")
    with pytest.raises(BundleError, match="damaged: lib/libexecutorch.so"):
        check_bundle(out)


# ---------------------------------------------------------------------------------------------- profile
def test_profile_over_ssh_returns_the_local_result_format(fleet, fp32_build, int8_build):
    p = edgekit.profile(fp32_build.out_dir, device="loop", devices_file=fleet["devices"], **FAST)
    local = edgekit.profile(fp32_build.out_dir, **FAST)
    assert set(p.to_dict()) == set(local.to_dict())  # the same document, plus the device section
    assert (
        p.latency_ms.count == 20
        and p.memory.peak_sources_mb["vm_hwm"] > 1
        and p.memory.peak_sources_mb["sampler_rss"] > 1
    )
    assert p.noise is not None and p.machine["hostname"] and p.device["facts"]["glibc"] == "2.36"
    assert p.device["bytes_sent"]["program_and_inputs"] > fp32_build.manifest.program.size_bytes // 2
    q = edgekit.profile(int8_build.out_dir, device="loop", devices_file=fleet["devices"], **FAST)
    assert q.device["bytes_sent"]["bundle"] == 0  # the bundle stays on the device: only the program and inputs travel
    assert q.device["bytes_sent"]["program_and_inputs"] < 64 * 1024
    assert _runs_left(fleet) == []  # each run's folder is removed


@pytest.mark.parametrize("build", ["int8_build", "fp32_build"])
def test_aarch64_under_qemu_computes_what_x86_computes(fleet, build, request, tmp_path):
    pkg = request.getfixturevalue(build).out_dir
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(3).standard_normal((1, 1, 8, 8)).astype(np.float32))
    outs = {}
    for device in ("loop", "arm"):
        outs[device] = tmp_path / f"{device}.bin"
        p = edgekit.profile(
            pkg,
            device=device,
            devices_file=fleet["devices"],
            inputs=tmp_path / "in.npz",
            save_outputs=str(outs[device]),
            runs=5,
            warmup=1,
            warmup_seconds=0.0,
        )
        assert p.device["bundle"]["arch"] == ("aarch64" if device == "arm" else "x86_64")
    x86, arm = (np.fromfile(outs[d], np.float32) for d in ("loop", "arm"))
    if build == "int8_build":
        assert np.array_equal(x86, arm)  # the same int8 kernels' arithmetic, bit for bit
    else:
        np.testing.assert_allclose(arm, x86, rtol=1e-5, atol=1e-5)  # fp32: FMA order differs between SIMD kernels
    assert p.machine["cpu_model"].startswith("emulated aarch64") and any("emulator" in w for w in p.warnings)


def test_a_board_that_computes_wrong_int8_results_fails_the_reference_check_in_one_line(fleet, int8_build):
    # the same bundle and program: under -cpu cortex-a76 the answers agree with the model, under -cpu max they do not
    ok = edgekit.profile(
        int8_build.out_dir, device="arm", devices_file=fleet["devices"], runs=3, warmup=1, warmup_seconds=0.0
    )
    assert ok.check.status == "passed" and ok.check.samples == int8_build.manifest.reference.samples
    here = edgekit.profile(int8_build.out_dir, runs=3, warmup=1, warmup_seconds=0.0)
    assert here.check.status == "passed"
    line = one_line_error(
        run_cli("profile", int8_build.out_dir, "--device", "armmax", "--devices", fleet["devices"], "--runs", "3"),
        1,
        "computes wrong results on device armmax",
    )
    assert "against your model" in line and "--no-check" in line
    assert _runs_left(fleet, "work-max") == []  # the failed check leaves nothing on the device
    r = run_cli(
        "profile",
        int8_build.out_dir,
        "--device",
        "armmax",
        "--devices",
        fleet["devices"],
        "--runs",
        "3",
        "--no-check",
        "--json",
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["check"]["status"] == "skipped"


def test_a_board_whose_arch_the_programs_backend_does_not_run_is_refused_before_anything_is_sent(
    fleet, fp32_build, monkeypatch
):
    """A backend family lists the archs that run its programs (OpenVINO: x86_64 only); the board is asked its arch and
    refused before the bundle or the program is sent. Here XNNPACK's family is narrowed to x86_64 to stand for one."""
    import dataclasses

    from edgekit import backends
    from edgekit.targets import Backend

    x86_only = dataclasses.replace(backends.FAMILIES[Backend.XNNPACK], archs=("x86_64",))
    monkeypatch.setitem(backends.FAMILIES, Backend.XNNPACK, x86_only)
    r = run_cli("profile", fp32_build.out_dir, "--device", "arm", "--devices", fleet["devices"], "--runs", "3")
    one_line_error(r, 1, "device arm is aarch64: xnnpack programs run on x86_64 only")
    assert _runs_left(fleet, "work-arm") == []


def test_fp16_programs_run_on_an_arm_core_with_fp16_arithmetic(fleet, fp32_build, tmp_path):
    # cortex-a76 has asimdhp: XNNPACK takes its native fp16 kernels there (x86 without AVX512-FP16 emulates them)
    pkg = edgekit.build(
        "toy_models:small_cnn", "xnnpack-fp16", out=tmp_path / "fp16", inputs=[parse_input_spec("1x1x8x8")]
    ).out_dir
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(3).standard_normal((1, 1, 8, 8)).astype(np.float32))
    outs = {}
    for name, device, folder in (("arm16", "arm", pkg), ("x86-32", "loop", fp32_build.out_dir)):
        outs[name] = tmp_path / f"{name}.bin"
        edgekit.profile(
            folder,
            device=device,
            devices_file=fleet["devices"],
            inputs=tmp_path / "in.npz",
            save_outputs=str(outs[name]),
            runs=5,
            warmup=1,
            warmup_seconds=0.0,
        )
    arm16, x86_32 = (np.fromfile(outs[n], np.float32) for n in ("arm16", "x86-32"))
    assert arm16.shape == x86_32.shape == (10,)
    np.testing.assert_allclose(arm16, x86_32, rtol=2e-2, atol=2e-3)  # fp16 rounding of the fp32 program's answer
    assert not np.array_equal(arm16, x86_32)  # and it did compute in fp16


def test_cli_profile_on_a_device(fleet, fp32_build):
    r = run_cli(
        "profile",
        fp32_build.out_dir,
        "--device",
        "loop",
        "--devices",
        fleet["devices"],
        "--runs",
        "20",
        "--threads",
        "1,2",
        "--cpus",
        "0",
        "--json",
    )
    assert r.exit_code == 0, r.output
    sweep = json.loads(r.stdout)["sweep"]
    assert [p["threads"]["effective"] for p in sweep] == [1, 2] and all(p["threads"]["cpus"] == [0] for p in sweep)
    r = run_cli(
        "profile",
        fp32_build.out_dir,
        "--device",
        "loop",
        "--devices",
        fleet["devices"],
        "--runs",
        "20",
        "--threads",
        "1,2",
    )
    assert r.exit_code == 0, r.output
    assert "on device loop" in r.stdout and "noise floor" in r.stdout and "device loop (x86_64, glibc 2.36)" in r.stdout


# ------------------------------------------------------------------------------------------------ fleet
def test_bench_run_on_two_devices_stores_a_run_per_device(fleet, tmp_path):
    (tmp_path / "suite.toml").write_text(
        'schema_version = 1\nname = "fleet"\n[run]\nruns = 20\nwarmup = 2\nwarmup_seconds = 0.0\n'
        '[[model]]\nname = "mlp"\nspec = "toy_models:mlp"\ntargets = ["xnnpack-fp32"]\n'
    )
    args = [
        "bench",
        "run",
        tmp_path / "suite.toml",
        "--devices",
        fleet["devices"],
        "--store",
        tmp_path / "st",
        "--cache",
        tmp_path / "cache",
        "--executor",
        "inline",
    ]
    r = run_cli(*args, "--device", "loop,loop2", "--save-as", "main")
    assert r.exit_code == 0, r.output
    runs = [
        json.loads(p.read_text()) for p in sorted((tmp_path / "st").glob("*/*.json")) if p.parent.name != "baselines"
    ]
    assert sorted(run["device"] for run in runs) == ["loop", "loop2"]
    assert len({run["machine"]["machine_id"] for run in runs}) == 2  # stored per device, not per host
    assert sorted(p.name for p in (tmp_path / "st" / "baselines").iterdir()) == ["main@loop.json", "main@loop2.json"]
    r = run_cli(*args, "--devices-tag", "ci")
    assert r.exit_code == 0, r.output
    cmp = run_cli(
        "bench", "compare", "--device", "loop", "--baseline", "main", "--store", tmp_path / "st", "--fail-on", "size:1%"
    )
    assert cmp.exit_code == 0 and "no regression" in cmp.stdout, cmp.output
    rep = run_cli("bench", "report", "--device", "loop2", "--store", tmp_path / "st", "-o", tmp_path / "rep")
    assert rep.exit_code == 0 and "device loop2:" in (tmp_path / "rep" / "report.md").read_text()
    rep = run_cli("bench", "report", "--all-devices", "--store", tmp_path / "st", "-o", tmp_path / "all")
    md = (tmp_path / "all" / "report.md").read_text()
    assert rep.exit_code == 0 and "## Results on loop\n" in md and "## Results on loop2\n" in md


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "device, code, fragment",
    [
        ("nope", 2, "unknown device 'nope'"),
        ("ssh://bad host", 2, "is not ssh://"),
        ("closed", 1, "cannot reach root@127.0.0.1"),
        ("badkey", 1, "refused the login"),
        ("old", 1, "has glibc 2.31, the x86_64 runner needs >= 2.34"),
    ],
)
def test_device_errors_are_one_line(fleet, fp32_build, device, code, fragment):
    line = one_line_error(
        run_cli("profile", fp32_build.out_dir, "--device", device, "--devices", fleet["devices"], "--runs", "5"),
        code,
        fragment,
    )
    if device == "nope":
        assert "loop" in line  # the known devices are listed


def test_unknown_arch_and_bad_devices_file(tmp_path):
    (tmp_path / "d.toml").write_text('[[device]]\nname = "rv"\nhost = "x"\narch = "riscv64"\n')
    with pytest.raises(UsageError, match="no runner bundle for arch 'riscv64'"):
        load_devices(tmp_path / "d.toml")
    (tmp_path / "d.toml").write_text('[[device]]\nname = "a"\nhost = "x"\nhots = "y"\n')
    one_line_error(
        run_cli("devices", "list", "--devices", tmp_path / "d.toml"),
        1,
        "unknown key 'hots' in [[device]] (did you mean 'host'?)",
    )


@pytest.mark.parametrize(
    "line, fragment",
    [
        (
            'name = "pi"\nhost = "-oProxyCommand=touch /tmp/pwned"',
            "host '-oProxyCommand=touch /tmp/pwned' is not an ssh destination",
        ),
        ('name = "pi"\nhost = "pi@pi5; rm -rf ~"', "is not an ssh destination"),
        ('name = "x/../../y"\nhost = "pi@pi5"', "device name 'x/../../y' is not a plain name"),
        ('name = ".."\nhost = "pi@pi5"', "device name '..' is not a plain name"),
        ('name = "pi"\nhost = "pi@pi5"\nexec_prefix = "qemu \'unclosed"', "cannot be split into words"),
    ],
)
def test_devices_files_are_data_a_host_that_is_an_option_or_a_name_that_is_a_path_is_refused(tmp_path, line, fragment):
    (tmp_path / "d.toml").write_text(f"[[device]]\n{line}\n")
    one_line_error(run_cli("devices", "list", "--devices", tmp_path / "d.toml"), 1, fragment)


def test_the_destination_comes_after_a_double_dash_and_exec_prefix_words_are_quoted(tmp_path):
    from edgekit.device.devices import Device, Ssh

    argv = Ssh(Device("pi", "pi@pi5.local", ssh_options=("-i", "key"))).command("echo hi")
    assert argv[argv.index("--") + 1 :] == ["pi@pi5.local", "sh -c 'echo hi'"] and argv.index("-i") < argv.index("--")
    from edgekit.bench.document import BenchRun  # a run whose device name is a path is never written
    from edgekit.bench.store import save_run
    from edgekit.errors import BenchError

    run = BenchRun.__new__(BenchRun)
    object.__setattr__(run, "machine", type("M", (), {"machine_id": "abc123"})())
    object.__setattr__(run, "device", "x/../../y")
    with pytest.raises(BenchError, match="device name 'x/../../y' is not a plain name"):
        save_run(run, tmp_path / "store", name="main")
    assert not (tmp_path / "store").exists()


def test_remote_crash_timeout_and_full_disk_leave_nothing_behind(fleet, fp32_build, tmp_path):
    from test_profile import _corrupt_delegate  # the XNNPACK blob damaged: only the runner on the device sees it

    bad = tmp_path / "corrupt.pte"
    bad.write_bytes(_corrupt_delegate(fp32_build.pte_path.read_bytes()))
    with pytest.raises(ProfileError, match="on device loop: the profiling worker failed during phase 'load'"):
        edgekit.profile(bad, device="loop", devices_file=fleet["devices"], **FAST)
    t0 = time.monotonic()
    with pytest.raises(ProfileError, match="exceeded the 3 s timeout"):
        edgekit.profile(
            fp32_build.out_dir,
            device="loop",
            devices_file=fleet["devices"],
            runs=10**9,
            warmup=1,
            warmup_seconds=0.0,
            max_seconds=1000,
            timeout=3,
        )
    assert time.monotonic() - t0 < 30 and _runs_left(fleet) == []
    assert subprocess.run(["pgrep", "-f", "work/bundles/.*/edgekit-runner"], capture_output=True).stdout == b""
    assert fleet["mounted"], "the full-disk case needs a 256 KiB tmpfs (run the tests as root)"
    with pytest.raises(DeviceError, match="disk is full"):
        edgekit.profile(fp32_build.out_dir, device="full", devices_file=fleet["devices"], **FAST)
    assert (
        not any((fleet["dir"] / "full" / "w" / "bundles").glob("*"))
        if (fleet["dir"] / "full" / "w" / "bundles").exists()
        else True
    )


def test_a_dropped_connection_is_one_line_and_leaves_nothing(fleet, fp32_build):
    import threading

    import psutil

    listener = int((fleet["dir"] / "sshd" / "sshd.pid").read_text())

    def drop():  # kill the sshd process serving our session, as a network drop or a reboot would
        time.sleep(2.5)
        for child in psutil.Process(listener).children():
            child.kill()

    t = threading.Thread(target=drop)
    t.start()
    with pytest.raises(DeviceError, match="device loop: cannot reach root@127.0.0.1") as info:
        edgekit.profile(
            fp32_build.out_dir,
            device="loop",
            devices_file=fleet["devices"],
            runs=10**9,
            warmup=1,
            warmup_seconds=0.0,
            max_seconds=60,
            timeout=120,
        )
    t.join()
    assert "\n" not in str(info.value)
    time.sleep(0.5)
    assert _runs_left(fleet) == []


FETCH = """
import sys
from edgekit.device.bundle import ARCHES, _wheel_tree
print(_wheel_tree(ARCHES["aarch64"]))
"""


def test_two_processes_fetching_the_device_wheel_at_once_both_get_it(tmp_path):
    """A fresh cache and two device profiles at once (as `make test` on a new machine): one downloads and unpacks
    the aarch64 wheel, the other waits for it instead of failing to rename its own copy onto the first one's. The
    wheel comes from a local find-links folder (pip's own mechanism), so the test needs no network."""
    import zipfile

    from edgekit.runner.native import executorch_version

    version = executorch_version()
    index = tmp_path / "index"
    index.mkdir()
    dist = f"executorch-{version}.dist-info"
    with zipfile.ZipFile(index / f"executorch-{version}-cp311-cp311-manylinux_2_28_aarch64.whl", "w") as z:
        z.writestr("executorch/lib/libexecutorch.so", b"\x7fELF" + b"\0" * 4_000_000)  # big enough to overlap
        z.writestr("executorch/include/executorch/x.h", "// header\n")
        z.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: executorch\nVersion: {version}\n")
        z.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_28_aarch64\n"
        )
        z.writestr(f"{dist}/RECORD", "")
    env = {**os.environ, "EDGEKIT_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    tree = Path(outs[0][0].strip())
    assert outs[1][0].strip() == str(tree) and (tree / "lib" / "libexecutorch.so").stat().st_size > 4_000_000
    # nothing half-made is left beside it: only the tree and the lock
    assert sorted(p.name for p in tree.parent.iterdir()) == [".lock", "executorch"]
