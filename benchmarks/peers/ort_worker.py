"""ONNX Runtime under edgekit's rules: its own process, same phases, same RSS readings, same JSON.

python benchmarks/peers/ort_worker.py MODEL.onnx INPUTS.npz RESULT.json --threads 1 --warmup 20 --runs 100
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return -1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("result")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--warmup-seconds", type=float, default=0.2)
    ap.add_argument("--runs", type=int, default=100)
    a = ap.parse_args()
    import numpy as np
    import onnxruntime as ort

    baseline = status_bytes("VmRSS")
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    after_load = status_bytes("VmRSS")
    with np.load(a.inputs, allow_pickle=False) as z:
        feeds = {i.name: z[f"x{k}"] for k, i in enumerate(sess.get_inputs())}
    t = time.perf_counter()
    sess.run(None, feeds)
    first = (time.perf_counter() - t) * 1e3
    warm = []
    tw = time.perf_counter()
    while len(warm) < a.warmup or time.perf_counter() - tw < a.warmup_seconds:
        t = time.perf_counter()
        sess.run(None, feeds)
        warm.append((time.perf_counter() - t) * 1e3)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    samples = []
    tt = time.perf_counter()
    for _ in range(a.runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        samples.append((time.perf_counter() - t) * 1e3)
    wall = time.perf_counter() - tt
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    json.dump(
        {
            "engine": "onnxruntime",
            "version": ort.__version__,
            "threads": a.threads,
            "load_ms": load_ms,
            "first_run_ms": first,
            "warmup_ms": warm,
            "samples_ms": samples,
            "timed_wall_s": wall,
            "rss_baseline_bytes": baseline,
            "rss_after_load_bytes": after_load,
            "hwm_bytes": status_bytes("VmHWM"),
            "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        },
        open(a.result, "w"),
    )


if __name__ == "__main__":
    sys.exit(main())
