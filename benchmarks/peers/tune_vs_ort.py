"""The headline comparison: what `edgekit tune` picks vs ONNX Runtime's best int8, on the real-size models at their
real input sizes, at the same fidelity.

For each model (benchmarks/realsize.py): ONNX Runtime's int8 variants are built first — QDQ per-channel with int8
(S8S8) and uint8 (U8S8) activations on the same 32 calibration samples for the CNNs, ``quantize_dynamic`` for the
encoder — and each one's SQNR against eager fp32 is measured on 16 held-out inputs. Then ``edgekit tune`` runs with
its defaults as a user would (pruning included) and ``--min-sqnr`` set to the best ORT variant's SQNR, objective p50,
1 thread, on the same calibration and held-out data. The tuned program's SQNR against the model handed in is then
computed here, from the ``.pte`` run in the ExecuTorch runtime and the eager model, not taken from tune's manifest,
and no win is called below the peer's fidelity. Finally the tuned program and every ORT variant are measured side by
side in interleaved rounds (native runner vs ort_worker.py, same warm-up, runs and RSS readings); per-round p50s
that overlap are a tie.

    .venv/bin/pip install -e '.[peers]' && .venv/bin/python benchmarks/peers/tune_vs_ort.py [--models ...] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

CALIB, HELD = 32, 16


def data(model: str, example: tuple, tmp: Path) -> tuple[Path, Path]:
    import numpy as np

    rng = np.random.default_rng(1)
    paths = []
    for name, n in (("calib", CALIB), ("held", HELD)):
        p = tmp / f"{model}_{name}.npz"
        if len(example) > 1:
            ids = rng.integers(1000, 30000, (n, example[0].shape[1]))
            np.savez(p, x0=ids, x1=np.ones_like(ids))
        else:
            np.savez(p, x=rng.standard_normal((n, *example[0].shape[1:])).astype(np.float32))
        paths.append(p)
    return paths[0], paths[1]


def fidelity(ref, got) -> dict:
    import numpy as np

    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = float(((got - ref) ** 2).sum())
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {
        "sqnr": math.inf if noise == 0 else 10 * math.log10(float((ref**2).sum()) / noise),
        "cos_min": float(cos.min()),
    }


def ort_variants(model: str, net, example: tuple, calib: Path, held: Path, tmp: Path) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    from benchmarks.peers.onnxruntime_compare import export_onnx, quantize_ort

    names = ["input_ids", "attention_mask"] if len(example) > 1 else ["x"]
    fp32 = tmp / f"{model}.onnx"
    if len(example) > 1:
        torch.onnx.export(net, example, str(fp32), dynamo=True, input_names=names)
    else:
        export_onnx(net, example[0], fp32)
    with np.load(calib) as z, np.load(held) as h:
        cal = {k: z[k] for k in z.files}
        hold = {k: h[k] for k in h.files}
    out = {}
    if len(example) > 1:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for pc in (False, True):
            q = tmp / f"{model}_dyn_{pc}.onnx"
            quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=pc)
            out[f"ORT quantize_dynamic{' per-channel' if pc else ''}"] = q
    else:
        for act in ("int8", "uint8"):
            q = tmp / f"{model}_{act}.onnx"
            quantize_ort(fp32, q, cal["x"], act)
            out[f"ORT QDQ {'S8S8' if act == 'int8' else 'U8S8'}"] = q
    with torch.no_grad():
        eager = [net(*[torch.from_numpy(hold[k][i : i + 1]) for k in sorted(hold)]).numpy() for i in range(HELD)]
    result = {}
    for label, path in out.items():
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = [
            dict(zip([i.name for i in sess.get_inputs()], [hold[k][i : i + 1] for k in sorted(hold)]))
            for i in range(HELD)
        ]
        got = [sess.run(None, f)[0] for f in feeds]
        result[label] = {"path": path, **fidelity(np.concatenate(eager), np.concatenate(got))}
    return result


def own_fidelity(pte: Path, net, held: Path) -> dict:
    """The tuned program against the model handed in (eager ``net``), measured here on the held-out inputs."""
    import numpy as np
    import torch

    from edgekit.program import InProcessProgram

    program = InProcessProgram(pte)
    with np.load(held) as h:
        hold = {k: h[k] for k in h.files}
    ref, got = [], []
    with torch.no_grad():
        for i in range(HELD):
            x = tuple(torch.from_numpy(hold[k][i : i + 1]) for k in sorted(hold))
            ref.append(net(*x).numpy())
            got.append(program.run(x)[0].numpy())
    return fidelity(np.concatenate(ref), np.concatenate(got))


#: the slack tune's budget allows below the peer's SQNR (the budget is the peer's SQNR minus this)
SLACK_DB = 0.05


def verdict(ours: list[float], theirs: list[float], own_sqnr: float, peer_sqnr: float) -> str:
    """WINS / LOSES / TIE on the per-round p50s, or no verdict when edgekit's program is less faithful than the peer."""
    if own_sqnr < peer_sqnr - SLACK_DB:
        return (
            f"NO VERDICT: edgekit's program is less faithful to the model than the peer ({own_sqnr:.1f} vs "
            f"{peer_sqnr:.1f} dB), so its speed is not comparable"
        )
    if min(ours) <= max(theirs) and min(theirs) <= max(ours):
        return "TIE: the per-round p50s overlap (a difference within round-to-round noise)"
    return "edgekit WINS" if statistics.median(ours) < statistics.median(theirs) else "edgekit LOSES"


def main() -> None:
    import edgekit
    from benchmarks import realsize
    from benchmarks.peers.onnxruntime_compare import run_ort_file
    from edgekit.machine import machine_facts
    from edgekit.tune import Budget, TuneOptions, tune

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,resnet18,mobilenet_v3_small,minilm_encoder")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--cache", default=str(ROOT / ".edgekit" / "cache" / "builds"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tune_vs_ort.txt"))
    args = ap.parse_args()
    f = machine_facts()
    lines = [
        f"# edgekit tune vs ONNX Runtime's best int8 — {f['cpu_model']}, {f['os']}; torch {f['torch']}, executorch "
        f"{f['executorch']}; 1 thread, {args.runs} runs, median p50 of {args.rounds} interleaved rounds; fidelity: SQNR and "
        f"worst cosine vs eager fp32 on {HELD} held-out inputs; tune's budget = the best ORT variant's SQNR"
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for model in args.models.split(","):
            net, example = realsize.MODELS[model]()
            calib, held = data(model, example, tmp)
            orts = ort_variants(model, net, example, calib, held, tmp)
            floor = max(v["sqnr"] for v in orts.values())
            res = tune(
                f"{ROOT / 'benchmarks' / 'realsize.py'}:{model}",
                calibration=calib,
                eval=held,
                out=tmp / f"{model}_tuned",
                base_target="xnnpack-int8-dynamic" if len(example) > 1 else "xnnpack-int8",
                budget=Budget(min_sqnr_db=round(floor - SLACK_DB, 2)),
                force=True,
                options=TuneOptions(runs=args.runs, cache=args.cache),
            )
            own = own_fidelity(res.out_dir / "model.pte", net, held)
            pick = res.manifest.tune.decision.split(":")[0]
            measured: dict[str, list] = {}
            for _ in range(args.rounds):
                p = edgekit.profile(res.out_dir, inputs=held, runs=args.runs, threads=1)
                measured.setdefault(f"edgekit tune → {pick}", []).append((p.latency_ms.p50, p.memory.peak_rss_mb))
                for label, o in orts.items():
                    r = run_ort_file(o["path"], held, 1, args.runs, tmp)
                    measured.setdefault(label, []).append((r["p50"], r["peak_rss_mb"]))
            et_label = f"edgekit tune → {pick}"
            fid = {et_label: own, **orts}
            lines += [
                "",
                f"## {model} (SQNR and cosine: each program against the eager model handed in, computed here)",
                f"{'variant':<52}{'p50 ms':>9}{'peak RSS':>10}{'SQNR dB':>9}{'cos min':>9}",
            ]
            for label, ms in measured.items():
                lines.append(
                    f"{label:<52}{statistics.median(m[0] for m in ms):>9.3f}{statistics.median(m[1] for m in ms):>10.1f}"
                    f"{fid[label]['sqnr']:>9.1f}{fid[label]['cos_min']:>9.4f}"
                )
            et = statistics.median(m[0] for m in measured[et_label])
            best = min(orts, key=lambda k: statistics.median(m[0] for m in measured[k]))
            ob = statistics.median(m[0] for m in measured[best])
            ours, theirs = [m[0] for m in measured[et_label]], [m[0] for m in measured[best]]
            asked = round(floor - SLACK_DB, 2)
            lines.append(
                f"  fidelity: asked SQNR ≥ {asked} dB; the tuned program has {own['sqnr']:.2f} dB against the model "
                f"handed in ({own['sqnr'] - asked:+.2f} dB; tune's own verify: {res.manifest.verify.sqnr_db} dB)"
            )
            lines.append(
                f"→ {verdict(ours, theirs, own['sqnr'], orts[best]['sqnr'])}: {et:.3f} vs {ob:.3f} ms ({best}), "
                f"ratio {ob / et:.3f}×; per round: edgekit "
                + ", ".join(f"{m[0]:.3f}" for m in measured[et_label])
                + f"; {best} "
                + ", ".join(f"{m[0]:.3f}" for m in measured[best])
            )
            lines.append(f"  tune: {res.manifest.tune.decision}")
            for c in res.manifest.tune.candidates:
                p50 = "–" if c.p50_ms is None else f"{c.p50_ms:.3f}"
                sq = "–" if c.sqnr_db is None else f"{c.sqnr_db:.1f}"
                low = "" if c.lowering_sqnr_db is None else f" (vs the pruned model {c.lowering_sqnr_db:.1f})"
                lines.append(
                    f"    {c.name:<44}{c.status:<8} p50 {p50:>7}  SQNR vs your model {sq:>6}{low}  {c.reason[:110]}"
                )
            lines += [f"    {n}" for n in res.notes]
            print("\n".join(lines), flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
