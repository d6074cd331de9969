from pathlib import Path

import pytest

from edgekit.errors import ConfigError, TargetNotFoundError
from edgekit.targets import QuantizeConfig, QuantScheme, Target, builtin_target_names, list_targets, load_target


def test_builtin_targets_ship():
    names = builtin_target_names()
    for n in ("xnnpack-fp32", "xnnpack-int8", "xnnpack-int8-dynamic", "portable-fp32"):
        assert n in names
    assert load_target("xnnpack-int8").quantize.scheme is QuantScheme.INT8_STATIC_PER_CHANNEL
    assert load_target("xnnpack-int8-dynamic").quantize.scheme.is_dynamic


@pytest.mark.parametrize("target", list_targets(), ids=lambda t: t.name)
def test_every_builtin_target_round_trips(target, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(target.to_toml())
    again = load_target(path)
    assert again == target
    assert again.to_toml() == target.to_toml()


def _write(tmp_path, text):
    p = tmp_path / "mine.toml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_key_and_allowed(tmp_path):
    p = _write(tmp_path, 'schema_version = 1\nname = "x"\n[prune]\nratio = 0.5\n')
    with pytest.raises(ConfigError) as info:
        load_target(p)
    msg = str(info.value)
    assert str(p) in msg and "'ratio'" in msg and "structured_ratio" in msg


def test_bad_enum_value_lists_allowed(tmp_path):
    p = _write(tmp_path, 'schema_version = 1\nname = "x"\n[quantize]\nscheme = "int4"\n')
    with pytest.raises(ConfigError) as info:
        load_target(p)
    assert "quantize.scheme" in str(info.value) and "int8-static-per-channel" in str(info.value)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("[prune]\nstructured_ratio = 1.2\n", "prune.structured_ratio must be in [0.0, 1.0), got 1.2"),
        ("[prune]\nsparsity = -0.1\n", "prune.sparsity"),
        ("[profile]\nthreads = 0\n", "profile.threads"),
        ('[budget]\nmax_size_mb = "big"\n', "budget.max_size_mb must be a number"),
        ('backend = "tpu"\n', "allowed: xnnpack, portable"),
    ],
)
def test_invalid_values(tmp_path, body, fragment):
    p = _write(tmp_path, 'schema_version = 1\nname = "x"\n' + body)
    with pytest.raises(ConfigError) as info:
        load_target(p)
    assert fragment in str(info.value) and str(p) in str(info.value)


def test_invalid_toml_names_file(tmp_path):
    p = _write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_target(p)


def test_unknown_target_lists_valid_ones():
    with pytest.raises(TargetNotFoundError) as info:
        load_target("xnnpack-int9")
    assert "did you mean 'xnnpack-int8'" in info.value.message
    assert "xnnpack-fp32" in info.value.hint and info.value.exit_code == 2


def test_portable_cannot_quantize():
    with pytest.raises(ConfigError, match="portable"):
        Target(name="x", backend="portable", quantize=QuantizeConfig(scheme="int8-static-per-channel"))


def test_replace_validates():
    t = load_target("xnnpack-int8").replace(prune__sparsity=0.5, name="y")
    assert t.prune.sparsity == 0.5 and t.name == "y"
    with pytest.raises(ConfigError):
        t.replace(prune__sparsity=1.0)


def test_builtin_targets_carry_no_device_budgets():
    for t in list_targets():  # a generic recipe cannot know the user's device: no size, latency or memory caps
        assert t.budget.max_size_mb is None and t.budget.max_p50_ms is None and t.budget.max_peak_rss_mb is None, t.name


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "targets" / "examples").glob("*.toml")))
def test_example_device_targets_load_round_trip_and_carry_budgets(path, tmp_path):
    t = load_target(path)
    assert t.budget.max_size_mb and t.budget.max_p50_ms and t.budget.max_peak_rss_mb and "EXAMPLE" in t.description
    (tmp_path / "t.toml").write_text(t.to_toml())
    assert load_target(tmp_path / "t.toml") == t
    assert t.name not in [b.name for b in list_targets()]  # examples are files to copy, not built-ins


def test_fp16_target_and_what_it_cannot_combine_with():
    assert load_target("xnnpack-fp16").quantize.scheme is QuantScheme.FP16
    assert not QuantScheme.FP16.is_int8 and not QuantScheme.FP16.needs_calibration
    with pytest.raises(ConfigError, match="quantize.embeddings = 'none'"):
        QuantizeConfig(scheme="fp16", embeddings="int8")
    with pytest.raises(ConfigError, match="drop fp32_layers"):
        QuantizeConfig(scheme="fp16", fp32_layers=("fc",))
