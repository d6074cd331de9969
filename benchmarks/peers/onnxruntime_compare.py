"""ExecuTorch (through edgekit) vs ONNX Runtime, side by side, same models, same rules.

Needs the optional ``peers`` extra: ``.venv/bin/pip install -e '.[peers]'`` (onnxruntime, onnx, onnxscript).

For each model:
  * ExecuTorch: edgekit builds xnnpack-fp32 and xnnpack-int8 (PT2E static, per-channel, calibrated) and
    profiles each with both of its engines (native C++ runner; Python pybindings worker);
  * ONNX Runtime: the same eager model exported to ONNX (fp32), and quantized with ORT's quantize_static
    (QDQ, per-channel weights, the same calibration samples) with int8 activations (ORT's default) and with
    uint8 activations; ORT runs in its own Python process with the same threads, warm-up, runs and RSS
    readings (benchmarks/peers/ort_worker.py), graph optimisations on, sequential execution.
The int8 comparison is against ORT's best int8 variant on each model, never a straw man.

    .venv/bin/python benchmarks/peers/onnxruntime_compare.py [--threads 1] [--runs 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import edgekit  # noqa: E402
from edgekit.machine import machine_facts  # noqa: E402
from edgekit.profile.stats import summarize  # noqa: E402

MODELS = ("digits_cnn", "mobilenet_v2_small", "residual_cnn")
CALIB_SAMPLES = 64


def calibration(name: str, example: np.ndarray) -> np.ndarray:
    from benchmarks import models

    if name == "digits_cnn":
        return models.digits_calib()["x"][:CALIB_SAMPLES]
    # No data ships for these: the same seeded random samples feed both quantizers.
    return np.random.default_rng(1).standard_normal((CALIB_SAMPLES, *example.shape[1:])).astype(np.float32)


def export_onnx(model, x, path: Path) -> str:
    import contextlib
    import io

    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each step
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"])
            return "torch.onnx.export(dynamo=True)"
        except Exception:  # fall back to the TorchScript exporter and say so
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], opset_version=17)
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "onnxruntime_compare.txt"))
    args = ap.parse_args()
    from benchmarks import models as bm

    table = []
    exporter = None
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in MODELS:
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


if __name__ == "__main__":
    main()
