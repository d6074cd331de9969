import pytest
import torch

from edgekit.errors import InputSpecError, ModelLoadError
from edgekit.models import DynamicBatch, InputSpec, load_model, parse_dynamic_batch, parse_input_spec


@pytest.mark.parametrize(
    "text, shape, dtype",
    [
        ("1x3x224x224", (1, 3, 224, 224), "float32"),
        ("1x128:int64", (1, 128), "int64"),
        (" 2x4 : fp16 ", (2, 4), "float16"),
        ("8", (8,), "float32"),
    ],
)
def test_parse_input_spec(text, shape, dtype):
    spec = parse_input_spec(text)
    assert spec == InputSpec(shape, dtype)
    assert parse_input_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("1x", "malformed"),
        ("abc", "malformed"),
        ("1x0x3", "positive"),
        ("1x3:float99", "unknown dtype"),
        ("", "malformed"),
    ],
)
def test_parse_input_spec_rejects(text, fragment):
    with pytest.raises(InputSpecError, match=fragment) as info:
        parse_input_spec(text)
    assert info.value.hint and info.value.exit_code == 2


def test_parse_dynamic_batch():
    assert parse_dynamic_batch("1:32") == DynamicBatch(1, 32)
    for bad in ("32", "4:2", "0:8", "a:b"):
        with pytest.raises(InputSpecError):
            parse_dynamic_batch(bad)


def test_module_factory_with_input_spec():
    m = load_model("toy_models:small_cnn", [parse_input_spec("1x1x8x8")])
    assert isinstance(m.module, torch.nn.Module) and not m.module.training
    assert m.example_inputs[0].shape == (1, 1, 8, 8)


def test_factory_supplies_example_inputs_and_input_overrides_them():
    assert load_model("toy_models:small_cnn_with_inputs").example_inputs[0].shape == (1, 1, 8, 8)
    assert load_model("toy_models:small_cnn_with_inputs", [parse_input_spec("2x1x8x8")]).example_inputs[0].shape == (
        2,
        1,
        8,
        8,
    )


def test_several_inputs_with_dtypes():
    m = load_model("toy_models:two_inputs", [parse_input_spec("1x6:int64"), parse_input_spec("1x4")])
    assert [t.dtype for t in m.example_inputs] == [torch.int64, torch.float32]
    assert m.module(*m.example_inputs).shape == (1, 3)


def test_example_inputs_are_made_contiguous():
    m = load_model("toy_models:numpy_strided_inputs")
    assert m.example_inputs[0].stride() == (64, 64, 8, 1)


def test_file_factory(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("import torch\ndef make():\n    return torch.nn.Linear(3, 2), torch.randn(1, 3)\n")
    m = load_model(f"{f}:make")
    assert m.module(*m.example_inputs).shape == (1, 2)


def test_saved_exported_program(tmp_path):
    from toy_models import small_cnn_with_inputs

    model, x = small_cnn_with_inputs()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model.eval(), (x,)), str(path))
    m = load_model(str(path))
    assert m.exported is not None
    torch.testing.assert_close(m.module(x), model(x))


@pytest.mark.parametrize(
    "spec, fragment, hint",
    [
        ("no_such_pkg.nets:make", "cannot import module 'no_such_pkg.nets'", "PYTHONPATH"),
        ("toy_models:smal_cnn", "has no attribute 'smal_cnn'", "did you mean small_cnn"),
        ("toy_models:raises", "raised RuntimeError: weights file missing", "fix the factory"),
        ("toy_models:not_a_module", "returned dict, not an nn.Module", "return an nn.Module"),
        ("toy_models:NOT_CALLABLE", "not a callable", "function"),
        ("missing/file.py:make", "does not exist", "path"),
        ("nothing_here", "neither a file nor a module:factory", "package.module:factory"),
    ],
)
def test_load_errors(spec, fragment, hint):
    with pytest.raises(ModelLoadError) as info:
        load_model(spec, [parse_input_spec("1x1x8x8")])
    assert fragment in info.value.message
    assert hint in info.value.hint


def test_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "model.pt2"
    junk.write_bytes(b"\x00not a program" * 10)
    with pytest.raises(ModelLoadError, match="is not a saved ExportedProgram"):
        load_model(str(junk))
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, weights)
    with pytest.raises(ModelLoadError, match="holds weights, not a model"):
        load_model(str(weights))


def test_missing_example_inputs_names_the_fix():
    with pytest.raises(InputSpecError) as info:
        load_model("toy_models:small_cnn")
    assert "--input" in info.value.hint
