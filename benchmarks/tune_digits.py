"""`edgekit tune` on the digits CNN with real labels: --max-accuracy-drop 0.005 with recovery fine-tuning data; is
its pick faster than the plain xnnpack-int8 program? Measured side by side in interleaved rounds (native runner,
1 thread), Mann-Whitney on the raw samples.

    .venv/bin/python benchmarks/tune_digits.py [--rounds 5] [--runs 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    from scipy.stats import mannwhitneyu

    import edgekit
    from edgekit.demo import load_digits_split, write_digits_files
    from edgekit.tune import Budget, TuneOptions, tune

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = load_digits_split()
        write_digits_files(tmp, data)
        spec = f"{HERE / 'models.py'}:digits_cnn"
        res = tune(
            spec,
            calibration=tmp / "calib.npz",
            eval=tmp / "test.npz",
            finetune=tmp / "train.npz",
            out=tmp / "tuned",
            budget=Budget(max_accuracy_drop=0.005),
            options=TuneOptions(runs=args.runs, cache=tmp / "cache"),
        )
        base = edgekit.build(
            spec, "xnnpack-int8", calibration=tmp / "calib.npz", eval=tmp / "test.npz", out=tmp / "int8"
        )
        a, b = [], []
        for _ in range(args.rounds):
            a += edgekit.profile(res.out_dir, runs=args.runs, threads=1).samples_ms
            b += edgekit.profile(base.out_dir, runs=args.runs, threads=1).samples_ms
        p = mannwhitneyu(a, b, alternative="less").pvalue
    t = res.manifest.tune
    lines = [
        "# edgekit tune on the digits CNN (scikit-learn digits, 360 labelled held-out images), --max-accuracy-drop "
        f"0.005, --finetune on the training split; 1 thread, {args.runs} runs, {args.rounds} interleaved rounds",
        f"{'candidate':<46}{'status':<8}{'p50 ms':>9}{'size KiB':>10}{'acc. drop':>10}",
    ]
    for c in t.candidates:
        p50 = "–" if c.p50_ms is None else f"{c.p50_ms:.4f}"
        size = "–" if c.size_bytes is None else f"{c.size_bytes / 1024:.1f}"
        drop = "–" if c.accuracy_drop is None else f"{c.accuracy_drop:+.4f}"
        why = f"  ({c.reason})" if c.status in ("failed", "over", "skipped") else ""
        lines.append(f"{c.name:<46}{c.status:<8}{p50:>9}{size:>10}{drop:>10}{why}")
    acc, base_acc = res.manifest.verify.accuracy, base.manifest.verify.accuracy
    lines += [
        f"decision: {t.decision}",
        f"pick vs xnnpack-int8: p50 {statistics.median(a):.4f} vs {statistics.median(b):.4f} ms "
        f"({statistics.median(b) / statistics.median(a):.2f}× faster; Mann-Whitney p = {p:.2g}); pick accuracy "
        f"{_pct(acc, 'program')} (original eager {_pct(acc, 'eager')}), xnnpack-int8 {_pct(base_acc, 'program')}",
    ]
    text = "\n".join(lines)
    print(text)
    (HERE / "results" / "tune_digits.txt").write_text(text + "\n")


def _pct(acc, field: str) -> str:
    return "not measured" if acc is None else f"{getattr(acc, field):.2%}"


if __name__ == "__main__":
    main()
