"""What the CLI costs as whole processes, side by side in one run: `edgekit --help`, `edgekit profile PKG`, and
the same measurement as a bare runner call (the compiled worker started directly, no Python at all).

For `edgekit profile` the overhead is the process's wall time minus the worker's own wall time (which the result
reports as settings.worker_wall_s): reading the package, hashing and parsing the program, preparing inputs, and
the Python start-up. Interleaved rounds, medians reported; the wall time of GNU time's own fork and exec (about
a millisecond) is included in every row alike. Targets (issue 11): --help <= 0.3 s; profile overhead
<= 1.0 s.

    .venv/bin/python benchmarks/cli_overhead.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
EDGEKIT = Path(sys.executable).with_name("edgekit")


def timed(cmd: list[str], rss_file: Path) -> tuple[float, float, str]:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import edgekit
    from edgekit.models import parse_input_spec
    from edgekit.runner.native import runner_path

    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "pkg"
        edgekit.build(f"{HERE / 'models.py'}:digits_cnn", "xnnpack-int8", out=pkg, inputs=[parse_input_spec("1x1x8x8")])
        (Path(tmp) / "inputs.bin").write_bytes(bytes(4 * 64))
        runs = ["--runs", "10", "--warmup", "5"]
        cmds = {
            "edgekit --help": [str(EDGEKIT), "--help"],
            "edgekit profile PKG": [
                str(EDGEKIT),
                "profile",
                str(pkg),
                *runs,
                "--warmup-seconds",
                "0",
                "--json",
                "--quiet",
            ],
            "bare runner (same runs)": [
                str(runner_path()),
                "--model",
                str(pkg / "model.pte"),
                "--inputs",
                str(Path(tmp) / "inputs.bin"),
                "--result",
                str(Path(tmp) / "r.json"),
                *runs,
                "--warmup-seconds",
                "0",
                "--threads",
                "1",
            ],
        }
        walls: dict[str, list[float]] = {k: [] for k in cmds}
        rss: dict[str, list[float]] = {k: [] for k in cmds}
        worker: list[float] = []
        for _ in range(args.rounds):
            for name, cmd in cmds.items():
                wall, peak, out = timed(cmd, Path(tmp) / "rss.txt")
                walls[name].append(wall)
                rss[name].append(peak)
                if name == "edgekit profile PKG":
                    worker.append(json.loads(out)["settings"]["worker_wall_s"])
    med = {k: statistics.median(v) for k, v in walls.items()}
    overhead = statistics.median(w - s for w, s in zip(walls["edgekit profile PKG"], worker))
    print(f"medians of {args.rounds} interleaved rounds (digits CNN int8 package, 10 timed runs)")
    print(f"{'process':<26}{'wall s':>9}{'peak RSS MiB':>15}")
    for k in cmds:
        print(f"{k:<26}{med[k]:>9.3f}{statistics.median(rss[k]):>15.1f}")
    print(
        f"edgekit profile: worker's own wall {statistics.median(worker):.3f} s, overhead over it {overhead:.3f} s "
        f"(target <= 1.0 s); --help {med['edgekit --help']:.3f} s (target <= 0.3 s)"
    )
    print(f"overhead over the bare runner call: {med['edgekit profile PKG'] - med['bare runner (same runs)']:.3f} s")


if __name__ == "__main__":
    main()
