"""Builds on a real Dask cluster (a scheduler and two workers started here on 127.0.0.1) and the fsspec build cache."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import one_line_error, run_cli
from loopback import free_port

from edgekit.bench.run import run_suite
from edgekit.bench.suite import load_suite
from edgekit.scale.executor import ExecutorError

TESTS = Path(__file__).parent
DASK = Path(sys.executable).with_name("dask")
SUITE = (
    'schema_version = 1\nname = "scale"\n[run]\nruns = 10\nwarmup = 1\nwarmup_seconds = 0.0\n'
    '[[model]]\nname = "mlp"\nspec = "toy_models:mlp"\ntargets = ["xnnpack-fp32", "xnnpack-int8"]\n'
    '[[model]]\nname = "cnn"\nspec = "toy_models:small_cnn"\ninputs = ["1x1x8x8"]\ntargets = ["xnnpack-int8"]\n'
)


def _start_cluster(folder: Path, workers: int, pythonpath: str) -> tuple[str, list]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": pythonpath}
    # every interface, so one test can reach it off loopback too (workers and clients use 127.0.0.1)
    procs = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "0.0.0.0", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "scheduler.log", "w"),
            env=env,
            start_new_session=True,
        )
    ]
    for i in range(workers):
        procs.append(
            subprocess.Popen(
                [
                    str(DASK),
                    "worker",
                    f"tcp://127.0.0.1:{port}",
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--no-nanny",  # one process per worker (a nanny is one more Python start; no test needs its restarts)
                    "--name",
                    f"w{i}",
                ],
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(folder / f"worker{i}.log", "w"),
                start_new_session=True,
            )
        )
    from distributed import Client

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with Client(f"tcp://127.0.0.1:{port}", timeout="2s") as c:
                if len(c.scheduler_info()["workers"]) == workers:
                    return f"127.0.0.1:{port}", procs
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Dask cluster did not come up: {(folder / 'scheduler.log').read_text()[-500:]}")


def _stop(procs):
    for p in reversed(procs):  # each started its own session: its nanny and worker go with it
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    address, procs = _start_cluster(d, 2, os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    (d / "suite.toml").write_text(SUITE)
    yield {"address": address, "dir": d, "suite": load_suite(d / "suite.toml")}
    _stop(procs)


def _shas(run):
    return {r.key: r.build.sha256 for r in run.results}


@pytest.fixture(scope="module")
def remote(cluster, tmp_path_factory):
    """The suite run once on the cluster into a cache of its own (the tests below read it, or copy it)."""
    cache = tmp_path_factory.mktemp("remote") / "cache"
    return {
        "run": run_suite(cluster["suite"], cache=f"file://{cache}", executor=f"dask://{cluster['address']}"),
        "cache": cache,
    }


def test_builds_on_dask_equal_local_builds_and_the_cache_is_shared(cluster, remote, tmp_path):
    run = remote["run"]
    assert not run.errors and len(run.results) == 3
    assert {r.build.worker for r in run.results} <= {f"tcp://{a}" for a in _workers(cluster)}
    assert all(not r.build.cached and r.build.attempts == 1 and r.build.seconds > 0 for r in run.results)
    import edgekit

    model, target, _ = cluster["suite"].items()[-1]  # the int8 CNN, built here, in this process
    local = edgekit.build(model.spec, target, out=tmp_path / "local", inputs=model.inputs)
    assert local.manifest.program.sha256 == _shas(run)[f"{model.name}|{target}|1"]  # the same bytes, wherever built
    again = run_suite(cluster["suite"], cache=f"file://{remote['cache']}", executor=f"dask://{cluster['address']}")
    assert all(r.build.cached for r in again.results)
    assert not any("build(s) on" in n for n in again.notes)  # nothing built, no executor started


def test_a_corrupt_cache_entry_is_rebuilt_and_said_once(cluster, remote, tmp_path):
    from edgekit.bench.run import build_all

    cache, ex = tmp_path / "cache", f"dask://{cluster['address']}"
    shutil.copytree(remote["cache"], cache)
    first = {(r.model, r.target): r.build.sha256 for r in remote["run"].results}
    entry = next(p for p in cache.iterdir() if (p / "model.pte").exists())
    (entry / "model.pte").write_bytes(b"garbage")
    second, errors, notes = build_all(cluster["suite"], cache=cache, executor=ex)
    corrupt = [n for n in notes if "corrupt" in n]
    assert not errors and len(corrupt) == 1 and entry.name in corrupt[0] and corrupt[0].endswith("rebuilt")  # said once
    assert first == {k: b.manifest.program.sha256 for k, b in second.items()}
    assert sorted(b.cached for b in second.values()) == [False, True, True]  # only the corrupt one was built again
    r = run_cli("cache", "ls", "--cache", str(cache))
    assert r.exit_code == 0 and "toy_models:mlp" in r.stdout
    r = run_cli("cache", "prune", "--cache", str(cache), "--older-than", "0m")
    assert r.exit_code == 0 and "removed 3 entries" in r.stdout


def _workers(cluster):
    from distributed import Client

    with Client(f"tcp://{cluster['address']}", timeout="5s") as c:
        return [a.removeprefix("tcp://") for a in c.scheduler_info()["workers"]]


def test_a_worker_killed_mid_build_is_retried_elsewhere(cluster, tmp_path):
    from distributed import Client

    (tmp_path / "suite.toml").write_text(
        SUITE.split("[[model]]")[0] + '[[model]]\nname = "cnn"\nspec = "toy_models:small_cnn"\n'
        'inputs = ["1x1x8x8"]\ntargets = ["xnnpack-int8-pruned"]\n'
    )
    suite = load_suite(tmp_path / "suite.toml")
    cache = tmp_path / "cache"

    def kill_the_builder():
        with Client(f"tcp://{cluster['address']}", timeout="5s") as c:
            pids = c.run(os.getpid)
            for _ in range(400):
                markers = list((cache / ".attempts").glob("*/*")) if (cache / ".attempts").exists() else []
                if markers:
                    time.sleep(0.5)
                    addr = next(
                        a for a in pids if a.replace("/", "_").replace(":", "_") == markers[0].name.split(".", 1)[1]
                    )  # <run>.<worker>
                    os.kill(pids[addr], signal.SIGKILL)
                    return
                time.sleep(0.05)

    t = threading.Thread(target=kill_the_builder)
    t.start()
    run = run_suite(suite, cache=str(cache), executor=f"dask://{cluster['address']}")
    t.join()
    assert not run.errors and run.results[0].build.attempts == 2  # the retry is recorded in the run file
    # the workers run without a nanny, so the killed one stays gone: the tests after this one build nothing on the
    # cluster (keep it so, or restart a worker here)


def test_a_worker_with_another_stack_is_refused_before_any_build(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(TESTS.parent / "edgekit", other / "edgekit", ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "edgekit" / "pipeline" / "build.py", "a") as f:
        f.write("\n# a different edgekit\n")
    address, procs = _start_cluster(tmp_path, 1, os.pathsep.join([str(other), str(TESTS)]))
    try:
        (tmp_path / "suite.toml").write_text(SUITE)
        with pytest.raises(ExecutorError, match="runs a different stack .*edgekit_source"):
            run_suite(load_suite(tmp_path / "suite.toml"), cache=tmp_path / "cache", executor=f"dask://{address}")
        assert not (tmp_path / "cache" / ".attempts").exists()  # nothing was submitted
    finally:
        _stop(procs)


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--executor", "dask://127.0.0.1:1"], 1, "cannot reach the Dask scheduler at tcp://127.0.0.1:1"),
        (["--executor", "cluster"], 2, "is not local, local:N, inline, dask://HOST:PORT or tls://HOST:PORT"),
        (["--cache", "nosuchscheme://bucket/x"], 1, "no fsspec driver for nosuchscheme://"),
        (["--cache", "/proc/edgekit-cache"], 1, "is not writable"),
    ],
)
def test_bad_executor_and_cache_are_one_line(cluster, tmp_path, args, code, fragment):
    r = run_cli(
        "bench",
        "run",
        str(cluster["dir"] / "suite.toml"),
        "--store",
        str(tmp_path / "st"),
        "--cache",
        str(tmp_path / "c"),
        *args,
    )
    one_line_error(r, code, fragment)


def test_a_local_pool_process_killed_mid_build_is_retried(tmp_path):
    (tmp_path / "suite.toml").write_text(
        SUITE.split("[[model]]")[0] + '[[model]]\nname = "cnn"\nspec = "toy_models:small_cnn"\n'
        'inputs = ["1x1x8x8"]\ntargets = ["xnnpack-int8-pruned"]\n'
    )
    cache = tmp_path / "cache"

    def kill_the_builder():
        for _ in range(600):
            markers = list((cache / ".attempts").glob("*/*")) if (cache / ".attempts").exists() else []
            if markers:
                time.sleep(0.5)
                os.kill(int(markers[0].name.rsplit("_", 1)[-1]), signal.SIGKILL)  # the marker is named host_pid
                return
            time.sleep(0.05)

    t = threading.Thread(target=kill_the_builder)
    t.start()
    run = run_suite(load_suite(tmp_path / "suite.toml"), cache=str(cache), executor="local:1")
    t.join()
    assert (
        not run.errors and run.results[0].build.attempts == 2 and any("local process pool of 1" in n for n in run.notes)
    )


def test_each_local_pool_process_gets_its_share_of_the_cores(monkeypatch):
    """N builds side by side on C cores: C // N torch threads each (left alone, each would start an OpenMP pool as
    wide as the machine, N x C threads spinning on C cores); a user's own $OMP_NUM_THREADS is kept."""
    from toy_models import torch_threads

    from edgekit.scale.executor import make_executor

    def threads_in_pool(n: int) -> tuple[set, str]:
        ex = make_executor(f"local:{n}")
        try:
            outcomes = list(ex.run(torch_threads, list(range(2 * n))))
        finally:
            ex.close()
        assert len(outcomes) == 2 * n and not [e for _, _, e in outcomes if e is not None], outcomes
        return {threads for _, threads, _ in outcomes}, ex.describe

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the test session sets one for its own children
    for n in (1, 2):
        got, describe = threads_in_pool(n)
        assert got == {max(1, cores // n)} and f"{max(1, cores // n)} thread(s) each (cores" in describe, describe
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one process, which would otherwise get every core
    got, describe = threads_in_pool(1)
    assert got == {1} and "threads as OMP_NUM_THREADS=1 says" in describe, describe


def _certificates(folder: Path) -> dict:
    """A CA and one certificate for 127.0.0.1 signed by it (scheduler, workers and client share it here)."""

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=edgekit test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "node.key", "-out", "node.csr")
    (folder / "san.cnf").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "node.pem",
    )
    return {k: str(folder / f) for k, f in (("ca", "ca.pem"), ("cert", "node.pem"), ("key", "node.key"))}


def test_a_tls_cluster_builds_with_dasks_security_configuration_and_refuses_a_client_without_certificates(tmp_path):
    """A scheduler and a worker that speak TLS only, with certificates from a CA made here. They run in this process
    (threads, real TLS sockets on 127.0.0.1): what is under test is the client side, and a worker process would cost
    one more import of the build stack."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    from edgekit.bench.run import build_all

    c = _certificates(tmp_path)
    roles = {f"tls_{role}_{part}": c[part] for role in ("scheduler", "worker", "client") for part in ("cert", "key")}
    security = Security(tls_ca_file=c["ca"], **roles, require_encryption=True)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        security=security,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},  # its HTTP server on a free port
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:"), address
        (tmp_path / "suite.toml").write_text(
            SUITE.split("[[model]]")[0] + '[[model]]\nname = "mlp"\nspec = "toy_models:mlp"\n'
            'targets = ["xnnpack-fp32"]\n'
        )
        suite = load_suite(tmp_path / "suite.toml")
        with pytest.raises(ExecutorError, match="no TLS certificates are configured"):
            build_all(suite, cache=tmp_path / "cache", executor=address)
        with dask.config.set(
            {
                "distributed.comm.tls.ca-file": c["ca"],
                "distributed.comm.tls.client.cert": c["cert"],
                "distributed.comm.tls.client.key": c["key"],
            }
        ):
            built, errors, notes = build_all(suite, cache=tmp_path / "cache", executor=address)
        assert not errors and len(built) == 1 and any("(TLS)" in n for n in notes), (errors, notes)
        assert not any(n.startswith("warning") for n in notes)


def test_tls_settings_in_a_dask_config_block_work_when_distributed_is_first_imported_inside_one(tmp_path):
    """A fresh process whose first use of Dask is a ``dask.config.set`` block with the client's certificates: Dask's
    defaults registered inside the block vanish with it, and the next block's executor still reads its configuration
    (a one-line connection error here: the client's certificate is given without its key; not a KeyError), a value
    the user set included."""
    script = (
        "import socket, dask\n"
        "from edgekit.scale.executor import ExecutorError, make_executor\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "tls = {'distributed.comm.tls.ca-file': 'ca.pem', 'distributed.comm.tls.client.cert': 'node.pem',\n"
        "       'distributed.comm.timeouts.connect': '7s'}\n"
        "for attempt in range(2):\n"
        "    with dask.config.set(tls):\n"
        "        try:\n"
        "            make_executor(f'tls://127.0.0.1:{s.getsockname()[1]}')\n"
        "        except ExecutorError as e:\n"
        "            print(e.args[0].split(' (')[0])\n"
        "        print(dask.config.get('distributed.comm.timeouts.connect'))\n"
    )
    _certificates(tmp_path)  # ca.pem and node.pem in the working folder
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = r.stdout.splitlines()
    assert lines[1::2] == ["7s", "7s"], lines  # the user's own setting stays as set (Dask's default is 30s)
    assert all(ln.startswith("cannot connect to the Dask scheduler at tls://") for ln in lines[::2]), lines


def test_a_plain_tcp_cluster_off_loopback_gets_a_one_line_warning(cluster):
    import psutil

    from edgekit.scale.executor import make_executor

    port = cluster["address"].rsplit(":", 1)[1]
    here = next(
        (
            a.address
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family.name == "AF_INET" and not a.address.startswith("127.")
        ),
        None,
    )
    assert here is not None, "this test needs a non-loopback IPv4 address on this machine"
    ex = make_executor(f"dask://{here}:{port}")  # the test scheduler listens on every interface
    try:
        assert "plain TCP" in ex.warning and "tls://" in ex.warning and "\n" not in ex.warning
    finally:
        ex.close()
    local = make_executor(f"dask://{cluster['address']}")
    try:
        assert local.warning is None
    finally:
        local.close()
