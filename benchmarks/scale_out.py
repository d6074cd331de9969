"""Build wall time of the default suite (benchmarks/suite.toml) through each executor, side by side in one run:
a local pool of 1 and of 2 processes, and a 2-worker Dask LocalCluster; each from a cold cache, with the peak RSS
of every worker that built something.

    .venv/bin/python benchmarks/scale_out.py > benchmarks/results/scale_out.txt
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    sys.path.insert(0, str(HERE))
    from distributed import LocalCluster

    from edgekit.bench.run import build_all
    from edgekit.bench.suite import load_suite

    suite = load_suite(HERE / "suite.toml")
    pairs = len(dict.fromkeys((m.name, t) for m, t, _ in suite.items()))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ek-scale-") as tmp:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            address = cluster.scheduler_address.removeprefix("tcp://")
            for label, executor in (
                ("local pool, 1 process", "local:1"),
                ("local pool, 2 processes", "local:2"),
                ("Dask LocalCluster, 2 workers", f"dask://{address}"),
            ):
                t0 = time.perf_counter()
                built, errors, _ = build_all(
                    suite, cache=Path(tmp) / label.replace(" ", "_").replace(",", ""), executor=executor
                )
                wall = time.perf_counter() - t0
                peaks: dict = defaultdict(float)
                for b in built.values():
                    peaks[b.worker] = max(peaks[b.worker], b.peak_rss_mb or 0)
                rows.append((label, wall, len(built), len(errors), dict(peaks)))
    print(f"default suite: {pairs} builds (model x target), cold cache each time, on this machine's cores")
    print(
        f"{'executor':<32}{'wall s':>8}{'speed-up':>10}  built  failed  peak RSS per worker (MiB; local: pid, Dask: port)"
    )
    for label, wall, n, failed, peaks in rows:
        print(
            f"{label:<32}{wall:>8.1f}{rows[0][1] / wall:>9.2f}x  {n:>5}  {failed:>6}  "
            + ", ".join(f"{w.rsplit(':', 1)[-1]}: {p:.0f}" for w, p in sorted(peaks.items()))
        )


if __name__ == "__main__":
    main()
