"""The measurer measured: what edgekit's profiler adds to what it measures, and whether it sees what is there.

One check, four measurements, each a subcommand that prints the table the docs quote (``--save`` also writes it to
its file in benchmarks/results/):

  harness  edgekit profile's p50 vs a bare execute() loop, same .pte and threads       harness_overhead.txt
  memory   the load RSS delta vs a program of exactly 64 MiB of fp32 weights            memory_accuracy.txt
  cli      whole processes: `edgekit --help`, `edgekit profile PKG`, a bare runner call  cli_overhead.txt
  remote   p50 through --device (a loopback sshd) vs local, and what a profile sends     remote_overhead.txt

They measure the same way (fresh builds of benchmarks/models.py in a temporary folder; the sides interleaved round
by round, so drift hits them alike; medians of the rounds), with one copy of its helpers (interleaved, medians,
header); edgekit is imported only by the measurement that runs.

    .venv/bin/python benchmarks/measurer_check.py harness [--rounds 5] [--runs 300] [--warmup 50] [--threads 1]
    .venv/bin/python benchmarks/measurer_check.py memory
    .venv/bin/python benchmarks/measurer_check.py cli [--rounds 7]
    .venv/bin/python benchmarks/measurer_check.py remote [--rounds 5] [--runs 300]    (as root: it starts an sshd)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = HERE / "models.py"
T = TypeVar("T")


# ----------------------------------------------------------------------------------------- the shared way of measuring
def interleaved(rounds: int, sides: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Every side once per round, in the order given, ``rounds`` times: the samples of each side."""
    out: dict[str, list[T]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, measure in sides.items():
            out[name].append(measure())
    return out


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def header(title: str, cores: bool = False) -> str:
    """``# TITLE — CPU[, N cores], executorch VERSION``: the machine line a result file starts with."""
    from edgekit.machine import machine_facts

    f = machine_facts()
    where = f"{f['cpu_model']}, {f['cores_logical']} cores" if cores else f["cpu_model"]
    return f"# {title} — {where}, executorch {f['executorch']}"


# ----------------------------------------------------------------------------------------- harness
def harness(args: argparse.Namespace) -> list[str]:
    """edgekit profile's p50 vs a bare execute() loop on the same .pte and threads.

    For each engine the reference is the bare loop in the same kind of process: the native engine vs a bare C++ loop
    (benchmarks/bare_loop.cpp, compiled against the same libraries), the python engine vs a bare Python loop over
    executorch.runtime's Method.execute() in this process. The figure is the median over rounds of each side's p50.
    Target: overhead <= 3% on a model of ~1 ms or more. On a trivial model (Linear 4x4) the p50 itself is the
    per-call cost; the difference to the bare loop is the harness's share."""
    import edgekit
    from edgekit.runner.native import compile_command, find_compiler

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models = {
            name: edgekit.build(f"{MODELS}:{name}", "xnnpack-fp32", out=tmp / name, force=True).pte_path
            for name in ("residual_cnn", "trivial")
        }
        exe = tmp / "bare_loop"
        cmd = compile_command(find_compiler(), exe)
        cmd[cmd.index(next(c for c in cmd if c.endswith("runner.cpp")))] = str(HERE / "bare_loop.cpp")
        subprocess.run(cmd, check=True)
        rows = [(name, _harness_sides(pte, exe, args)) for name, pte in models.items()]
    lines = [
        header("harness overhead", cores=True) + f", {args.threads} thread(s), {args.rounds} interleaved rounds × "
        f"{args.runs} runs; medians of p50 (ms)",
        f"{'model':<14}{'bare C++':>11}{'native':>11}{'overhead':>10}{'bare Py':>11}{'python':>11}{'overhead':>10}",
    ]
    for name, m in rows:
        on = m["edgekit native"] / m["bare C++"] - 1
        op = m["edgekit python"] / m["bare Python"] - 1
        lines.append(
            f"{name:<14}{m['bare C++']:>11.4f}{m['edgekit native']:>11.4f}{on:>+10.1%}{m['bare Python']:>11.4f}"
            f"{m['edgekit python']:>11.4f}{op:>+10.1%}"
        )
    trivial = dict(rows)["trivial"]
    lines.append(
        f"per-call cost on the trivial model: native engine {trivial['edgekit native'] * 1e3:.2f} µs "
        f"(bare C++ {trivial['bare C++'] * 1e3:.2f} µs, difference {(trivial['edgekit native'] - trivial['bare C++']) * 1e3:+.2f} µs); "
        f"python engine {trivial['edgekit python'] * 1e3:.2f} µs (bare Python {trivial['bare Python'] * 1e3:.2f} µs, "
        f"difference {(trivial['edgekit python'] - trivial['bare Python']) * 1e3:+.2f} µs)"
    )
    big = dict(rows)["residual_cnn"]
    worst = max(abs(big["edgekit native"] / big["bare C++"] - 1), abs(big["edgekit python"] / big["bare Python"] - 1))
    lines.append(
        f"target: overhead <= 3% on the ~1 ms+ model: {'MET' if worst <= 0.03 else 'NOT MET'} (worst {worst:.1%})"
    )
    return lines


def _harness_sides(pte: Path, exe: Path, args: argparse.Namespace) -> dict[str, float]:
    """One model's four sides, interleaved: the medians of their p50s (ms)."""
    import edgekit

    loop = [str(args.warmup), str(args.runs), str(args.threads)]
    opts = dict(runs=args.runs, warmup=args.warmup, warmup_seconds=0.0, threads=args.threads)
    return medians(
        interleaved(
            args.rounds,
            {
                "bare C++": lambda: statistics.median(
                    json.loads(subprocess.run([str(exe), str(pte), *loop], capture_output=True, check=True).stdout)
                ),
                "edgekit native": lambda: edgekit.profile(pte, engine="native", **opts).latency_ms.p50,
                "edgekit python": lambda: edgekit.profile(pte, engine="python", **opts).latency_ms.p50,
                "bare Python": lambda: _bare_python(pte, args.warmup, args.runs, args.threads),
            },
        )
    )


def _bare_python(pte: Path, warmup: int, runs: int, threads: int) -> float:
    """The p50 (ms) of a bare loop over executorch.runtime's Method.execute() in this process."""
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(str(pte)).load_method("forward")
    meta = method.metadata
    n_inputs = meta.num_inputs() if callable(meta.num_inputs) else meta.num_inputs
    inputs = [torch.zeros(list(meta.input_tensor_meta(i).sizes())) for i in range(n_inputs)]
    for _ in range(warmup):
        method.execute(inputs)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        method.execute(inputs)
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


# ----------------------------------------------------------------------------------------- memory
EXPECTED_MB = 4096 * 4096 * 4 / 2**20


def memory(args: argparse.Namespace) -> list[str]:
    """Does edgekit's load RSS delta see a program's known weight footprint?

    A program holding exactly 64 MiB of fp32 weights (Linear 4096x4096, no bias) is built for xnnpack-fp32 and
    profiled with the native engine, with both data loaders, and with the python engine. Target: load RSS delta within
    10% of 64 MiB (native engine)."""
    import edgekit

    with tempfile.TemporaryDirectory() as d:
        res = edgekit.build(f"{MODELS}:big_linear", "xnnpack-fp32", out=Path(d) / "big", force=True)
        rows = []
        for loader in ("mmap", "file"):
            for engine in ("native", "python"):
                if engine == "python" and loader == "file":
                    continue  # the pybindings choose their own loader
                p = edgekit.profile(res.out_dir, engine=engine, loader=loader, runs=20, warmup=3, warmup_seconds=0.0)
                rows.append((engine, loader if engine == "native" else "pybindings", p.memory))
    lines = [
        header("memory accuracy") + f"; program: Linear(4096, 4096) fp32 = {EXPECTED_MB:.1f} MiB of weights, "
        f".pte {res.manifest.program.size_bytes / 2**20:.1f} MiB",
        f"{'engine':<8}{'loader':<12}{'baseline':>10}{'after load':>12}{'load Δ':>9}{'error':>9}{'peak':>9}{'peak Δ':>9}  (MiB)",
    ]
    ok = True
    for engine, loader, m in rows:
        err = m.load_delta_mb / EXPECTED_MB - 1
        ok &= abs(err) <= 0.10 or engine != "native"
        lines.append(
            f"{engine:<8}{loader:<12}{m.baseline_rss_mb:>10.1f}{m.load_rss_mb:>12.1f}{m.load_delta_mb:>9.1f}{err:>+9.1%}"
            f"{m.peak_rss_mb:>9.1f}{m.peak_delta_mb:>9.1f}"
        )
    lines.append(
        f"expected load Δ {EXPECTED_MB:.1f} MiB; target within 10% (native engine): {'MET' if ok else 'NOT MET'}"
    )
    return lines


# ----------------------------------------------------------------------------------------- cli
def cli(args: argparse.Namespace) -> list[str]:
    """What the CLI costs as whole processes: `edgekit --help`, `edgekit profile PKG`, and the same measurement as a
    bare runner call (the compiled worker started directly, no Python at all).

    For `edgekit profile` the overhead is the process's wall time minus the worker's own wall time (the result's
    settings.worker_wall_s): reading the package, hashing and parsing the program, preparing inputs, and the Python
    start-up. The wall time of GNU time's own fork and exec (about a millisecond) is in every row alike. Targets
    (issue 11): --help <= 0.3 s; profile overhead <= 1.0 s."""
    import edgekit
    from edgekit.models import parse_input_spec
    from edgekit.runner.native import runner_path

    exe = str(Path(sys.executable).with_name("edgekit"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pkg = tmp / "pkg"
        edgekit.build(f"{MODELS}:digits_cnn", "xnnpack-int8", out=pkg, inputs=[parse_input_spec("1x1x8x8")])
        (tmp / "inputs.bin").write_bytes(bytes(4 * 64))
        runs = ["--runs", "10", "--warmup", "5", "--warmup-seconds", "0"]
        cmds = {
            "edgekit --help": [exe, "--help"],
            "edgekit profile PKG": [exe, "profile", str(pkg), *runs, "--json", "--quiet"],
            "bare runner (same runs)": [
                *[str(runner_path()), "--model", str(pkg / "model.pte"), "--inputs", str(tmp / "inputs.bin")],
                *["--result", str(tmp / "r.json"), *runs, "--threads", "1"],
            ],
        }
        got = interleaved(
            args.rounds, {name: lambda cmd=cmd: _whole_process(cmd, tmp / "rss.txt") for name, cmd in cmds.items()}
        )
    walls = {name: [wall for wall, _, _ in samples] for name, samples in got.items()}
    rss = medians({name: [peak for _, peak, _ in samples] for name, samples in got.items()})
    worker = [json.loads(out)["settings"]["worker_wall_s"] for _, _, out in got["edgekit profile PKG"]]
    med = medians(walls)
    overhead = statistics.median(w - s for w, s in zip(walls["edgekit profile PKG"], worker))
    return [
        f"medians of {args.rounds} interleaved rounds (digits CNN int8 package, 10 timed runs)",
        f"{'process':<26}{'wall s':>9}{'peak RSS MiB':>15}",
        *(f"{name:<26}{med[name]:>9.3f}{rss[name]:>15.1f}" for name in cmds),
        f"edgekit profile: worker's own wall {statistics.median(worker):.3f} s, overhead over it {overhead:.3f} s "
        f"(target <= 1.0 s); --help {med['edgekit --help']:.3f} s (target <= 0.3 s)",
        f"overhead over the bare runner call: {med['edgekit profile PKG'] - med['bare runner (same runs)']:.3f} s",
    ]


def _whole_process(cmd: list[str], rss_file: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one whole process. The peak comes from GNU time, a small process of
    its own: Linux carries ru_maxrss across fork and exec, so this (large) Python parent's figure would leak in."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-o", str(rss_file), "-f", "%M", *cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return wall, int(rss_file.read_text().split()[-1]) / 1024, proc.stdout.decode()


# ----------------------------------------------------------------------------------------- remote
def remote(args: argparse.Namespace) -> list[str]:
    """What measuring through a device costs: the same program and runner build profiled here and through --device on
    a loopback sshd (tests/loopback.py: test support, not part of the installed edgekit), in interleaved rounds; and
    what a second profile on the same device transfers. Target (issue 8): p50 through --device within 3% of local."""
    import edgekit

    sys.path.insert(0, str(ROOT / "tests"))
    from loopback import private_sshd

    with tempfile.TemporaryDirectory(prefix="ek-remote-") as d:
        tmp = Path(d)
        pkgs = {
            name: edgekit.build(f"{MODELS}:{name}", "xnnpack-fp32", out=tmp / name).out_dir
            for name in ("residual_cnn", "digits_cnn")
        }
        with private_sshd(tmp / "sshd") as sshd:
            devices = tmp / "devices.toml"
            devices.write_text(sshd.device_toml("loopback", tmp / "work"))
            there = dict(device="loopback", devices_file=devices)
            first = edgekit.profile(pkgs["residual_cnn"], **there, runs=10, warmup_seconds=0)
            opts = dict(runs=args.runs, warmup=30, warmup_seconds=0.5, threads=1)

            def timed_p50(**where) -> tuple[float, float]:
                t0 = time.perf_counter()
                p50 = edgekit.profile(pkgs["residual_cnn"], **where, **opts).latency_ms.p50
                return p50, time.perf_counter() - t0

            got = interleaved(args.rounds, {"local": timed_p50, "remote": lambda: timed_p50(**there)})
            second = edgekit.profile(pkgs["digits_cnn"], **there, runs=10, warmup_seconds=0)
    p50 = medians({side: [p for p, _ in samples] for side, samples in got.items()})
    wall = medians({side: [w for _, w in samples] for side, samples in got.items()})
    lo, re_ = p50["local"], p50["remote"]
    return [
        f"residual CNN fp32 (1x3x128x128), 1 thread, {args.rounds} interleaved rounds x {args.runs} runs; medians of p50",
        f"  local native runner       p50 {lo:.4f} ms   (profile wall {wall['local']:.2f} s)",
        f"  --device loopback (ssh)   p50 {re_:.4f} ms   (profile wall {wall['remote']:.2f} s)",
        f"  ratio {re_ / lo:.4f} ({(re_ / lo - 1) * 100:+.2f}%); target within 3%: {'MET' if abs(re_ / lo - 1) <= 0.03 else 'NOT MET'}",
        f"  first profile on the device sent {first.device['bytes_sent']['bundle'] / 1024:.0f} KiB of runner bundle "
        f"+ {first.device['bytes_sent']['program_and_inputs'] / 1024:.0f} KiB of program and inputs",
        f"  a second, new program sent {second.device['bytes_sent']['bundle']} bytes of bundle "
        f"+ {second.device['bytes_sent']['program_and_inputs'] / 1024:.0f} KiB of program and inputs",
    ]


# ----------------------------------------------------------------------------------------- command line
CHECKS = {  # subcommand: (measurement, its result file, what it checks, its options: flag → default)
    "harness": (
        harness,
        "harness_overhead.txt",
        "the profiler's overhead vs bare loops, and its per-call cost",
        {"--rounds": 5, "--runs": 300, "--warmup": 50, "--threads": 1},
    ),
    "memory": (memory, "memory_accuracy.txt", "the load RSS delta vs a known 64 MiB of weights", {}),
    "cli": (cli, "cli_overhead.txt", "whole-process cost of the CLI vs a bare runner call", {"--rounds": 7}),
    "remote": (
        remote,
        "remote_overhead.txt",
        "p50 through --device (loopback sshd; as root) vs local, and the bytes sent",
        {"--rounds": 5, "--runs": 300},
    ),
}


def main(argv: list[str] | None = None) -> None:
    intro, rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(description=intro, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="check", required=True, metavar="CHECK")
    for name, (measure, result, what, options) in CHECKS.items():
        p = sub.add_parser(name, help=f"{what} ({result})", description=measure.__doc__)
        for flag, default in options.items():
            p.add_argument(flag, type=int, default=default, help=f"default {default}")
        p.add_argument("--save", action="store_true", help=f"also write benchmarks/results/{result}")
    args = ap.parse_args(argv)
    measure, result, _, _ = CHECKS[args.check]
    sys.path.insert(0, str(ROOT))
    text = "\n".join(measure(args))
    print(text)
    if args.save:
        (HERE / "results" / result).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
