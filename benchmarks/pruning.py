"""Pruning that pays, measured: dense vs 50% structured programs, side by side in one run.

* Digits CNN (trained on scikit-learn's digits): dense int8 vs 50% channels + 5-epoch fine-tune + int8;
  accuracy on the 360 held-out images through the .pte files. Target: within 1 point of dense.
* Residual CNN (~1 M parameters, 1x3x128x128): dense vs 50% channels, fp32 and int8.
  Target: at least 2x faster (p50) on the residual CNN.

p50s are medians over interleaved profiling rounds (native engine, 1 thread).

    .venv/bin/python benchmarks/pruning.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import edgekit  # noqa: E402
from edgekit.machine import machine_facts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    from edgekit.demo import digits_cnn, load_digits_split, train, write_digits_files
    from edgekit.models import LoadedModel, contiguous

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = load_digits_split()
        write_digits_files(tmp, data)
        model, example = digits_cnn()
        train(model, data["x_train"], data["y_train"], epochs=15)
        digits = LoadedModel("digits_cnn (trained)", model, contiguous((example,)))
        int8 = edgekit.load_target("xnnpack-int8")
        fp32 = edgekit.load_target("xnnpack-fp32")
        half = dict(prune__structured_ratio=0.5, prune__round_to=8)
        jobs = [
            ("digits CNN", "dense int8", digits, int8, {}),
            (
                "digits CNN",
                "50% + fine-tune, int8",
                digits,
                int8.replace(name="pruned", **half),
                {"finetune": tmp / "train.npz", "finetune_epochs": 5},
            ),
            ("digits CNN", "50%, no fine-tune, int8", digits, int8.replace(name="pruned-raw", **half), {}),
            ("residual CNN", "dense fp32", f"{HERE / 'models.py'}:residual_cnn", fp32, {}),
            ("residual CNN", "50% fp32", f"{HERE / 'models.py'}:residual_cnn", fp32.replace(name="p", **half), {}),
            ("residual CNN", "dense int8", f"{HERE / 'models.py'}:residual_cnn", int8, {}),
            ("residual CNN", "50% int8", f"{HERE / 'models.py'}:residual_cnn", int8.replace(name="p8", **half), {}),
        ]
        builds = []
        for i, (model_name, variant, spec, target, extra) in enumerate(jobs):
            is_digits = model_name.startswith("digits")
            res = edgekit.build(
                spec,
                target.replace(budget__max_accuracy_drop=None),
                out=tmp / f"b{i}",
                force=True,
                calibration=tmp / "calib.npz" if is_digits else None,
                eval=tmp / "test.npz" if is_digits else None,
                **extra,
            )
            builds.append((model_name, variant, res))
        p50s: dict[int, list[float]] = {i: [] for i in range(len(builds))}
        for _ in range(args.rounds):
            for i, (_, _, res) in enumerate(builds):
                p50s[i].append(
                    edgekit.profile(
                        res.out_dir, runs=args.runs, warmup=20, warmup_seconds=0.3, threads=1
                    ).latency_ms.p50
                )
        for i, (model_name, variant, res) in enumerate(builds):
            m = res.manifest
            p = m["prune"]
            acc = m["verify"].get("accuracy", {}).get("program")
            rows.append(
                {
                    "model": model_name,
                    "variant": variant,
                    "params": p.get("params_after"),
                    "macs": p.get("macs_after"),
                    "size_kib": m["program"]["size_bytes"] / 1024,
                    "p50_ms": statistics.median(p50s[i]),
                    "accuracy": acc,
                    "prune": p,
                }
            )
    # dense figures for params/MACs come from the pruned rows' "before"
    for r in rows:
        if r["params"] is None:
            twin = next(x for x in rows if x["model"] == r["model"] and x["prune"].get("params_before"))
            r["params"], r["macs"] = twin["prune"]["params_before"], twin["prune"]["macs_before"]
    f = machine_facts()
    print(
        f"# pruning — {f['cpu_model']}, {f['cores_logical']} cores, executorch {f['executorch']}, native engine, 1 thread, "
        f"median p50 of {args.rounds} interleaved rounds × {args.runs} runs"
    )
    print(
        f"{'model':<14}{'variant':<26}{'params':>10}{'MACs':>13}{'size KiB':>10}{'p50 ms':>10}{'speed-up':>10}{'accuracy':>10}"
    )
    dense = {}
    for r in rows:
        key = (r["model"], "int8" if "int8" in r["variant"] else "fp32")
        if r["variant"].startswith("dense"):
            dense[key] = r["p50_ms"]
        speed = dense[key] / r["p50_ms"] if key in dense else float("nan")
        acc = f"{r['accuracy']:.2%}" if r["accuracy"] is not None else "–"
        print(
            f"{r['model']:<14}{r['variant']:<26}{r['params']:>10,}{r['macs']:>13,}{r['size_kib']:>10.1f}{r['p50_ms']:>10.4f}"
            f"{speed:>9.2f}×{acc:>10}"
        )
    res_speed = dense[("residual CNN", "fp32")] / next(r["p50_ms"] for r in rows if r["variant"] == "50% fp32")
    d_dense = next(r["accuracy"] for r in rows if r["variant"] == "dense int8" and r["model"].startswith("digits"))
    d_ft = next(r["accuracy"] for r in rows if r["variant"].startswith("50% + fine-tune"))
    print(
        f"target ≥2× on the residual CNN (fp32): {'MET' if res_speed >= 2 else 'NOT MET'} ({res_speed:.2f}×); "
        f"digits accuracy within 1 point of dense after fine-tuning: {'MET' if d_dense - d_ft <= 0.01 else 'NOT MET'} "
        f"({d_dense:.2%} → {d_ft:.2%})"
    )


if __name__ == "__main__":
    main()
