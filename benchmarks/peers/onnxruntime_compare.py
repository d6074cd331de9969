"""ExecuTorch (through edgekit) vs ONNX Runtime, side by side, same models, same rules: end to end, or with ``--ops``
operator type by operator type.

Why one file past 400 lines: it is one job, the two runtimes side by side, seen two ways that share the ONNX side's
quantization and rules; the per-operator view's category tables (XNNPACK's operator names and ONNX Runtime's node
types mapped to the same rows) are most of the length.

Needs the optional ``peers`` extra: ``.venv/bin/pip install -e '.[peers]'`` (onnxruntime, onnx, onnxscript).

End to end (``benchmarks/results/onnxruntime_compare.txt``), for each model of benchmarks/models.py:
  * ExecuTorch: edgekit builds xnnpack-fp32 and xnnpack-int8 (PT2E static, per-channel, calibrated) and
    profiles each with both of its engines (native C++ runner; Python pybindings worker);
  * ONNX Runtime: the same eager model exported to ONNX (fp32), and quantized with ORT's quantize_static
    (QDQ, per-channel weights, the same calibration samples) with int8 activations (ORT's default) and with
    uint8 activations; ORT runs in its own Python process with the same threads, warm-up, runs and RSS
    readings (benchmarks/peers/ort_worker.py), graph optimisations on, sequential execution.
The int8 comparison is against ORT's best int8 variant on each model, never a straw man.

Where the time goes (``--ops``, ``benchmarks/results/op_breakdown.txt``), on the real-size models
(benchmarks/realsize.py), so a remaining gap has a name ("depthwise conv: 2.1 ms vs 1.4 ms"): ExecuTorch's
per-operator times (ETDump through edgekit's profiler, XNNPACK's own operators inside the delegate) beside ONNX
Runtime's (its session profiler, grouped by node op type), both grouped into the same categories: convolutions split
by kind (depthwise, 1x1, k x k, read from XNNPACK's operator names and from the ONNX nodes' weights and groups), fully
connected / matmul, pooling, element-wise, activations, softmax, layer norm, quantize/convert, layout copies, and
portable operators. ExecuTorch: xnnpack-int8 (static, per-channel) for the CNNs, xnnpack-int8-dynamic for the
encoder. ONNX Runtime: QDQ per-channel with uint8 activations (U8S8, its faster int8 variant on x86) on the same
calibration samples for the CNNs, ``quantize_dynamic`` for the encoder. 1 thread.

    .venv/bin/python benchmarks/peers/onnxruntime_compare.py [--threads 1] [--runs 200] [--rounds 3]
    .venv/bin/python benchmarks/peers/onnxruntime_compare.py --ops [--models mobilenet_v2,...] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import edgekit  # noqa: E402
from edgekit.machine import machine_facts  # noqa: E402
from edgekit.profile.stats import summarize  # noqa: E402

MODELS = ("digits_cnn", "mobilenet_v2_small", "residual_cnn")
OPS_MODELS = ("mobilenet_v2", "resnet18", "mobilenet_v3_small", "minilm_encoder")  # --ops: benchmarks/realsize.py
RESULTS = ROOT / "benchmarks" / "results"
CALIB_SAMPLES = 64


def calibration(name: str, example: np.ndarray) -> np.ndarray:
    from benchmarks import models

    if name == "digits_cnn":
        return models.digits_calib()["x"][:CALIB_SAMPLES]
    # No data ships for these: the same seeded random samples feed both quantizers.
    return np.random.default_rng(1).standard_normal((CALIB_SAMPLES, *example.shape[1:])).astype(np.float32)


def export_onnx(model, x, path: Path, inputs: tuple | None = None, names: tuple = ("x",)) -> str:
    """``model`` to ONNX at ``path`` for the one input ``x`` (or the tuple ``inputs``, named ``names``), quietly: the
    exporter used, the dynamo one unless it fails."""
    import contextlib
    import io

    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each step
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, inputs or (x,), str(path), dynamo=True, input_names=list(names))
            return "torch.onnx.export(dynamo=True)"
        except Exception:  # fall back to the TorchScript exporter and say so
            torch.onnx.export(model, inputs or (x,), str(path), dynamo=False, input_names=list(names), opset_version=17)
            return "torch.onnx.export(dynamo=False, opset 17)"


def quantize_ort(fp32: Path, out: Path, calib: np.ndarray, activation: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8 if activation == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def run_ort(model: Path, x: np.ndarray, threads: int, runs: int, tmp: Path) -> dict:
    np.savez(tmp / "in.npz", x0=x)
    return run_ort_file(model, tmp / "in.npz", threads, runs, tmp)


def run_ort_file(model: Path, inputs: Path, threads: int, runs: int, tmp: Path) -> dict:
    """ONNX Runtime in its own process (ort_worker.py) on the first sample of each array in ``inputs`` (``x`` or
    ``x0, x1, ...`` in the session's input order): the exported graphs have the static batch of 1."""
    with np.load(inputs) as z:
        np.savez(tmp / "ort_in.npz", **{("x0" if k == "x" else k): z[k][:1] for k in z.files})
    r = subprocess.run(
        [
            sys.executable,
            str(HERE / "ort_worker.py"),
            str(model),
            str(tmp / "ort_in.npz"),
            str(tmp / "ort.json"),
            "--threads",
            str(threads),
            "--runs",
            str(runs),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode:
        raise SystemExit(f"ort_worker failed on {model.name}: {r.stderr.strip()[-400:]}")
    raw = json.loads((tmp / "ort.json").read_text())
    return {
        "p50": summarize(raw["samples_ms"]).p50,
        "peak_rss_mb": raw["hwm_bytes"] / 2**20,
        "peak_delta_mb": (raw["hwm_bytes"] - raw["rss_baseline_bytes"]) / 2**20,
        "version": raw["version"],
    }


def run_et(pkg: Path, engine: str, threads: int, runs: int) -> dict:
    p = edgekit.profile(pkg, engine=engine, threads=threads, runs=runs, warmup=20, warmup_seconds=0.2)
    return {"p50": p.latency_ms.p50, "peak_rss_mb": p.memory.peak_rss_mb, "peak_delta_mb": p.memory.peak_delta_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", action="store_true", help="per-operator-type time on the real-size models instead")
    ap.add_argument("--models", help=f"comma-separated (default {','.join(MODELS)}; with --ops {','.join(OPS_MODELS)})")
    ap.add_argument("--threads", type=int, default=1, help="end to end only (--ops runs 1 thread)")
    ap.add_argument("--runs", type=int, help="timed runs (default 200; with --ops 50)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, end to end only")
    ap.add_argument("--out", help="default benchmarks/results/onnxruntime_compare.txt (with --ops op_breakdown.txt)")
    args = ap.parse_args()
    if args.ops:
        models = args.models.split(",") if args.models else list(OPS_MODELS)
        op_breakdown(models, args.runs or 50, Path(args.out or RESULTS / "op_breakdown.txt"))
        return
    args.runs = args.runs or 200
    args.out = args.out or str(RESULTS / "onnxruntime_compare.txt")
    from benchmarks import models as bm

    table = []
    exporter = None
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.models.split(",") if args.models else MODELS:
            model, x = getattr(bm, name)()
            xn = x.numpy()
            calib = calibration(name, xn)
            np.savez(tmp / f"{name}_calib.npz", x=calib)
            variants: dict[str, tuple[str, Path, int]] = {}
            for target in ("xnnpack-fp32", "xnnpack-int8"):
                res = edgekit.build(
                    f"{ROOT / 'benchmarks' / 'models.py'}:{name}",
                    target,
                    out=tmp / f"{name}_{target}",
                    calibration=tmp / f"{name}_calib.npz" if target.endswith("int8") else None,
                    force=True,
                )
                variants[f"ExecuTorch {target.split('-')[1]}"] = (
                    "et",
                    res.out_dir,
                    res.manifest.program.size_bytes,
                )
            fp32 = tmp / f"{name}.onnx"
            exporter = export_onnx(model, x, fp32)
            variants["ORT fp32"] = ("ort", fp32, _onnx_size(fp32))
            for act in ("int8", "uint8"):
                q = tmp / f"{name}_{act}.onnx"
                quantize_ort(fp32, q, calib, act)
                variants[f"ORT int8 (QDQ, {act} act.)"] = ("ort", q, _onnx_size(q))
            measured: dict[str, list[dict]] = {}
            for _ in range(args.rounds):  # interleaved rounds: drift hits every variant alike
                for label, (kind, path, _size) in variants.items():
                    if kind == "et":
                        for engine in ("native", "python"):
                            measured.setdefault(f"{label} [{engine}]", []).append(
                                run_et(path, engine, args.threads, args.runs)
                            )
                    else:
                        measured.setdefault(label, []).append(run_ort(path, xn, args.threads, args.runs, tmp))
            sizes = {label: size for label, (_, _, size) in variants.items()}
            for label, ms in measured.items():
                base_label = label.split(" [")[0]
                table.append(
                    {
                        "model": name,
                        "variant": label,
                        "p50": statistics.median(m["p50"] for m in ms),
                        "peak_rss_mb": statistics.median(m["peak_rss_mb"] for m in ms),
                        "peak_delta_mb": statistics.median(m["peak_delta_mb"] for m in ms),
                        "size_kib": sizes[base_label] / 1024,
                        "version": ms[0].get("version"),
                    }
                )
    lines = _format(table, args, exporter)
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


def _onnx_size(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _format(table: list[dict], args: argparse.Namespace, exporter: str | None) -> list[str]:
    import onnxruntime

    f = machine_facts()
    lines = [
        f"# ExecuTorch (edgekit) vs ONNX Runtime — {f['cpu_model']}, {f['cores_logical']} cores, {f['os']}",
        f"# torch {f['torch']}, executorch {f['executorch']}, onnxruntime {onnxruntime.__version__}, ONNX via {exporter}; "
        f"{args.threads} thread(s), {args.runs} timed runs after warm-up, median of {args.rounds} interleaved rounds",
        "# peak RSS: VmHWM of the measuring process; Δ: above its own baseline after imports (Python+onnxruntime for ORT,",
        "#   nothing for the native runner, Python+torch for the ExecuTorch python engine)",
        f"{'model':<20}{'variant':<38}{'p50 ms':>9}{'peak RSS':>10}{'Δ RSS':>8}{'size KiB':>10}{'p50 vs ET':>11}",
    ]
    for model in dict.fromkeys(r["model"] for r in table):
        rows = [r for r in table if r["model"] == model]
        et = {
            prec: next(r["p50"] for r in rows if r["variant"] == f"ExecuTorch {prec} [native]")
            for prec in ("fp32", "int8")
        }
        for r in rows:
            prec = "int8" if "int8" in r["variant"] else "fp32"
            rel = r["p50"] / et[prec]
            lines.append(
                f"{model:<20}{r['variant']:<38}{r['p50']:>9.4f}{r['peak_rss_mb']:>10.1f}{r['peak_delta_mb']:>8.1f}"
                f"{r['size_kib']:>10.1f}{rel:>10.2f}×"
            )
        best_ort8 = min((r for r in rows if r["variant"].startswith("ORT int8")), key=lambda r: r["p50"])
        lines.append(
            f"{'':<20}int8: ExecuTorch native {et['int8']:.4f} ms vs ORT's best ({best_ort8['variant']}) "
            f"{best_ort8['p50']:.4f} ms → ExecuTorch is {best_ort8['p50'] / et['int8']:.2f}× "
            f"{'faster' if best_ort8['p50'] > et['int8'] else 'slower (ratio < 1)'}"
        )
    return lines


# ----------------------------------------------------------------------------------------- --ops: where the time goes
OPS_CALIB = 32
#: XNNPACK runs 1x1 convolutions as fully connected GEMMs (NHWC), so the two are one category on both sides
GEMM = "1x1 conv + linear (GEMM)"
ET_RULES = [  # XNNPACK operator name (regex) → category, first match wins
    ("DWConv", "depthwise conv"),
    (r"Convolution.*IGEMM", "conv k x k"),
    (r"Convolution.*GEMM", GEMM),
    ("Convolution", "conv (other)"),
    ("Fully Connected", GEMM),
    ("Batch Matrix Multiply", "batch matmul"),
    (r"(Pooling|Mean)", "pooling / reduce"),
    ("Softmax", "softmax"),
    (r"^(Add|Multiply|Subtract|Divide|Maximum|Minimum|Square)", "element-wise"),
    (r"(HardSwish|Sigmoid|Clamp|ELU|GELU|Tanh|Leaky|Reciprocal Square Root|Square Root|Unary)", "activation / unary"),
    (r"(Convert|Quantize|Dequantize)", "quantize / convert"),
    (r"(Transpose|Copy|Reshape|Constant Pad|Concatenate|Slice|Even Split)", "layout / copy"),
]
ORT_OPS = {  # category → ONNX Runtime node op types (convolutions are sorted by their weights in ort_category)
    GEMM: "MatMulInteger QLinearMatMul MatMul Gemm DynamicQuantizeMatMul MatMulIntegerToFloat QGemm FusedMatMul",
    "pooling / reduce": "QLinearGlobalAveragePool GlobalAveragePool MaxPool QLinearAveragePool AveragePool ReduceMean",
    "element-wise": "Add QLinearAdd Mul QLinearMul Sub Div Pow Where Equal",
    "activation / unary": "HardSwish Sigmoid QLinearSigmoid Relu Clip Gelu FastGelu Erf Sqrt Tanh HardSigmoid BiasGelu "
    "QuickGelu Cast",
    "softmax": "Softmax QLinearSoftmax",
    "layer norm": "LayerNormalization SkipLayerNormalization SimplifiedLayerNormalization",
    "quantize / convert": "QuantizeLinear DequantizeLinear DynamicQuantizeLinear",
    "layout / copy": "Transpose Reshape Concat Slice Squeeze Unsqueeze Flatten Shape Gather Expand Identity ReorderInput "
    "ReorderOutput QLinearConcat",
    "attention (fused)": "Attention MultiHeadAttention",
}
ORT_CONVS = ("QLinearConv", "Conv", "FusedConv", "NhwcConv", "NhwcFusedConv", "ConvInteger")


def et_category(name: str, kind: str) -> str:
    if kind == "operator":
        return "portable: " + re.sub(r"^native_call_|\.out$", "", name)
    return next((cat for pattern, cat in ET_RULES if re.search(pattern, name)), "other: " + re.sub(r" #\d+$", "", name))


def ort_category(op: str, weight_shape: tuple | None, group: int, activations_only: bool = False) -> str:
    if op in ORT_CONVS:
        if weight_shape is None:
            return "conv (other)"
        out_c, k = weight_shape[0], tuple(weight_shape[2:])
        if group > 1 and group == out_c:
            return "depthwise conv"
        return GEMM if all(d == 1 for d in k) else "conv k x k"
    if op == "MatMul" and activations_only:
        return "batch matmul"
    return next((cat for cat, ops in ORT_OPS.items() if op in ops.split()), f"other: {op}")


def et_ops_side(model: str, tmp: Path, runs: int) -> dict:
    from benchmarks import realsize

    _, example = realsize.MODELS[model]()
    target = "xnnpack-int8-dynamic" if len(example) > 1 else "xnnpack-int8"
    calib = tmp / f"{model}_calib.npz"
    if len(example) > 1:
        ids = np.random.default_rng(1).integers(1000, 30000, (OPS_CALIB, example[0].shape[1]))
        np.savez(calib, x0=ids, x1=np.ones_like(ids))
    else:
        shape = (OPS_CALIB, *example[0].shape[1:])
        np.savez(calib, x=np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    res = edgekit.build(
        f"{ROOT / 'benchmarks' / 'realsize.py'}:{model}", target, out=tmp / f"{model}_et", calibration=calib, force=True
    )
    prof = edgekit.profile(res.out_dir, ops=True, runs=runs, threads=1)
    cats: dict[str, float] = defaultdict(float)
    for op in prof.ops["ops"]:
        if op["kind"] in ("delegate_op", "operator"):
            cats[et_category(op["name"], op["kind"])] += op["mean_ms"] * op["calls_per_run"]
    return {"p50": prof.latency_ms.p50, "categories": dict(cats), "target": target, "calib": calib}


def ort_ops_side(model: str, tmp: Path, calib: Path, runs: int) -> dict:
    import onnx
    import onnxruntime as ort

    from benchmarks import realsize

    net, example = realsize.MODELS[model]()
    names = ("input_ids", "attention_mask") if len(example) > 1 else ("x",)
    fp32 = tmp / f"{model}.onnx"
    export_onnx(net, None, fp32, inputs=tuple(example), names=names)
    q = tmp / f"{model}_q.onnx"
    with np.load(calib) as z:
        data = {k: z[k] for k in z.files}
    if len(example) > 1:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=True)
    else:
        quantize_ort(fp32, q, data["x"], "uint8")
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp / f"{model}_opt.onnx")
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp / f"{model}_ort")
    sess = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
    feeds = {
        i.name: (data[f"x{k}"][:1] if len(example) > 1 else data["x"][:1]) for k, i in enumerate(sess.get_inputs())
    }
    for _ in range(runs):
        sess.run(None, feeds)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    shapes, groups, act_matmuls = _conv_info(onnx.load(str(tmp / f"{model}_opt.onnx"), load_external_data=False))
    cats: dict[str, float] = defaultdict(float)
    for ev in trace:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        node = ev["name"][: -len("_kernel_time")]
        cat = ort_category(ev["args"].get("op_name", "?"), shapes.get(node), groups.get(node, 1), node in act_matmuls)
        cats[cat] += ev["dur"] / 1000 / runs
    return {"categories": dict(cats)}


def _conv_info(model) -> tuple[dict, dict, set]:
    """Node name → weight shape and group, for the convolutions of the optimized ONNX graph; and the MatMuls of two
    activations (attention's), which are batch matmuls, not linears."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    shapes, groups = {}, {}
    act_matmuls = {n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in inits for i in n.input)}
    for n in model.graph.node:
        if "Conv" not in n.op_type:
            continue
        w = n.input[3] if n.op_type == "QLinearConv" else (n.input[1] if len(n.input) > 1 else None)
        shapes[n.name] = inits.get(w)
        groups[n.name] = next((a.i for a in n.attribute if a.name == "group"), 1)
    return shapes, groups, act_matmuls


def op_breakdown(models: list[str], runs: int, out: Path) -> None:
    lines = [
        "# per-operator time, ExecuTorch (ETDump, XNNPACK's operators) vs ONNX Runtime (session profiler), 1 thread, "
        f"ms per run, mean of {runs} runs; operator timing adds overhead on both sides, so the totals exceed p50"
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for model in models:
            et = et_ops_side(model, tmp, runs)
            ort = ort_ops_side(model, tmp, et["calib"], runs)
            cats = sorted(
                set(et["categories"]) | set(ort["categories"]),
                key=lambda c: -max(et["categories"].get(c, 0), ort["categories"].get(c, 0)),
            )
            lines += [
                "",
                f"## {model} (ExecuTorch {et['target']}, p50 {et['p50']:.3f} ms; ONNX Runtime int8)",
                f"{'category':<34}{'ExecuTorch':>11}{'ORT':>9}{'ET - ORT':>10}",
            ]
            for c in cats:
                a, b = et["categories"].get(c, 0.0), ort["categories"].get(c, 0.0)
                if max(a, b) < 0.005:
                    continue
                lines.append(f"{c:<34}{a:>11.3f}{b:>9.3f}{a - b:>+10.3f}")
            lines.append(
                f"{'total (sum of operators)':<34}{sum(et['categories'].values()):>11.3f}"
                f"{sum(ort['categories'].values()):>9.3f}"
            )
            print("\n".join(lines), flush=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
