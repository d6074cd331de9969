import numpy as np
import pytest
import torch

from edgekit.data import fit_to_model, load_dataset, random_dataset
from edgekit.errors import DataError

EXAMPLE = (torch.zeros(1, 1, 8, 8),)


def test_npz_with_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((5, 1, 8, 8), np.float64), y=np.arange(5))
    ds = fit_to_model(load_dataset(tmp_path / "d.npz"), EXAMPLE)
    assert len(ds) == 5 and ds.inputs[0].dtype == torch.float32 and ds.labels.tolist() == [0, 1, 2, 3, 4]


def test_npy_pt_and_folder(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 1, 8, 8), np.float32))
    assert len(load_dataset(tmp_path / "a.npy")) == 3
    torch.save({"x": torch.zeros(4, 1, 8, 8), "y": torch.zeros(4, dtype=torch.long)}, tmp_path / "b.pt")
    assert load_dataset(tmp_path / "b.pt").labels.shape == (4,)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"s{i}.npy", np.full((1, 1, 8, 8), i, np.float32))
    ds = load_dataset(folder)
    assert len(ds) == 3 and float(ds.inputs[0][2].mean()) == 2.0


def test_several_inputs_by_number(tmp_path):
    np.savez(tmp_path / "d.npz", x0=np.zeros((2, 6), np.int64), x1=np.zeros((2, 4), np.float32))
    ds = load_dataset(tmp_path / "d.npz")
    assert [t.shape for t in ds.inputs] == [(2, 6), (2, 4)]


def test_samples_saved_with_their_batch_dim_are_accepted(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 1, 1, 8, 8), np.float32))
    assert fit_to_model(load_dataset(tmp_path / "a.npy"), EXAMPLE).inputs[0].shape == (3, 1, 8, 8)


def test_pickled_data_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled Python objects"):
        load_dataset(tmp_path / "obj.npy")

    import fractions  # any class outside torch's weights-only allowlist stands in for a malicious payload

    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="safe load refuses"):
        load_dataset(tmp_path / "evil.pt")


def test_corrupt_and_missing(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="unreadable or corrupt"):
        load_dataset(tmp_path / "bad.npz")
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="unreadable or corrupt"):
        load_dataset(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported data format"):
        load_dataset(tmp_path / "d.csv")


def test_shape_mismatch_names_both_shapes(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 3, 8, 8), np.float32))
    with pytest.raises(DataError) as info:
        fit_to_model(load_dataset(tmp_path / "a.npy"), EXAMPLE, role="calibration")
    assert "(3, 8, 8)" in info.value.message and "(1, 8, 8)" in info.value.message


def test_label_count_and_ambiguous_keys(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="3 samples but 2 labels"):
        load_dataset(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", a=np.zeros((3, 2)), b=np.zeros((3, 2)))
    with pytest.raises(DataError, match="cannot tell inputs from labels"):
        load_dataset(tmp_path / "e.npz")


def test_float_data_for_int_inputs_is_refused():
    ds = random_dataset((torch.zeros(1, 4),), 2, seed=0)
    with pytest.raises(DataError, match="integer"):
        fit_to_model(ds, (torch.zeros(1, 4, dtype=torch.int64),))


def test_batches_are_contiguous_copies():
    ds = random_dataset(EXAMPLE, 4, seed=0)
    batches = list(ds.batches(1))
    assert len(batches) == 4 and all(b[0].is_contiguous() and b[0].shape == (1, 1, 8, 8) for b in batches)
