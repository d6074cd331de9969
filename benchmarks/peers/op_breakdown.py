"""Where the time goes, side by side: ExecuTorch's per-operator times (ETDump through edgekit's profiler, XNNPACK's
own operators inside the delegate) beside ONNX Runtime's (its session profiler, grouped by node op type), on the
real-size models, so a remaining gap has a name ("depthwise conv: 2.1 ms vs 1.4 ms").

Both sides are grouped into the same categories: convolutions split by kind (depthwise, 1x1, k x k, read from
XNNPACK's operator names and from the ONNX nodes' weights and groups), fully connected / matmul, pooling,
element-wise, activations, softmax, layer norm, quantize/convert, layout copies, and portable operators.
ExecuTorch: xnnpack-int8 (static, per-channel) for the CNNs, xnnpack-int8-dynamic for the encoder. ONNX Runtime:
QDQ per-channel with uint8 activations (U8S8, its faster int8 variant on x86) on the same calibration samples for
the CNNs, ``quantize_dynamic`` for the encoder. 1 thread.

    .venv/bin/pip install -e '.[peers]' && .venv/bin/python benchmarks/peers/op_breakdown.py [--models ...] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

CALIB = 32
#: XNNPACK runs 1x1 convolutions as fully connected GEMMs (NHWC), so the two are one category on both sides
GEMM = "1x1 conv + linear (GEMM)"


def et_category(name: str, kind: str) -> str:
    if kind == "operator":
        return "portable: " + re.sub(r"^native_call_|\.out$", "", name)
    rules = [
        ("DWConv", "depthwise conv"),
        (r"Convolution.*IGEMM", "conv k x k"),
        (r"Convolution.*GEMM", GEMM),
        ("Convolution", "conv (other)"),
        ("Fully Connected", GEMM),
        ("Batch Matrix Multiply", "batch matmul"),
        (r"(Pooling|Mean)", "pooling / reduce"),
        ("Softmax", "softmax"),
        (r"^(Add|Multiply|Subtract|Divide|Maximum|Minimum|Square)", "element-wise"),
        (
            r"(HardSwish|Sigmoid|Clamp|ELU|GELU|Tanh|Leaky|Reciprocal Square Root|Square Root|Unary)",
            "activation / unary",
        ),
        (r"(Convert|Quantize|Dequantize)", "quantize / convert"),
        (r"(Transpose|Copy|Reshape|Constant Pad|Concatenate|Slice|Even Split)", "layout / copy"),
    ]
    for pattern, cat in rules:
        if re.search(pattern, name):
            return cat
    return "other: " + re.sub(r" #\d+$", "", name)


def ort_category(op: str, weight_shape: tuple | None, group: int, activations_only: bool = False) -> str:
    if op in ("QLinearConv", "Conv", "FusedConv", "NhwcConv", "NhwcFusedConv", "ConvInteger"):
        if weight_shape is None:
            return "conv (other)"
        out_c, k = weight_shape[0], tuple(weight_shape[2:])
        if group > 1 and group == out_c:
            return "depthwise conv"
        return GEMM if all(d == 1 for d in k) else "conv k x k"
    if op == "MatMul" and activations_only:
        return "batch matmul"
    table = {
        GEMM: (
            "MatMulInteger",
            "QLinearMatMul",
            "MatMul",
            "Gemm",
            "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat",
            "QGemm",
            "FusedMatMul",
        ),
        "pooling / reduce": (
            "QLinearGlobalAveragePool",
            "GlobalAveragePool",
            "MaxPool",
            "QLinearAveragePool",
            "AveragePool",
            "ReduceMean",
        ),
        "element-wise": ("Add", "QLinearAdd", "Mul", "QLinearMul", "Sub", "Div", "Pow", "Where", "Equal"),
        "activation / unary": (
            "HardSwish",
            "Sigmoid",
            "QLinearSigmoid",
            "Relu",
            "Clip",
            "Gelu",
            "FastGelu",
            "Erf",
            "Sqrt",
            "Tanh",
            "HardSigmoid",
            "BiasGelu",
            "QuickGelu",
            "Cast",
        ),
        "softmax": ("Softmax", "QLinearSoftmax"),
        "layer norm": ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"),
        "quantize / convert": ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"),
        "layout / copy": (
            "Transpose",
            "Reshape",
            "Concat",
            "Slice",
            "Squeeze",
            "Unsqueeze",
            "Flatten",
            "Shape",
            "Gather",
            "Expand",
            "Identity",
            "ReorderInput",
            "ReorderOutput",
            "QLinearConcat",
        ),
        "attention (fused)": ("Attention", "MultiHeadAttention"),
    }
    for cat, ops in table.items():
        if op in ops:
            return cat
    return f"other: {op}"


def et_side(model: str, tmp: Path, runs: int) -> dict:
    import numpy as np

    import edgekit
    from benchmarks import realsize

    _, example = realsize.MODELS[model]()
    target = "xnnpack-int8-dynamic" if len(example) > 1 else "xnnpack-int8"
    calib = tmp / f"{model}_calib.npz"
    if len(example) > 1:
        ids = np.random.default_rng(1).integers(1000, 30000, (CALIB, example[0].shape[1]))
        np.savez(calib, x0=ids, x1=np.ones_like(ids))
    else:
        np.savez(calib, x=np.random.default_rng(1).standard_normal((CALIB, *example[0].shape[1:])).astype(np.float32))
    res = edgekit.build(
        f"{ROOT / 'benchmarks' / 'realsize.py'}:{model}", target, out=tmp / f"{model}_et", calibration=calib, force=True
    )
    prof = edgekit.profile(res.out_dir, ops=True, runs=runs, threads=1)
    cats: dict[str, float] = defaultdict(float)
    for op in prof.ops["ops"]:
        if op["kind"] in ("delegate_op", "operator"):
            cats[et_category(op["name"], op["kind"])] += op["mean_ms"] * op["calls_per_run"]
    return {"p50": prof.latency_ms.p50, "categories": dict(cats), "target": target, "calib": calib}


def ort_side(model: str, tmp: Path, calib: Path, runs: int) -> dict:
    import contextlib
    import io
    import warnings

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from benchmarks import realsize
    from benchmarks.peers.onnxruntime_compare import quantize_ort

    net, example = realsize.MODELS[model]()
    names = ["input_ids", "attention_mask"] if len(example) > 1 else ["x"]
    fp32 = tmp / f"{model}.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, example, str(fp32), dynamo=True, input_names=names)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,resnet18,mobilenet_v3_small,minilm_encoder")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    lines = [
        "# per-operator time, ExecuTorch (ETDump, XNNPACK's operators) vs ONNX Runtime (session profiler), 1 thread, "
        f"ms per run, mean of {args.runs} runs; operator timing adds overhead on both sides, so the totals exceed p50"
    ]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for model in args.models.split(","):
            et = et_side(model, tmp, args.runs)
            ort = ort_side(model, tmp, et["calib"], args.runs)
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
    (ROOT / "benchmarks" / "results" / "op_breakdown.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
