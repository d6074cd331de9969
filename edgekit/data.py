"""Calibration, evaluation and profiling data, loaded without ever executing the file.

Sources: ``.npz`` (``numpy.load(allow_pickle=False)``), ``.npy``, ``.pt`` (``torch.load(weights_only=True)``),
a folder of such files (concatenated in name order), or, from Python, a callable returning samples.

Layout: arrays are sample-first, ``N x <one input's shape without its batch dimension>``. In an ``.npz`` or
a ``.pt`` dict, inputs are under ``x`` (or ``inputs``/``input``; several inputs as ``x0, x1, ...``) and
labels, when present, under ``y`` (or ``labels``/``label``/``targets``). A lone array is the inputs.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, Union

from .errors import DataError, first_line

if TYPE_CHECKING:
    import numpy as np
    import torch

INPUT_KEYS = ("x", "inputs", "input", "images", "data")
LABEL_KEYS = ("y", "labels", "label", "targets", "target")
SUFFIXES = (".npz", ".npy", ".pt")
#: the seeds of a build's random data: reproducible, and verification never reuses a calibration sample
CALIBRATION_SEED = 1
VERIFY_SEED = 2


@dataclass(frozen=True)
class Dataset:
    """Sample-first tensors: ``inputs[i]`` has shape ``(N, ...)``; ``labels`` has shape ``(N,)`` or is None."""

    inputs: tuple[torch.Tensor, ...]
    labels: torch.Tensor | None
    source: str
    retokenize: Callable[[int], Dataset] | None = None  # sentences: the same data at another token length

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])

    def take(self, n: int, start: int = 0) -> "Dataset":
        """The samples ``start .. start+n`` (fewer when the data is shorter)."""
        sl = slice(start, start + n)
        return Dataset(
            tuple(t[sl] for t in self.inputs),
            None if self.labels is None else self.labels[sl],
            self.source,
            None if self.retokenize is None else (lambda tokens: self.retokenize(tokens).take(n, start)),
        )

    def batches(self, batch: int = 1) -> Iterator[tuple[torch.Tensor, ...]]:
        """Model-ready input tuples of ``batch`` samples each; an incomplete last batch is dropped when batch > 1."""
        n = len(self)
        stop = n if batch == 1 else n - n % batch
        for i in range(0, stop, batch):
            yield tuple(t[i : i + batch].contiguous() for t in self.inputs)


class Tokenizer(Protocol):
    """What data loading asks of a model's tokenizer (``LoadedModel.tokenizer``; an hf: model's is
    :class:`edgekit.hf.TextTokenizer`): a text file, or random sentences, as token ids at the exported length."""

    def text_dataset(self, path: Path, tokens: int) -> Dataset: ...

    def random_sentences(self, examples: Sequence[torch.Tensor], n: int, *, seed: int, source: str) -> Dataset: ...


#: an array as a data file holds it (numpy from .npz/.npy, torch from .pt) or as a data function returns it
Array = Union["np.ndarray", "torch.Tensor"]
#: what a data argument may be: a path (a data file, a folder of them, a .txt of sentences for hf: models), a
#: :class:`Dataset`, or a callable returning samples (each a tensor or a tuple of tensors)
DataSource = Union[str, Path, Dataset, Callable[[], Iterable["torch.Tensor | Sequence[torch.Tensor]"]]]


def _pick(mapping: Mapping[str, Array], keys: Sequence[str]) -> Array | None:
    for k in keys:
        if k in mapping:
            return mapping[k]
    return None


def _split_mapping(mapping: Mapping[str, Array], path: str) -> tuple[list[Array], Array | None]:
    import re

    inputs = _pick(mapping, INPUT_KEYS)
    labels = _pick(mapping, LABEL_KEYS)
    if inputs is not None:
        return [inputs], labels
    numbered = sorted(
        (k for k in mapping if re.fullmatch(r"(x|input_?)(\d+)", k)), key=lambda k: int(re.sub(r"\D", "", k))
    )
    if numbered:
        return [mapping[k] for k in numbered], labels
    rest = [k for k in mapping if k not in LABEL_KEYS]
    if len(rest) == 1:
        return [mapping[rest[0]]], labels
    raise DataError(
        f"{path}: cannot tell inputs from labels among keys {sorted(mapping)}",
        "store inputs under 'x' (several as x0, x1, ...) and labels under 'y'",
    )


def _to_tensor(value: object, path: str) -> torch.Tensor:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise DataError(f"{path} holds Python objects, not numbers", "save plain numeric arrays")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DataError(
        f"{path}: expected arrays or tensors, found {type(value).__name__}", "save numeric arrays or tensors"
    )


def _load_file(path: Path) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    import numpy as np
    import torch

    name = str(path)
    suffix = path.suffix.lower()
    magic = {".npz": b"PK", ".npy": b"\x93NUMPY"}.get(suffix)
    if magic is not None:
        with open(path, "rb") as f:
            if f.read(len(magic)) != magic:
                # numpy would otherwise try the bytes as a pickle and blame pickling for plain junk
                raise DataError(
                    f"{name} is unreadable or corrupt (not a {suffix} file)",
                    "re-create it with numpy.savez / numpy.save",
                )
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                mapping = {k: z[k] for k in z.files}
            inputs, labels = _split_mapping(mapping, name)
        elif suffix == ".npy":
            inputs, labels = [np.load(path, allow_pickle=False)], None
        elif suffix in (".pt", ".pth"):
            obj = torch.load(path, weights_only=True, map_location="cpu")
            if isinstance(obj, torch.Tensor):
                inputs, labels = [obj], None
            elif isinstance(obj, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in obj):
                inputs, labels = list(obj), None
            elif isinstance(obj, dict):
                inputs, labels = _split_mapping(obj, name)
            else:
                raise DataError(
                    f"{name} holds a {type(obj).__name__}", "save a tensor, a tuple of tensors, or {'x': ..., 'y': ...}"
                )
        else:
            raise DataError(
                f"{name}: unsupported data format {suffix or '(no suffix)'}", "use .npz, .npy, .pt or a folder of them"
            )
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise DataError(
                f"{name} contains pickled Python objects, which edgekit will not execute", "save plain numeric arrays"
            ) from exc
        raise DataError(
            f"{name} is unreadable or corrupt: {exc}", "re-create the file with numpy.savez or torch.save"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, RuntimeError, KeyError) as exc:
        msg = first_line(exc)
        if "Unsupported global" in str(exc) or "Unsupported class" in str(exc):
            raise DataError(
                f"{name} contains Python objects that a safe load refuses", "save tensors only (torch.save(tensor))"
            ) from exc
        raise DataError(
            f"{name} is unreadable or corrupt ({msg[:160]})", "re-create the file with numpy.savez or torch.save"
        ) from exc
    return [_to_tensor(v, name) for v in inputs], (None if labels is None else _to_tensor(labels, name))


def load_dataset(source: DataSource, *, limit: int | None = None) -> Dataset:
    """Load a :class:`Dataset` from a file, a folder, or a callable.

    Args:
        source: path to .npz/.npy/.pt or a folder of them; or a callable returning an iterable of samples
            (each a tensor or tuple of tensors, with or without a leading batch dimension of 1).
        limit: keep at most this many samples.

    Raises:
        DataError: missing, unreadable, corrupt or pickled data, or inconsistent sample counts.
    """
    import torch

    if callable(source):
        samples = [s if isinstance(s, (tuple, list)) else (s,) for s in source()]
        if not samples:
            raise DataError("the data callable returned no samples", "return an iterable of tensors")
        inputs = [torch.stack([torch.as_tensor(s[i]) for s in samples]) for i in range(len(samples[0]))]
        ds = Dataset(tuple(inputs), None, getattr(source, "__name__", "callable"))
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"data file {path} does not exist", "check the path")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
            if not files:
                raise DataError(f"folder {path} has no .npz/.npy/.pt files", "put data files in it")
            parts = [_load_file(p) for p in files]
            if len({len(p[0]) for p in parts}) != 1:
                raise DataError(f"files in {path} hold different numbers of inputs", "give every file the same inputs")
            try:
                inputs = [torch.cat([_as_batch(p[0][i]) for p in parts]) for i in range(len(parts[0][0]))]
            except RuntimeError as exc:
                raise DataError(
                    f"files in {path} have different sample shapes", "give every sample the same shape"
                ) from exc
            have_labels = all(p[1] is not None for p in parts)
            labels = torch.cat([p[1].reshape(-1) for p in parts]) if have_labels else None
            ds = Dataset(tuple(inputs), labels, str(path))
        else:
            inputs, labels = _load_file(path)
            ds = Dataset(tuple(inputs), labels, str(path))
    n = {int(t.shape[0]) if t.dim() else 0 for t in ds.inputs}
    if len(n) != 1 or 0 in n:
        raise DataError(
            f"{ds.source}: inputs have different or zero sample counts {sorted(n)}",
            "stack samples along the first axis",
        )
    for i, t in enumerate(ds.inputs):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).reshape(len(ds), -1).any(1).nonzero()[0, 0])
            raise DataError(
                f"{ds.source}: input {i} holds NaN or infinity (first in sample {bad})",
                "clean the data: every value must be a finite number",
            )
    if ds.labels is not None and int(ds.labels.reshape(-1).shape[0]) != len(ds):
        raise DataError(
            f"{ds.source}: {len(ds)} samples but {ds.labels.reshape(-1).shape[0]} labels", "give one label per sample"
        )
    if ds.labels is not None:
        ds = Dataset(ds.inputs, ds.labels.reshape(-1).long(), ds.source)
    return ds.take(limit) if limit else ds


def _as_batch(t: torch.Tensor) -> torch.Tensor:
    # One sample saved per file in a folder: give it a sample axis so files concatenate.
    return t if t.dim() and t.shape[0] >= 1 else t.unsqueeze(0)


def fit_to_model(ds: Dataset, example_inputs: Sequence[torch.Tensor], *, role: str = "calibration") -> Dataset:
    """Check ``ds`` against the model's example inputs and cast it to their dtypes.

    A sample's shape must equal one example input without its batch dimension. Data that was saved with
    that batch dimension of 1 kept per sample (``N x 1 x C x H x W``) is accepted and squeezed.

    Raises:
        DataError: the number of inputs or a sample's shape does not match, naming both shapes.
    """
    if len(ds.inputs) != len(example_inputs):
        raise DataError(
            f"{role} data {ds.source} has {len(ds.inputs)} input array(s) but the model takes {len(example_inputs)}",
            "store one array per model input (x0, x1, ...)",
        )
    fixed = []
    for i, (t, ex) in enumerate(zip(ds.inputs, example_inputs)):
        want = tuple(ex.shape[1:])
        got = tuple(t.shape[1:])
        if got != want and t.dim() == ex.dim() + 1 and t.shape[1] == 1 and tuple(t.shape[2:]) == want:
            t = t.squeeze(1)
            got = want
        if got != want:
            shape = "x".join(map(str, ex.shape))
            raise DataError(
                f"{role} data {ds.source} input {i} has samples of shape {got} but the model expects {want} "
                f"(example input {shape})",
                f"save it as an N x {'x'.join(map(str, want)) or 'scalar'} array",
            )
        if t.dtype != ex.dtype:
            if t.dtype.is_floating_point and not ex.dtype.is_floating_point:
                raise DataError(
                    f"{role} data {ds.source} input {i} is {str(t.dtype)[6:]} but the model expects {str(ex.dtype)[6:]}",
                    "save integer data for integer inputs",
                )
            t = t.to(ex.dtype)
        fixed.append(t.contiguous())
    return Dataset(tuple(fixed), ds.labels, ds.source, ds.retokenize)


def resolve_data(
    source: DataSource | None,
    example_inputs: Sequence[torch.Tensor],
    *,
    role: str,
    limit: int | None = None,
    tokenizer: Tokenizer | None = None,
) -> Dataset | None:
    """``load_dataset`` + ``fit_to_model``, or None when ``source`` is None. A ``.txt`` file holds sentences, tokenised
    with ``tokenizer`` (an hf: model's) to the example inputs' length."""
    if source is None:
        return None
    if not isinstance(source, Dataset) and not callable(source) and Path(source).suffix.lower() == ".txt":
        if not Path(source).is_file():
            raise DataError(f"{role} text file {source} does not exist", "check the path")
        if tokenizer is None:
            raise DataError(
                f"{source} is a text file: it needs a model with a tokenizer",
                "use an hf:PATH model, or save token ids as .npz",
            )
        ds = tokenizer.text_dataset(Path(source), int(example_inputs[0].shape[1]))
        ds = ds.take(limit) if limit else ds
        return fit_to_model(ds, example_inputs, role=role)
    ds = source if isinstance(source, Dataset) else load_dataset(source, limit=limit)
    ds = ds.take(limit) if limit else ds
    return fit_to_model(ds, example_inputs, role=role)


def random_dataset(
    example_inputs: Sequence[torch.Tensor],
    n: int,
    *,
    seed: int,
    source: str = "random",
    tokenizer: Tokenizer | None = None,
) -> Dataset:
    """``n`` random samples shaped like the example inputs (normal floats / small ints; with an hf: model's
    ``tokenizer``, random sentences of its vocabulary with a matching attention mask)."""
    import torch

    from .specs import InputSpec

    if tokenizer is not None:
        return tokenizer.random_sentences(example_inputs, n, seed=seed, source=source)

    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for ex in example_inputs:
        spec = InputSpec((n, *ex.shape[1:]), str(ex.dtype).removeprefix("torch."))
        tensors.append(spec.make(gen))
    return Dataset(tuple(tensors), None, source)


def check_data_paths(**sources: DataSource | None) -> None:
    """Each data source given as a path exists (``role=source``; a ``module:function`` spec, a dataset or a callable
    is left to be resolved later): a typo fails at once, before the stack is imported and the model loaded.

    Raises:
        DataError: a path that does not exist, named with its role.
    """
    for role, source in sources.items():
        if isinstance(source, (str, Path)) and ":" not in str(source) and not Path(source).exists():
            raise DataError(f"{role} data {source} does not exist", "check the path")


def resolve_data_source(source: str | None) -> str | Dataset | None:
    """A data path stays a path; ``module:function`` (or ``file.py:function``) is called for a dataset: a
    :class:`Dataset`, or a mapping with the same keys as a data file (``x`` or ``x0, x1, ...``, and ``y``).

    Raises:
        DataError: the function raises, or returns something else.
    """
    if source is None:
        return None
    if ":" not in source or Path(source).exists():
        return source
    import torch

    from .specs import import_object

    fn = import_object(source)
    try:
        value = fn()
    except Exception as exc:
        raise DataError(
            f"data function {source} raised {type(exc).__name__}: {first_line(exc)}",
            "fix the function, or save the data to a file",
        ) from exc
    if isinstance(value, Dataset):
        return value
    if isinstance(value, dict) and "x" in value and isinstance(value["x"], (list, tuple)):  # {"x": [a, b], "y": ...}
        value = {**{f"x{i}": t for i, t in enumerate(value["x"])}, **({"y": value["y"]} if "y" in value else {})}
    if isinstance(value, dict):
        xs, y = _split_mapping(value, source)  # the same keys as data files: x (or x0, x1, ...) and y
        return Dataset(tuple(torch.as_tensor(t) for t in xs), None if y is None else torch.as_tensor(y).long(), source)
    raise DataError(
        f"data function {source} returned {type(value).__name__}",
        "return a dict like {'x': array, 'y': labels} (several inputs: x0, x1, ... or 'x': [a, b]) or a Dataset",
    )
