"""The measurer measured: does edgekit's load RSS delta see a program's known weight footprint?

A program holding exactly 64 MiB of fp32 weights (Linear 4096x4096, no bias) is built for xnnpack-fp32
and profiled with the native engine, with both data loaders. Target: load RSS delta within 10% of 64 MiB.

    .venv/bin/python benchmarks/memory_accuracy.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import edgekit  # noqa: E402
from edgekit.machine import machine_facts  # noqa: E402

EXPECTED_MB = 4096 * 4096 * 4 / 2**20


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        res = edgekit.build(f"{HERE / 'models.py'}:big_linear", "xnnpack-fp32", out=Path(d) / "big", force=True)
        rows = []
        for loader in ("mmap", "file"):
            for engine in ("native", "python"):
                if engine == "python" and loader == "file":
                    continue  # the pybindings choose their own loader
                p = edgekit.profile(res.out_dir, engine=engine, loader=loader, runs=20, warmup=3, warmup_seconds=0.0)
                rows.append((engine, loader if engine == "native" else "pybindings", p.memory))
    f = machine_facts()
    print(
        f"# memory accuracy — {f['cpu_model']}, executorch {f['executorch']}; program: Linear(4096, 4096) fp32 = "
        f"{EXPECTED_MB:.1f} MiB of weights, .pte {res.manifest.program.size_bytes / 2**20:.1f} MiB"
    )
    print(
        f"{'engine':<8}{'loader':<12}{'baseline':>10}{'after load':>12}{'load Δ':>9}{'error':>9}{'peak':>9}{'peak Δ':>9}  (MiB)"
    )
    ok = True
    for engine, loader, m in rows:
        err = m.load_delta_mb / EXPECTED_MB - 1
        ok &= abs(err) <= 0.10 or engine != "native"
        print(
            f"{engine:<8}{loader:<12}{m.baseline_rss_mb:>10.1f}{m.load_rss_mb:>12.1f}{m.load_delta_mb:>9.1f}{err:>+9.1%}"
            f"{m.peak_rss_mb:>9.1f}{m.peak_delta_mb:>9.1f}"
        )
    print(f"expected load Δ {EXPECTED_MB:.1f} MiB; target within 10% (native engine): {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
