"""edgekit tune on the real stack: builds through the executor and cache, native profiles, mixed precision."""

import json

import numpy as np
import pytest
from helpers import run_cli

import edgekit
from edgekit.errors import DataError, UsageError
from edgekit.manifest import read_manifest
from edgekit.targets import QuantScheme, load_target
from edgekit.tune import Budget, TuneOptions, tune
from edgekit.tune.recipes import Recipe, native_fp16
from edgekit.tune.search import plan_precisions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    np.savez(d / "eval.npz", x=rng.standard_normal((32, 16)).astype(np.float32))
    (d / "cache").mkdir()  # shared: the no-candidate test finds the fragile model's builds and measurements here
    return d


def _opts(cache, executor="inline", **kw):
    # inline: the builds run in this process (no pool start-up); the resume test keeps a real process pool
    return TuneOptions(runs=20, rounds=2, cache=str(cache), executor=executor, **kw)


def test_mixed_precision_keeps_the_fragile_layers_in_fp32_and_meets_a_budget_plain_int8_misses(data, tmp_path):
    # objective size: on a 16-wide MLP int8 is smaller than fp32 but not faster, so size is why one quantizes it
    res = tune(
        "toy_models:fragile",
        calibration=data / "calib.npz",
        eval=data / "eval.npz",
        out=tmp_path / "best",
        budget=Budget(min_sqnr_db=30),
        # static int8 only (the precision that needs the rescue), no pruning: the other plain precisions are built the
        # same way and the fp16 plan has its own test
        options=_opts(
            data / "cache", objective="size", precisions=(QuantScheme.INT8_STATIC_PER_CHANNEL,), prune_ratios=()
        ),
    )
    cands = {c.name: c for c in res.manifest.tune.candidates}
    assert cands["int8 per-channel"].status == "over" and cands["int8 per-channel"].sqnr_db < 30
    mixed = [c for c in cands.values() if c.recipe.get("fp32_layers")]
    assert mixed and sorted(mixed[0].recipe["fp32_layers"]) == ["fc2", "head"], mixed
    assert mixed[0].status in ("chosen", "beaten") and mixed[0].sqnr_db >= 30
    chosen = [c for c in cands.values() if c.status == "chosen"]
    assert len(chosen) == 1 and res.manifest.tune.decision.startswith(chosen[0].name)
    m = read_manifest(tmp_path / "best")  # a normal package: the chosen program, verified, with the tune section
    assert "eval.npz" in m.verify.data and (m.quantize.calibration is None or "calib.npz" in m.quantize.calibration)
    assert m.tune == res.manifest.tune
    assert m.verify.sqnr_db is None or m.verify.sqnr_db >= 30
    assert (tmp_path / "best" / "tune.html").read_text().count("data:image/png;base64") == 1
    assert edgekit.profile(tmp_path / "best", runs=3, warmup=1, warmup_seconds=0.0).latency_ms.count == 3


def test_an_interrupted_tune_resumes_from_the_cache(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((32, 32)).astype(np.float32))
    precisions = (QuantScheme.NONE, QuantScheme.INT8_STATIC_PER_CHANNEL, QuantScheme.INT8_STATIC_PER_TENSOR)
    seen = []

    def interrupt(what, done, total):
        seen.append(what)
        if sum(w.startswith("built") for w in seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C while a process pool builds: its builds are cancelled

    with pytest.raises(KeyboardInterrupt):
        tune(
            "toy_models:mlp",
            calibration=tmp_path / "calib.npz",
            out=tmp_path / "o",
            progress=interrupt,
            options=_opts(tmp_path / "cache", executor="local:1", prune_ratios=(), precisions=precisions),
        )
    assert not (tmp_path / "o").exists()
    r = run_cli(
        "tune",
        "toy_models:mlp",
        "-c",
        str(tmp_path / "calib.npz"),
        "--runs",
        "20",
        "--precisions",
        "fp32,int8-static-per-channel,int8-static-per-tensor",
        "--cache",
        str(tmp_path / "cache"),
        "--executor",
        "inline",
        "--prune-ratios",
        "none",
        "-o",
        str(tmp_path / "o"),
        "--json",
        "-q",
    )
    assert r.exit_code == 0, r.output
    cands = json.loads(r.stdout)["tune"]["candidates"]
    assert sum(c["cached"] for c in cands) >= 2 and any(c["status"] == "chosen" for c in cands), (seen, cands)
    assert not any(c["recipe"].get("prune") for c in cands)  # --prune-ratios none


def test_no_candidate_meeting_the_budget_names_the_closest_and_writes_nothing(data, tmp_path):
    r = run_cli(
        "tune",
        "toy_models:fragile",
        "-c",
        str(data / "calib.npz"),
        "--eval",
        str(data / "eval.npz"),
        "--min-sqnr",
        "400",
        "--precisions",
        "int8-static-per-channel",
        "--prune-ratios",
        "none",
        "--runs",
        "20",
        "--cache",
        str(data / "cache"),  # the mixed-precision test's build is here
        "--executor",
        "inline",
        "-o",
        str(tmp_path / "o"),
    )
    assert (
        r.exit_code == 1 and "no candidate meets SQNR ≥ 400 dB: the closest" in r.stderr and "misses by" in r.stderr
    ), r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


def test_tune_refuses_to_run_without_calibration_data_or_with_data_that_does_not_fit(data, tmp_path):
    with pytest.raises(UsageError, match="needs --calibration"):
        tune("toy_models:mlp", calibration=None, out=tmp_path / "o")
    r = run_cli("tune", "toy_models:mlp", "-o", str(tmp_path / "o"))
    assert r.exit_code == 2 and "needs --calibration DATA" in r.stderr and not (tmp_path / "o").exists()
    with pytest.raises(DataError, match="expects"):  # data that does not fit the model fails before any build
        tune("toy_models:mlp", calibration=data / "calib.npz", out=tmp_path / "o", options=_opts(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    with pytest.raises(UsageError, match="needs labelled --eval"):
        tune(
            "toy_models:mlp", calibration=tmp_path / "c.npz", out=tmp_path / "o", budget=Budget(max_accuracy_drop=0.01)
        )


def test_fp16_is_a_candidate_only_where_the_cpu_has_fp16_arithmetic(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nFeatures : fp asimd evtstrm aes crc32 atomics fphp asimdhp cpuid\n")
    assert native_fp16(cpuinfo, arch="aarch64") == (True, "Arm with FP16 arithmetic (asimdhp)")
    assert native_fp16(cpuinfo, arch="x86_64")[0] is False
    recipes, skipped = plan_precisions((True, "Arm with FP16 arithmetic (asimdhp)"))
    assert Recipe(QuantScheme.FP16) in recipes and not skipped
    recipes, skipped = plan_precisions((False, "x86-64 without AVX512-FP16"))
    assert Recipe(QuantScheme.FP16) not in recipes and "emulate fp16" in skipped[0].reason
    # fp16 throughout: the dynamic target's int8 embedding tables are not kept
    target = Recipe(QuantScheme.FP16).target(load_target("xnnpack-int8-dynamic"))
    assert target.quantize.scheme is QuantScheme.FP16 and target.quantize.embeddings.value == "none"


def test_pruning_starts_from_the_most_faithful_of_the_precisions_tied_on_speed():
    from types import SimpleNamespace

    from edgekit.tune.search import MeasureResult, Tried, prune_base

    def tried(scheme, p50, size, sqnr):
        manifest = SimpleNamespace(
            program=SimpleNamespace(size_bytes=size), verify=SimpleNamespace(accuracy=None, sqnr_db=sqnr)
        )
        return Tried(Recipe(scheme), status="beaten", manifest=manifest, profile=MeasureResult(p50, None, None, []))

    pt = tried(QuantScheme.INT8_STATIC_PER_TENSOR, 0.0082, 98_000, 30.0)
    pc = tried(QuantScheme.INT8_STATIC_PER_CHANNEL, 0.0083, 102_000, 34.0)
    fp32 = tried(QuantScheme.NONE, 0.0231, 372_000, 120.0)
    assert prune_base([pt, pc, fp32], "p50") is pc  # a 1% difference in speed is a tie; per-channel keeps more accuracy
    slower = tried(QuantScheme.INT8_STATIC_PER_CHANNEL, 0.0100, 102_000, 34.0)
    assert prune_base([pt, slower, fp32], "p50") is pt  # 22% slower is not a tie
    assert prune_base([fp32], "p50") is fp32


def test_a_rerun_of_the_sensitivity_scan_loads_every_calibration_it_made(data):
    from edgekit.data import resolve_data
    from edgekit.models import load_model
    from edgekit.pipeline.calibration import MemoryRecords
    from edgekit.pipeline.export import export_model
    from edgekit.tune.recipes import mixed_precision

    class Counted(MemoryRecords):
        puts = 0

        def put(self, key, states):
            type(self).puts += 1
            super().put(key, states)

    loaded = load_model("toy_models:fragile")
    calib = resolve_data(data / "calib.npz", loaded.example_inputs, role="calibration")
    held = resolve_data(data / "eval.npz", loaded.example_inputs, role="eval")
    exported = export_model(loaded)
    records = Counted()
    scheme = QuantScheme.INT8_STATIC_PER_CHANNEL
    first = mixed_precision(exported, scheme, calib, held, lambda f: f.sqnr_db >= 30, records=records)
    calibrated = Counted.puts
    again = mixed_precision(exported, scheme, calib, held, lambda f: f.sqnr_db >= 30, records=records)
    assert calibrated > 0 and Counted.puts == calibrated  # the second scan calibrated nothing
    assert again == first and sorted(first.keep) == ["fc2", "head"]  # and found exactly what the first one did


# ------------------------------------------------------------------------------------------ fidelity to the user's model
@pytest.fixture(scope="module")
def wide(tmp_path_factory, digits_like):
    """A trained WideCNN behind a factory that loads its weights, as a user's factory would; pruning half its channels
    makes it faster, and without fine-tuning it no longer computes what the user's model computes."""
    import torch
    from toy_models import WideCNN, train

    d = tmp_path_factory.mktemp("wide")
    torch.manual_seed(0)
    torch.save(train(WideCNN()).state_dict(), d / "wide.pt")
    (d / "wide_net.py").write_text(
        "from pathlib import Path\nimport torch\nimport toy_models\n\n\ndef make():\n    m = toy_models.WideCNN()\n"
        "    m.load_state_dict(torch.load(Path(__file__).with_name('wide.pt'), weights_only=True))\n"
        "    return m.eval(), torch.zeros(1, 1, 8, 8)\n"
    )
    np.savez(d / "eval_nolabels.npz", x=digits_like["x"][300:364])
    return {"spec": f"{d / 'wide_net.py'}:make", "cache": d / "cache"}


def test_a_pruned_candidate_that_is_faster_but_no_longer_the_users_model_is_not_chosen(wide, digits_like, tmp_path):
    res = tune(
        wide["spec"],
        calibration=digits_like["calib"],
        eval=wide["cache"].parent / "eval_nolabels.npz",
        out=tmp_path / "o",
        budget=Budget(min_sqnr_db=25),
        options=_opts(wide["cache"], prune_ratios=(0.5,), precisions=(QuantScheme.INT8_STATIC_PER_CHANNEL,)),
    )
    cands = {c.name: c for c in res.manifest.tune.candidates}
    plain, pruned = cands["int8 per-channel"], cands["prune 0.5, int8 per-channel"]
    assert plain.status == "chosen" and plain.sqnr_db >= 25
    assert pruned.p50_ms < plain.p50_ms and pruned.size_bytes < plain.size_bytes  # faster and smaller ...
    assert pruned.lowering_sqnr_db > 25  # ... and lowered faithfully from the pruned model ...
    assert pruned.sqnr_db < 15 and pruned.status == "over"  # ... but no longer the model the user handed in
    assert "pruning changes the function: needs --eval with labels or --finetune to judge" in pruned.reason
    m = read_manifest(tmp_path / "o")
    assert m.verify.reference == "original" and m.verify.lowering is None
    assert "against your model" in m.tune.fidelity and f"{m.verify.sqnr_db:.1f} dB" in m.tune.fidelity
    html = (tmp_path / "o" / "tune.html").read_text()
    assert "vs your model" in html and "vs pruned model" in html


def test_with_labels_and_finetune_data_the_pruned_candidate_that_keeps_accuracy_is_chosen(wide, digits_like, tmp_path):
    r = run_cli(
        "tune",
        wide["spec"],
        "-c",
        str(digits_like["calib"]),
        "--eval",
        str(digits_like["eval"]),
        "--finetune",
        str(digits_like["train"]),
        "--max-accuracy-drop",
        "0.02",
        "--prune-ratios",
        "0.5",
        "--precisions",
        "int8-static-per-channel",
        "--runs",
        "20",
        "--cache",
        str(wide["cache"]),
        "--executor",
        "inline",
        "-o",
        str(tmp_path / "o"),
        "-q",
    )
    assert r.exit_code == 0, r.output
    assert "vs your model" in r.stdout and "fidelity:" in r.stdout and "against your model" in r.stdout
    m = read_manifest(tmp_path / "o")
    assert m.tune.decision.startswith("prune 0.5, int8 per-channel"), m.tune.decision
    a = m.verify.accuracy
    assert m.verify.reference == "original" and m.verify.lowering.reference == "pruned"
    assert a.eager == a.original_eager == 1.0 and a.drop <= 0.02 and a.pruned_eager is not None
    assert (
        m.verify.lowering.sqnr_db > m.verify.sqnr_db
    )  # closer to the pruned model it was built from than to the original
