"""The program-kind seam (edgekit.kinds): one place chooses the kind of a build, a package and a tune, and a third kind
joins with its own module of steps plus one registration line."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import one_line_error, run_cli

import edgekit
from edgekit import kinds
from edgekit.errors import UsageError


@pytest.fixture
def toy():
    from toy_kind import TOY

    kinds.register(TOY)  # the one registration line
    yield TOY
    kinds.unregister(TOY.name)


@pytest.mark.fast
def test_the_registered_kinds_choose_from_target_task_manifest_and_model(tmp_path) -> None:
    from edgekit.targets import load_target

    assert kinds.for_build(None, None) is kinds.TENSOR
    assert kinds.for_build(None, "classify") is kinds.TENSOR
    assert kinds.for_build(None, "text-generation") is kinds.GENERATION_KIND
    assert kinds.for_build(load_target("xnnpack-llm-8da4w"), None) is kinds.GENERATION_KIND
    assert kinds.for_build(load_target("xnnpack-int8"), None) is kinds.TENSOR
    assert kinds.for_tune("toy_models:mlp") is kinds.TENSOR
    assert kinds.for_tune(f"gguf:{tmp_path / 'x.gguf'}") is kinds.GENERATION_KIND
    assert kinds.of_package(tmp_path) is kinds.TENSOR  # no manifest: the tensor kind's checks say what is wrong
    assert [k.name for k in kinds.KINDS][-1] == "tensor"
    with pytest.raises(ValueError, match="names no render_build, profile_command, bench_item, tune_command step"):
        kinds.ProgramKind(**{**kinds.TENSOR.__dict__, "steps": {"build": "x:y"}})


@pytest.mark.fast
def test_options_that_do_nothing_for_the_kind_are_refused_in_one_line(tmp_path) -> None:
    with pytest.raises(UsageError, match="max_seq_len do\\(es\\) not apply to a model's build"):
        edgekit.build("toy_models:mlp", out=tmp_path / "p", max_seq_len=64)
    with pytest.raises(UsageError, match="calibration, finetune_epochs do\\(es\\) not apply to a text-generation"):
        edgekit.build("gguf:x.gguf", task="text-generation", out=tmp_path / "p", calibration="c.npz", finetune_epochs=2)
    assert not (tmp_path / "p").exists()
    one_line_error(
        run_cli("build", "gguf:x.gguf", "--task", "text-generation", "--no-explain", "-o", tmp_path / "p"),
        2,
        "--no-explain do(es) not apply to a text-generation build",
        "--max-seq-len",
    )
    one_line_error(
        run_cli("build", "toy_models:mlp", "--max-seq-len", "64", "-o", tmp_path / "p"),
        2,
        "--max-seq-len do(es) not apply to a model's build",
        "--task",
    )
    # budgets are the kind's too: from a target file, through build() and the CLI alike, a budget the kind cannot
    # check is refused, never ignored (a generation profile checks no latency budget; a model's build no KLD)
    kld = tmp_path / "kld.toml"
    kld.write_text('schema_version = 1\nname = "kld"\n[budget]\nmax_kld = 0.1\n')
    with pytest.raises(UsageError, match="budget.max_kld do\\(es\\) not apply to a model's build"):
        edgekit.build("toy_models:mlp", kld, out=tmp_path / "p")
    one_line_error(run_cli("build", "toy_models:mlp", "-t", kld, "-o", tmp_path / "p"), 2, f"budget.max_kld of {kld}")
    p50 = tmp_path / "p50.toml"
    p50.write_text('schema_version = 1\nname = "p50"\ntask = "text-generation"\n[budget]\nmax_p50_ms = 5\n')
    with pytest.raises(UsageError, match="budget.max_p50_ms do\\(es\\) not apply to a text-generation build"):
        edgekit.build("gguf:x.gguf", p50, out=tmp_path / "p")
    assert not (tmp_path / "p").exists()
    # a kind names only budgets a target has
    with pytest.raises(ValueError, match="names budgets the target has not: max_klds"):
        dataclasses.replace(kinds.TENSOR, budgets=frozenset({"max_klds"}))


def test_a_third_kind_is_one_module_and_one_registration(tmp_path, toy) -> None:
    (tmp_path / "toy.toml").write_text('schema_version = 1\nname = "toy-fp32"\nbackend = "xnnpack"\n')
    pkg = tmp_path / "pkg"
    r = run_cli("build", "toy_models:mlp", "-t", tmp_path / "toy.toml", "-o", pkg)
    assert r.exit_code == 0, r.output
    assert f"toy build: {pkg}" in r.output  # the kind's own summary
    assert kinds.of_package(pkg) is toy and kinds.of_package(pkg / "model.pte") is toy

    r = run_cli("profile", pkg, "--threads", "2")
    assert r.exit_code == 0 and f"toy profile: {pkg} at 2 thread(s)" in r.output, r.output
    with pytest.raises(UsageError, match="is a toy program"):
        edgekit.profile(pkg)
    r = run_cli("tune", "toy:anything", "-o", tmp_path / "t")
    assert r.exit_code == 0 and "toy tune: toy:anything" in r.output, r.output

    from edgekit.bench.items import measure_item
    from edgekit.bench.suite import SuiteModel
    from edgekit.builds.queue import Built
    from edgekit.manifest import read_manifest

    built = Built(read_manifest(pkg), pkg, cached=True, seconds=0.0)
    assert measure_item(None, SuiteModel("m", "toy_models:mlp", ("t",)), "t", 1, built) == "toy item: m"

    one_line_error(
        run_cli("build", "toy_models:mlp", "-t", tmp_path / "toy.toml", "--calibration", "c.npz", "-o", tmp_path / "q"),
        2,
        "--calibration do(es) not apply to a toy build",
        "inputs only",
    )


def test_a_kind_registered_at_run_time_is_refused_by_a_spawned_build_worker(tmp_path, toy):
    """The local pool spawns its workers: they know the kinds edgekit registers, not the toy one registered here. The
    worker refuses the job instead of building a tensor program under the toy build's key."""
    from edgekit.builds.cache import BuildCache
    from edgekit.builds.queue import BuildQueue, ModelEntry
    from edgekit.targets import load_target

    (tmp_path / "toy.toml").write_text('schema_version = 1\nname = "toy-fp32"\nbackend = "xnnpack"\n')
    queue = BuildQueue(BuildCache(str(tmp_path / "cache")), "local:1", [])
    try:
        job = queue.job(ModelEntry("toy_models:mlp"), load_target(tmp_path / "toy.toml"), "k" * 16)
        assert job.kind == "toy"
        [(_, outcome)] = list(queue.run([job]))
    finally:
        queue.close()
    assert isinstance(outcome, str) and "does not know the kind of program 'toy'" in outcome, outcome
