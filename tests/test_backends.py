"""Backends as registered families (edgekit.backends): lowering, quantizing, target validation and the native runner's
link line ask the registry, and an unknown backend is one line naming the known ones."""

from __future__ import annotations

import pytest

from edgekit import backends
from edgekit.errors import ConfigError, UsageError
from edgekit.targets import Backend, QuantScheme

pytestmark = pytest.mark.fast


def test_every_backend_a_target_may_name_is_a_registered_family():
    assert set(backends.FAMILIES) == set(Backend)
    x = backends.family("xnnpack")
    assert x is backends.family(Backend.XNNPACK) and x.runs_on("aarch64") and x.runs_on("x86_64")
    assert x.schemes == frozenset(QuantScheme) and x.step("partition").__name__ == "xnnpack_partition"
    assert x.step("quantizer").__name__ == "xnnpack_quantizer"
    portable = backends.family("portable")
    assert portable.partition is None and portable.schemes == {QuantScheme.NONE}
    with pytest.raises(UsageError, match="the portable backend has no quantizer step"):
        portable.step("quantizer")
    with pytest.raises(UsageError, match="unknown backend 'tpu'.*xnnpack, portable"):
        backends.family("tpu")


def test_a_target_asking_its_backend_for_a_scheme_it_does_not_run_is_refused(tmp_path):
    from edgekit.targets import load_target

    (tmp_path / "p.toml").write_text(
        'schema_version = 1\nname = "p"\nbackend = "portable"\n[quantize]\nscheme = "int8-static-per-channel"\n'
    )
    with pytest.raises(ConfigError, match="backend = 'portable' runs fp32 only here, not quantize.scheme = 'int8"):
        load_target(tmp_path / "p.toml")


def test_the_native_runner_links_every_familys_runtime_libraries():
    from edgekit.runner.native import LIBS

    assert all(lib in LIBS for f in backends.FAMILIES.values() for lib in f.runtime_libraries)
    assert "executorch_backend_xnnpack" in backends.runtime_libraries()


def test_lowering_asks_the_family_for_its_partitioner_and_patches(monkeypatch):
    """A portable target lowers with no partitioner and none of XNNPACK's patches; an XNNPACK one with its own."""
    import torch

    from edgekit import upstream
    from edgekit.pipeline.lower import lower_program

    program = torch.export.export(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()), (torch.randn(1, 4),))
    seen = []
    real = upstream.applied

    def watching(name, *args):
        seen.append(name)
        return real(name, *args)

    monkeypatch.setattr(upstream, "applied", watching)
    portable = lower_program(program, Backend.PORTABLE)
    assert "xnnpack-skip-unchanging-passes" not in seen
    xnn = lower_program(program, Backend.XNNPACK)
    assert "xnnpack-skip-unchanging-passes" in seen
    assert portable.info["partitioner"] is None and xnn.info["partitioner"] == "XnnpackPartitioner"
