"""What reusing a calibration saves: `edgekit tune`'s candidates and its mixed-precision scan load one calibration's
observer states (edgekit.pipeline.calibration) instead of running the data through the model again.

Side by side on the real-size models, 32 calibration images at 224 (benchmarks/realsize.py), 1 process:
- quantize stage of an int8 per-tensor build after a per-channel one: fresh calibration vs the per-channel build's record
  (and whether the two programs are byte-identical);
- one step of mixed precision's sensitivity scan (prepare → calibrate → convert with one layer quantized): calibrating
  vs loading the states where they apply (an observer shared across a layer boundary in one recipe and not in the
  other has another key, and is calibrated afresh); medians over the first --layers layers, interleaved.

    .venv/bin/python benchmarks/calibration_reuse.py [--models mobilenet_v2,resnet18] [--layers 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def build_pair(name: str, tmp: Path, calib: Path) -> dict:
    import edgekit
    from edgekit.builds import BuildCache
    from edgekit.targets import load_target

    spec = f"{HERE / 'realsize.py'}:{name}"
    pt = load_target("xnnpack-int8").replace(quantize__scheme="int8-static-per-tensor")
    records = BuildCache(tmp / f"records-{name}").calibration_records()
    edgekit.build(
        spec, "xnnpack-int8", calibration=calib, out=tmp / f"{name}-pc", calibration_records=records, verify_samples=1
    )
    out = {}
    for label, rec in (("fresh", None), ("reused", records)):
        seconds = {}
        res = edgekit.build(
            spec,
            pt,
            calibration=calib,
            out=tmp / f"{name}-{label}",
            calibration_records=rec,
            verify_samples=1,
            progress=lambda e: seconds.update({e.stage.value: e.seconds}) if e.state.value == "done" else None,  # noqa: B023
        )
        out[label] = (seconds["quantize"], res.manifest.program.sha256, res.manifest.quantize.calibration_reused)
    return out


def scan_steps(name: str, layers: int, calib_path: Path) -> tuple[float, float, int]:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgekit.data import resolve_data
    from edgekit.models import load_model
    from edgekit.pipeline.calibration import MemoryRecords
    from edgekit.pipeline.export import export_model
    from edgekit.pipeline.quantize import layer_names, prepare_calibrated
    from edgekit.targets import QuantScheme

    loaded = load_model(f"{HERE / 'realsize.py'}:{name}")
    calib = resolve_data(calib_path, loaded.example_inputs, role="calibration")
    exported = export_model(loaded)
    scheme = QuantScheme.INT8_STATIC_PER_CHANNEL
    records = MemoryRecords()  # as a first scan has it: the full model's calibration, then each step's own
    prepare_calibrated(exported, scheme, calib, records=records)
    names = layer_names(exported.program)
    fresh, loaded_s, hits = [], [], 0
    for layer in names[:layers]:
        others = tuple(n for n in names if n != layer)
        for records_arg, times in ((None, fresh), (records, loaded_s)):
            t0 = time.perf_counter()
            prepared, _, reused = prepare_calibrated(exported, scheme, calib, others, records=records_arg)
            convert_pt2e(prepared)
            times.append(time.perf_counter() - t0)
            hits += reused
    return statistics.median(fresh), statistics.median(loaded_s), len(names), hits


def main() -> None:
    import numpy as np
    import realsize

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,resnet18")
    ap.add_argument("--layers", type=int, default=6)
    args = ap.parse_args()
    lines = ["# calibration reuse: 32 calibration images at 224, 1 process; see the docstring", ""]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        np.savez(tmp / "calib.npz", **realsize.image_calibration())
        for name in args.models.split(","):
            pair = build_pair(name, tmp, tmp / "calib.npz")
            (fq, fsha, _), (rq, rsha, reused) = pair["fresh"], pair["reused"]
            fresh, loaded, n, hits = scan_steps(name, args.layers, tmp / "calib.npz")
            lines += [
                f"{name}: per-tensor build's quantize stage {fq:.2f} s fresh vs {rq:.2f} s from the per-channel record "
                f"(reused: {reused}; programs {'byte-identical' if fsha == rsha else 'DIFFER'})",
                f"  sensitivity scan step: {fresh:.2f} s calibrating vs {loaded:.2f} s loading states "
                f"(median of the first {args.layers} layers; {hits} of them could load the states, the others observe a "
                f"layer boundary differently and calibrate: see edgekit/pipeline/calibration.py)",
            ]
            print("\n".join(lines[-2:]), flush=True)
    out = HERE / "results" / "calibration_reuse.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
