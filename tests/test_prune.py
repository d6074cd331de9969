"""Pruning in the build pipeline: real torch-pruning, real export/quantize/lower, real runtime."""

import numpy as np
import pytest
import torch
from helpers import run_cli

import edgekit
from edgekit.errors import BudgetError, DataError, PruneError
from edgekit.models import parse_input_spec
from edgekit.pipeline.prune import prune_model
from edgekit.program import InProcessProgram
from edgekit.targets import PruneConfig, load_target

X8 = [parse_input_spec("1x1x8x8")]


def _target(**prune):
    return load_target("xnnpack-fp32").replace(name="t", **{f"prune__{k}": v for k, v in prune.items()})


@pytest.fixture(scope="module")
def residual_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "res"
    return edgekit.build("toy_models:residual_concat", _target(structured_ratio=0.5, round_to=4), out=out)


def test_structured_pruning_of_residual_block_and_concat(residual_build):
    p = residual_build.manifest.to_dict()["prune"]
    layers = {row["layer"]: row for row in p["layers"]}
    # the residual add ties stem and block.conv2; the concat ties left/right to merge's inputs
    assert layers["stem"]["out_after"] == layers["block.conv2"]["out_after"] == 16
    assert layers["left"]["out_after"] + layers["right"]["out_after"] == layers["merge"]["in_after"]
    assert all(row["out_after"] % 4 == 0 for row in p["layers"] if row["layer"] != "classifier")
    assert p["auto_ignored"] == ["classifier"] and layers["classifier"]["out_after"] == 10
    assert p["params_after"] < 0.4 * p["params_before"] and p["macs_after"] < 0.4 * p["macs_before"]
    out = InProcessProgram(residual_build.pte_path).run((torch.randn(1, 1, 8, 8),))[0]
    assert out.shape == (1, 10)
    v = residual_build.manifest.verify
    # every figure is against the model handed in (half its channels are gone: far from it); the lowering check is
    # against the pruned model that was exported (fp32: nearly exact)
    assert v.reference == "original" and v.sqnr_db is not None and v.sqnr_db < 20
    assert v.lowering.reference == "pruned" and (v.lowering.sqnr_db is None or v.lowering.sqnr_db > 60)


def test_pruning_does_not_modify_the_callers_model():
    from toy_models import residual_concat

    model, x = residual_concat()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prune_model(model, (x,), PruneConfig(structured_ratio=0.5, sparsity=0.5))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_ignore_keeps_a_layer_whole():
    from toy_models import residual_concat

    model, x = residual_concat()
    res = prune_model(model, (x,), PruneConfig(structured_ratio=0.5, ignore=("left",)))
    assert res.module.left.out_channels == 16 and res.module.right.out_channels < 16


def test_magnitude_sparsity_is_permanent_and_shrinks_the_download(tmp_path):
    res = edgekit.build("toy_models:residual_concat", _target(sparsity=0.7), out=tmp_path / "s")
    p = res.manifest.to_dict()["prune"]
    assert p["sparsity_achieved"] == pytest.approx(0.7, abs=0.02)
    assert all(row["sparsity"] == pytest.approx(0.7, abs=0.02) for row in p["sparsity_by_layer"])
    assert "do not speed up" in p["sparsity_note"]
    sc = res.manifest.to_dict()["program"]["size_comparison"]
    assert sc["with_sparsity"]["deflate_bytes"] < 0.8 * sc["without_sparsity"]["deflate_bytes"]
    assert (
        abs(sc["with_sparsity"]["size_bytes"] - sc["without_sparsity"]["size_bytes"])
        < 0.05 * sc["without_sparsity"]["size_bytes"]
    )


def test_sparsity_leaves_no_masks_and_global_scope():
    from toy_models import residual_concat

    model, x = residual_concat()
    res = prune_model(model, (x,), PruneConfig(sparsity=0.5, scope="global"))
    names = [n for n, _ in res.module.named_parameters()] + [n for n, _ in res.module.named_buffers()]
    assert not [n for n in names if n.endswith(("_orig", "_mask"))]
    assert res.info.sparsity_achieved == pytest.approx(0.5, abs=0.01)
    per_layer = [row["sparsity"] for row in res.info.sparsity_by_layer]
    assert max(per_layer) - min(per_layer) > 0.05  # a global ranking prunes layers unevenly


def test_finetune_recovers_accuracy_and_report_has_three_accuracies(tmp_path, trained_cnn, digits_like):
    target = load_target("xnnpack-int8").replace(name="p", prune__structured_ratio=0.5, prune__round_to=4)
    common = dict(inputs=X8, calibration=digits_like["calib"], eval=digits_like["eval"])
    raw = edgekit.build(trained_cnn, target.replace(budget__max_accuracy_drop=None), out=tmp_path / "raw", **common)
    tuned = edgekit.build(
        trained_cnn,
        target,
        out=tmp_path / "ft",
        finetune=digits_like["train"],
        finetune_epochs=15,
        finetune_lr=1e-2,
        **common,
    )
    a_raw, a_ft = raw.manifest.to_dict()["verify"]["accuracy"], tuned.manifest.to_dict()["verify"]["accuracy"]
    assert set(a_ft) >= {"original_eager", "pruned_eager", "program", "drop"}
    assert a_ft["original_eager"] == a_raw["original_eager"] > 0.9
    assert a_raw["program"] < 0.5 < 0.95 < a_ft["program"] and a_ft["drop"] <= 0.02  # collapse, then recovery
    assert tuned.manifest.to_dict()["prune"]["finetune"]["epochs"] == 15
    assert any("without --finetune" in w for w in raw.warnings)


def test_accuracy_budget_fails_the_build_with_figures(tmp_path, trained_cnn, digits_like):
    target = load_target("xnnpack-fp32").replace(
        name="b", prune__structured_ratio=0.9, prune__round_to=1, budget__max_accuracy_drop=0.0
    )
    with pytest.raises(BudgetError) as info:
        edgekit.build(trained_cnn, target, out=tmp_path / "o", inputs=X8, eval=digits_like["eval"])
    assert "accuracy_drop is" in info.value.message and "limit 0.0" in info.value.message
    assert not (tmp_path / "o").exists()


def test_bad_prune_inputs(tmp_path, digits_like):
    with pytest.raises(PruneError) as info:
        edgekit.build(
            "toy_models:residual_concat", _target(structured_ratio=0.5, ignore=("clasifier",)), out=tmp_path / "o"
        )
    assert "matches no layer" in info.value.message and "classifier" in info.value.hint
    with pytest.raises(PruneError, match="'weight' \\(16x16x3x3\\).*outside an nn layer"):
        edgekit.build("toy_models:functional_conv", _target(structured_ratio=0.5), out=tmp_path / "o")
    np.savez(tmp_path / "ft_shape.npz", x=np.zeros((8, 3, 8, 8), np.float32), y=np.zeros(8, np.int64))
    with pytest.raises(DataError, match="fine-tune data"):
        edgekit.build(
            "toy_models:small_cnn",
            _target(structured_ratio=0.5),
            out=tmp_path / "o",
            inputs=X8,
            finetune=tmp_path / "ft_shape.npz",
        )
    np.savez(tmp_path / "ft_labels.npz", x=np.zeros((8, 1, 8, 8), np.float32), y=np.full(8, 12))
    with pytest.raises(DataError, match="range over 12..12 but the model has 10 classes"):
        edgekit.build(
            "toy_models:small_cnn",
            _target(structured_ratio=0.5),
            out=tmp_path / "o",
            inputs=X8,
            finetune=tmp_path / "ft_labels.npz",
        )
    np.savez(tmp_path / "ft_nolabels.npz", x=np.zeros((8, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="has no labels"):
        edgekit.build(
            "toy_models:small_cnn",
            _target(structured_ratio=0.5),
            out=tmp_path / "o",
            inputs=X8,
            finetune=tmp_path / "ft_nolabels.npz",
        )
    assert not (tmp_path / "o").exists()


def test_saved_exported_program_cannot_be_pruned(tmp_path):
    from toy_models import small_cnn_with_inputs

    model, x = small_cnn_with_inputs()
    torch.export.save(torch.export.export(model.eval(), (x,)), str(tmp_path / "m.pt2"))
    with pytest.raises(PruneError, match="saved ExportedProgram") as info:
        edgekit.build(str(tmp_path / "m.pt2"), _target(structured_ratio=0.5), out=tmp_path / "o")
    assert "factory" in info.value.hint


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--prune-channels", "1.2"], "0<=x<1"),
        (["--sparsity", "1"], "0<=x<1"),
        (["--max-accuracy-drop", "0.01"], "--max-accuracy-drop needs --eval"),
        (["--prune-layer", "features.0"], "is not LAYER=RATIO"),
        (["--prune-layer", "features.0=1.5"], "is not LAYER=RATIO"),
    ],
)
def test_cli_usage_errors(tmp_path, args, fragment):
    r = run_cli("build", "toy_models:small_cnn", "-i", "1x1x8x8", "-o", tmp_path / "o", *args)
    assert r.exit_code == 2 and fragment in r.stderr and "Traceback" not in r.stderr


def test_cli_flags_override_the_target(tmp_path, digits_like):
    r = run_cli(
        "build",
        "toy_models:small_cnn",
        "-i",
        "1x1x8x8",
        "-o",
        tmp_path / "o",
        "--prune-channels",
        "0.5",
        "--prune-round-to",
        "4",
        "--sparsity",
        "0.3",
        "--prune-ignore",
        "classifier",
        "--finetune",
        digits_like["train"],
        "--finetune-epochs",
        "1",
        "--json",
        "-q",
    )
    assert r.exit_code == 0, r.stderr
    import json

    m = json.loads(r.stdout)
    assert m["target"]["prune"]["structured_ratio"] == 0.5 and m["target"]["prune"]["sparsity"] == 0.3
    assert m["prune"]["ignore"] == ["classifier"] and m["prune"]["finetune"]["epochs"] == 1
    assert m["prune"]["sparsity_achieved"] == pytest.approx(0.3, abs=0.02)


def test_cli_per_layer_ratio(tmp_path):
    r = run_cli(
        "build",
        "toy_models:residual_concat",
        "-o",
        tmp_path / "o",
        "--prune-layer",
        "left=0.5",
        "--prune-round-to",
        "1",
        "--json",
        "-q",
    )
    assert r.exit_code == 0, r.stderr
    import json

    layers = {row["layer"]: row for row in json.loads(r.stdout)["prune"]["layers"]}
    assert layers["left"]["out_after"] == 8 and layers["right"]["out_after"] == 16


def test_pruned_target_ships():
    t = load_target("xnnpack-int8-pruned")
    assert (
        t.prune.structured_ratio == 0.5
        and t.prune.round_to == 8
        and t.quantize.scheme.value == "int8-static-per-channel"
    )


def test_per_layer_ratios_and_their_toml_round_trip(tmp_path):
    from toy_models import residual_concat

    model, x = residual_concat()
    res = prune_model(model, (x,), PruneConfig(layer_ratios={"left": 0.5}, round_to=1))
    assert res.module.left.out_channels == 8 and res.module.right.out_channels == 16
    with pytest.raises(PruneError, match="layer_ratios names 'lef'"):
        prune_model(model, (x,), PruneConfig(layer_ratios={"lef": 0.5}))
    t = load_target("xnnpack-fp32").replace(name="lr", prune__layer_ratios={"layer1.0.conv1": 0.3, "fc": 0.0})
    (tmp_path / "t.toml").write_text(t.to_toml())
    assert load_target(tmp_path / "t.toml") == t
