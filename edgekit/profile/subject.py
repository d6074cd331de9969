"""What a profile runs: a program (a ``.pte`` or a package, checked against its manifest) or an eager model,
and the input bytes the worker feeds it (the user's data checked against the program, or seeded random data)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import ConfigError, DataError, ProgramError, UsageError
from ..program import DTYPE_BYTES, ProgramInfo, TensorMeta, data_file_problem, inspect_program
from ..targets import Target, target_from_dict

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

    from ..data import DataSource
    from ..manifest import DynamicDimInfo
    from ..reference import ReferenceVectors
    from ..specs import InputSpec


@dataclass
class Subject:
    kind: str  # "program" | "eager"
    description: dict[str, object]  # what was profiled, as the result's ``subject`` records it
    target: Target | None
    pte: Path | None = None
    info: ProgramInfo | None = None
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    eager_spec: str | None = None
    ranges: list[DynamicDimInfo] = field(default_factory=list)  # a package's dynamic dimensions (model.dynamic_dims)
    reference: ReferenceVectors | None = None  # the package's reference vectors, if it has them
    reference_note: str = ""  # why there are none


def resolve_program(path: str | Path, method: str = "forward") -> Subject:
    """A ``.pte`` or a package folder → the subject to profile (program info, the package's target).

    Raises:
        ProgramError: missing, not a program, corrupt metadata, no such method, or a package whose manifest is
            invalid or whose sha256 does not match.
    """
    from ..manifest import read_manifest

    p = Path(path)
    target, ranges = None, []
    desc: dict[str, object] = {"path": str(p)}
    if p.is_dir():
        manifest = read_manifest(p)
        pte = p / manifest.program.file
        if not pte.is_file():
            raise ProgramError(f"package {p} has no {pte.name}", "rebuild the package")
        data = pte.read_bytes()  # read once: hashed here, parsed by inspect_program
        actual = hashlib.sha256(data).hexdigest()
        expected = manifest.program.sha256
        if actual != expected:
            raise ProgramError(
                f"{pte} does not match its manifest (sha256 {actual[:12]}… ≠ {expected[:12]}…): the file "
                "changed after the build",
                "rebuild the package, or profile the .pte file directly",
            )
        if manifest.program.data is not None:  # and so must the program's external weights (a tied table)
            problem = data_file_problem(p, manifest.program.data)
            if problem == "missing":
                raise ProgramError(
                    f"{p / manifest.program.data.file} is missing: the program loads its tied embedding table from it "
                    "(manifest program.data)",
                    "copy model.ptd with model.pte (the whole package folder), or rebuild the package",
                )
            if problem is not None:
                raise ProgramError(
                    f"{p / manifest.program.data.file} is damaged: {problem}",
                    "copy the whole package folder again, or rebuild the package",
                )
        try:
            target = target_from_dict(manifest.target, f"{p / 'manifest.json'}#target")
        except ConfigError:  # an edited target section: profile with the default settings
            target = None
        desc.update({"package": str(p), "model": manifest.model.spec, "target": manifest.target.get("name")})
        ranges = list(manifest.model.dynamic_dims)
        if manifest.reference is not None:
            from ..reference import load_reference

            reference, note = load_reference(p, manifest.reference), ""
        else:
            reference, note = None, "a package from before reference vectors: its answers are not checked"
    else:
        if p.suffix == ".json" or p.name == "manifest.json":
            raise ProgramError(f"{p} is a manifest, not a program", f"pass the package folder {p.parent} instead")
        pte, data = p, None
        reference, note = None, "a bare .pte has no reference vectors: profile its package folder to check its answers"
    info = inspect_program(pte, data)
    info.method(method)  # raises with the list of methods
    desc.update({"pte": str(pte), "sha256": info.sha256, "size_bytes": info.size_bytes, "method": method})
    return Subject("program", desc, target, pte=pte, info=info, ranges=ranges, reference=reference, reference_note=note)


def eager_subject(spec: str, input_specs: Sequence[InputSpec | Sequence[int]], batch: int | None) -> Subject:
    from ..models import InputSpec

    specs = [s if isinstance(s, InputSpec) else InputSpec(tuple(s), "float32") for s in input_specs]
    if batch is not None:
        specs = [InputSpec((batch, *s.shape[1:]), s.dtype) for s in specs]
    if not specs:
        raise UsageError("--eager needs --input for each model input", "e.g. --eager pkg.nets:make --input 1x3x224x224")
    return Subject(
        "eager",
        {"eager": str(spec)},
        None,
        eager_spec=str(spec),
        shapes=[s.shape for s in specs],
        dtypes=[s.dtype for s in specs],
    )


def batch_shapes(metas: Sequence[TensorMeta], batch: int | None, data_rows: int | None) -> list[tuple[int, ...]]:
    """The shapes to run: the program's own, or with ``batch`` (dynamic programs only, within their bound)."""
    shapes = []
    for i, m in enumerate(metas):
        shape = tuple(m.shape)
        want = batch
        if want is None and data_rows is not None and m.dynamic and shape:
            want = min(data_rows, shape[0])  # real inputs with fewer samples than the bound: run what was given
        if want is not None and shape and want != shape[0]:
            if not m.dynamic:
                raise UsageError(
                    f"--batch {want}: input {i} of this program has a static batch of {shape[0]}",
                    "build with --dynamic-batch MIN:MAX to profile other batch sizes",
                )
            if want > shape[0]:
                raise UsageError(
                    f"--batch {want} exceeds the program's largest batch, {shape[0]}",
                    f"use --batch 1..{shape[0]}, or rebuild with a larger --dynamic-batch MAX",
                )
            shape = (want, *shape[1:])
        shapes.append(shape)
    return shapes


def to_bytes(arr: ArrayLike, dtype: str) -> bytes:
    """The array as the program's element type. bfloat16 (which numpy lacks) is float32 rounded to its upper half."""
    import numpy as np

    if dtype == "bfloat16":
        bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
        return rounded.astype(np.uint16).tobytes()
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def random_inputs(shapes: list[tuple[int, ...]], dtypes: list[str]) -> list[np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = []
    for shape, dt in zip(shapes, dtypes):
        if dt.startswith("float") or dt == "bfloat16":
            arrays.append(rng.standard_normal(shape).astype(np.float32))
        elif dt == "bool":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 10, shape).astype(dt))
    return arrays


def program_inputs(
    subject: Subject, method: str, source: DataSource | None, batch: int | None = None
) -> tuple[list[bytes], str]:
    """The input bytes for a program (shapes and dtypes set on ``subject``): from ``source`` (checked), else random."""
    metas = subject.info.method(method).inputs
    subject.dtypes = [m.dtype for m in metas]
    if source is None:
        subject.shapes = batch_shapes(metas, batch, None)
        arrays, label = random_inputs(subject.shapes, subject.dtypes), "random (seed 0)"
    else:
        arrays, label = _user_inputs(subject, metas, source, batch)
    blobs = [to_bytes(a, dt) for a, dt in zip(arrays, subject.dtypes)]
    for i, (blob, shape, dt) in enumerate(zip(blobs, subject.shapes, subject.dtypes)):
        n = DTYPE_BYTES[dt]
        for d in shape:
            n *= d
        if len(blob) != n:  # pragma: no cover - a bug in the conversion above, not bad input
            raise DataError(f"input {i}: {len(blob)} bytes prepared for {n} needed")
    return blobs, label


def _user_inputs(
    subject: Subject, metas: Sequence[TensorMeta], source: DataSource, batch: int | None
) -> tuple[list[np.ndarray], str]:
    import numpy as np

    from ..data import load_dataset

    ds = source if hasattr(source, "inputs") else load_dataset(source)
    subject.shapes = batch_shapes(metas, batch, int(ds.inputs[0].shape[0]) if ds.inputs[0].dim() else None)
    if len(ds.inputs) != len(metas):
        raise DataError(
            f"--inputs {ds.source} has {len(ds.inputs)} input array(s) but the program takes {len(metas)}",
            "store one array per program input (x0, x1, ...)",
        )
    arrays = []
    for i, (t, shape, dt, meta) in enumerate(zip(ds.inputs, subject.shapes, subject.dtypes, metas)):
        arr = t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()
        if tuple(arr.shape) != tuple(shape):
            arr = _fit(arr, shape, meta.dynamic, f"--inputs {ds.source} input {i}")
        if str(arr.dtype) != dt:
            both_float = arr.dtype.kind == "f" and (dt.startswith("float") or dt == "bfloat16")
            if not both_float:
                raise DataError(
                    f"--inputs {ds.source} input {i} is {arr.dtype} but the program expects {dt}", f"save it as {dt}"
                )
        arrays.append(np.ascontiguousarray(arr))
    subject.shapes = [tuple(a.shape) for a in arrays]
    if subject.ranges:
        from ..dynamic import check_sizes

        check_sizes(subject.shapes, subject.ranges, f"--inputs {ds.source}")
    return arrays, ds.source


def _fit(arr: np.ndarray, shape: tuple[int, ...], dynamic: bool, what: str) -> np.ndarray:
    """The user's array as the program runs it: the program's batch of sample-first data, one sample given
    without its batch dimension, or (dynamic programs) any size up to the program's bound in each dimension.

    Raises:
        DataError: a rank or a size the program cannot take.
    """
    if tuple(arr.shape[1:]) == tuple(shape[1:]) and arr.shape[0] >= shape[0]:
        return arr[: shape[0]]  # sample-first data: take the program's batch
    if tuple(arr.shape) == tuple(shape[1:]) and shape[0] == 1:
        return arr[None]
    if dynamic and arr.ndim == len(shape) - 1:
        arr = arr[None]
    if dynamic and arr.ndim == len(shape):
        arr = arr[: shape[0]]
        for d in range(1, len(shape)):
            if arr.shape[d] > shape[d]:
                raise DataError(
                    f"{what} has size {arr.shape[d]} in dimension {d}, above the program's bound {shape[d]}",
                    f"give at most {shape[d]} there, or rebuild with a larger --dynamic-dim MAX",
                )
        return arr
    raise DataError(
        f"{what} has shape {tuple(arr.shape)} but the program expects {tuple(shape)}",
        "save N x " + "x".join(map(str, shape[1:])) + " samples",
    )
