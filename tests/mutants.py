"""Seeded mutations of a real program through `edgekit profile`: count crashes, hangs and `unexpected` errors.

A test helper, not a benchmark: tests/test_bad_inputs.py runs a seeded batch of 60 through ``run_mutants`` on every
change; run as a script it feeds 1,000 to the digits-sized CNN of benchmarks/models.py (fp32 and int8), the run
benchmarks/results/mutate_programs.txt holds.

Every mutant must end as a result (exit 0) or a clean one-line error (exit 1 or 2). A Python traceback out of the
CLI is a crash; a worker killed by the timeout is a hang; an error message starting with `unexpected` is a bug the
CLI did not foresee. The worker may die of a signal on a mutant: that is reported as a clean error (the isolation
works), and counted separately as `worker signals`.

    .venv/bin/python tests/mutants.py            # 1,000 mutants of the digits-sized CNN (fp32 and int8)
    .venv/bin/python tests/mutants.py --count 50
"""

from __future__ import annotations

import argparse
import collections
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("flip", "word", "truncate", "zero", "header")


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutant of ``data`` and the kind of damage done."""
    kind = rng.choice(KINDS)
    out = bytearray(data)
    flatbuffer_end = min(len(data), struct.unpack_from("<Q", data, 16)[0]) if data[8:12] == b"eh00" else len(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    elif kind == "word":  # an offset, length or enum set to an extreme value, inside the flatbuffer
        i = rng.randrange(0, max(1, flatbuffer_end - 4)) & ~3
        value = rng.choice([0, 1, 0x7F, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.getrandbits(32)])
        out[i : i + 4] = struct.pack("<I", value)
    elif kind == "truncate":
        return kind, bytes(out[: rng.randrange(1, len(out))])
    elif kind == "zero":
        i = rng.randrange(len(out))
        n = rng.randint(1, 256)
        out[i : i + n] = bytes(len(out[i : i + n]))
    else:  # the extended header: program size and segment offsets
        i = rng.choice([16, 20, 24, 28])
        out[i : i + 4] = struct.pack("<I", rng.getrandbits(32))
    return kind, bytes(out)


def classify(result) -> str:
    """ok | clean error | usage error | unexpected | hang | crash."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "crash"
    if result.exit_code == 0:
        return "ok"
    text = result.stderr
    if "unexpected" in text:
        return "unexpected"
    if "timeout" in text and "killed" in text:
        return "hang"
    return "usage error" if result.exit_code == 2 else "clean error"


def run_mutants(programs: list[Path], count: int, seed: int, work: Path) -> dict:
    """Profile ``count`` mutants (spread over ``programs``) through the CLI; counts by outcome."""
    from click.testing import CliRunner

    from edgekit.cli import cli

    rng = random.Random(seed)
    runner = CliRunner()
    outcomes: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[str, str] = {}
    signals = 0
    sources = [p.read_bytes() for p in programs]
    for i in range(count):
        kind, data = mutate(sources[i % len(sources)], rng)
        path = work / f"m{i}.pte"
        path.write_bytes(data)
        r = runner.invoke(
            cli,
            [
                "profile",
                str(path),
                "--runs",
                "3",
                "--warmup",
                "0",
                "--warmup-seconds",
                "0",
                "--max-seconds",
                "2",
                "--timeout",
                "20",
                "--json",
                "--quiet",
            ],
        )
        outcome = classify(r)
        outcomes[outcome] += 1
        by_kind[kind][outcome] += 1
        signals += "crashed with SIG" in r.stderr
        if outcome not in ("ok",) and outcome not in examples:
            examples[outcome] = (r.stderr.strip().splitlines() or [repr(r.exception)])[-1][:200]
        path.unlink()
    return {
        "count": count,
        "outcomes": dict(outcomes),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "worker_signals": signals,
        "examples": examples,
    }


def _programs(work: Path) -> list[Path]:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import edgekit
    from edgekit.models import parse_input_spec

    out = []
    for target in ("xnnpack-fp32", "xnnpack-int8"):
        spec = str(root / "benchmarks" / "models.py") + ":digits_cnn"
        res = edgekit.build(spec, target, out=work / target, inputs=[parse_input_spec("1x1x8x8")])
        out.append(res.pte_path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        programs = _programs(work)
        t0 = time.perf_counter()
        report = run_mutants(programs, args.count, args.seed, work)
        seconds = time.perf_counter() - t0
    o = report["outcomes"]
    print(
        f"{report['count']} mutants of {', '.join(p.parent.name for p in programs)} (seed {args.seed}), {seconds:.0f} s"
    )
    for outcome in ("ok", "clean error", "usage error", "unexpected", "hang", "crash"):
        print(f"  {outcome:<12} {o.get(outcome, 0):5d}")
    print(f"  (of the clean errors, {report['worker_signals']} were a worker killed by a signal and reported as such)")
    for kind, counts in sorted(report["by_kind"].items()):
        print(f"  {kind:<9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for outcome, line in report["examples"].items():
        print(f"  e.g. {outcome}: {line}")
    bad = sum(o.get(k, 0) for k in ("unexpected", "hang", "crash"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
