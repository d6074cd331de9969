"""Reference vectors: a few inputs and what the user's model answers to them, stored in every package, so that any
machine that runs the program (here, a board, an emulator) can be checked for computing the right answer before its
timings are believed.

The file is ``reference.npz`` beside ``model.pte`` (numpy's format, read with ``allow_pickle=False``):

    input_<i>      the K reference sets of input i, stacked: K x (the program's shape of input i)
    expected_<j>   the user's model's output j for each set (eager fp32, as handed in): K x (output j's shape)
    program_<j>    what this program answered when it was built (the ExecuTorch runtime on the build machine)

The manifest's ``reference`` section holds its sha256, where the inputs came from, and per output the program's
fidelity to the user's model on these sets at build time. A device passes the check when every output keeps
``SQNR(device vs your model) >= min(build-time SQNR - MARGIN_DB, FLOOR_DB)``: an int8 program built at 30 dB must
still give at least 20 dB on the board, an fp32 one at least 60 dB. A board that computes garbage (a broken kernel,
a wrong library, qemu's ``-cpu max`` and its SME int8 kernels) falls far below. Reading this module needs numpy only.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ._contract import Contract
from .errors import ProfileError, ProgramError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import ArrayLike

REFERENCE_NAME = "reference.npz"
#: how much lower than at build time a device's SQNR may be ...
MARGIN_DB = 10.0
#: ... and the most a check ever asks for (fp32 programs agree with eager to 100+ dB; other CPUs sum differently)
FLOOR_DB = 60.0
DEFAULT_SAMPLES = 4
DEFAULT_MAX_MB = 8.0


@dataclass(frozen=True)
class ReferenceOutput(Contract):
    index: int
    shape: list[int]  # of one set (without the K dimension)
    dtype: str
    build_sqnr_db: float | None  # the program vs the user's model on these sets at build time (None: identical)
    build_cosine_min: float
    required_sqnr_db: float  # what a device must reach: min(build - MARGIN_DB, FLOOR_DB)


@dataclass(frozen=True)
class ReferenceInput(Contract):
    shape: list[int]  # of one set (without the K dimension)
    dtype: str


@dataclass(frozen=True)
class ReferenceSection(Contract):
    """The manifest's ``reference``: the reference vectors stored beside the program."""

    file: str
    sha256: str
    size_bytes: int
    samples: int  # input sets (each one run of the program)
    source: str  # where the inputs came from
    inputs: list[ReferenceInput]  # shape (of one set) and dtype of each input
    outputs: list[ReferenceOutput]
    rule: str = f"device SQNR against your model >= min(build-time SQNR - {MARGIN_DB:g} dB, {FLOOR_DB:g} dB)"


@dataclass(frozen=True)
class OutputCheck(Contract):
    index: int
    finite: bool  # False: the device gave NaN or inf
    sqnr_db: float | None  # None: identical to the user's model (or not finite)
    cosine_min: float
    max_abs_error: float | None
    required_sqnr_db: float
    ok: bool
    top1_agreement: float | None = None


@dataclass(frozen=True)
class ReferenceCheck(Contract):
    """What running the reference vectors gave where the program was profiled."""

    status: str  # passed | failed | absent (a package from before reference vectors) | skipped (--no-check) | n/a
    note: str = ""
    samples: int = 0
    outputs: list[OutputCheck] = field(default_factory=list)


@dataclass
class ReferenceVectors:
    """A package's reference vectors, read and checked against its manifest."""

    section: ReferenceSection
    inputs: list[np.ndarray]  # K x (one set's shape of input i)
    expected: list[np.ndarray]  # K x (output j's shape)

    def input_bytes(self) -> bytes:
        """All K sets, one after another, each its inputs in order (what the runner's --check-inputs reads)."""
        k = self.section.samples
        return b"".join(self.inputs[i][s].tobytes() for s in range(k) for i in range(len(self.inputs)))

    def set_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(a.shape[1:]) for a in self.inputs]


def sqnr_db(ref: ArrayLike, got: ArrayLike) -> float | None:
    """10·log10(Σref² / Σ(ref−got)²); None when identical (the same rule as verify)."""
    import numpy as np

    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = float(((got - ref) ** 2).sum())
    if noise == 0:
        return None
    signal = float((ref**2).sum())
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def required_db(build_sqnr: float | None) -> float:
    return FLOOR_DB if build_sqnr is None else round(min(build_sqnr - MARGIN_DB, FLOOR_DB), 3)


def _arrays(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """torch tensors → numpy arrays numpy can store (bfloat16 as its bits, uint16)."""
    import torch

    out = []
    for t in tensors:
        t = t.detach().contiguous()
        out.append((t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy())
    return out


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def make_reference(
    inputs: Sequence[Sequence[torch.Tensor]],
    expected: Sequence[Sequence[torch.Tensor]],
    program: Sequence[Sequence[torch.Tensor]],
    source: str,
    max_mb: float = DEFAULT_MAX_MB,
) -> tuple[bytes, ReferenceSection] | tuple[None, str]:
    """The ``reference.npz`` bytes and the manifest section for K sets (``inputs[k]``: one set's tensors, in order;
    ``expected[k]`` / ``program[k]``: the user's model's and this program's outputs for it). Sets are dropped from the
    end to stay under ``max_mb``; ``(None, why)`` when not even one fits."""
    import numpy as np
    import torch

    def size(k: int) -> int:
        return sum(t.numel() * t.element_size() for sets in (inputs, expected, program) for t in sets[k])

    per_set = size(0) if inputs else 0
    k = min(len(inputs), int(max_mb * 2**20 // per_set) if per_set else 0)
    if k < 1:
        return None, (
            f"one reference set is {per_set / 2**20:.1f} MiB, over the {max_mb:g} MiB cap: none stored "
            "(raise --reference-max-mb to keep them)"
        )
    arrays = {}
    for i in range(len(inputs[0])):
        arrays[f"input_{i}"] = np.stack(_arrays([inputs[s][i] for s in range(k)]))
    outputs = []
    for j in range(len(expected[0])):
        exp = torch.stack([expected[s][j].float() for s in range(k)])
        got = torch.stack([program[s][j].float() for s in range(k)])
        arrays[f"expected_{j}"] = exp.numpy()
        arrays[f"program_{j}"] = got.numpy()
        build = sqnr_db(exp.numpy(), got.numpy())
        cos = torch.nn.functional.cosine_similarity(exp.reshape(k, -1).double(), got.reshape(k, -1).double(), dim=1)
        outputs.append(
            ReferenceOutput(
                index=j,
                shape=list(expected[0][j].shape),
                dtype="float32",
                build_sqnr_db=None if build is None else round(build, 3),
                build_cosine_min=round(float(cos.min()), 6),
                required_sqnr_db=required_db(build),
            )
        )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    section = ReferenceSection(
        file=REFERENCE_NAME,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        samples=k,
        source=source,
        inputs=[ReferenceInput(list(t.shape), _dtype(t)) for t in inputs[0]],
        outputs=outputs,
    )
    return data, section


def load_reference(package: Path, section: ReferenceSection) -> ReferenceVectors:
    """Read a package's reference vectors, checked against the manifest.

    Raises:
        ProgramError: missing, altered (sha256), unreadable, or not shaped as the manifest says.
    """
    import numpy as np

    path = Path(package) / section.file
    hint = "rebuild the package (its reference vectors are written by edgekit build), or profile with --no-check"
    try:
        data = path.read_bytes()
    except OSError:
        raise ProgramError(f"{path} is missing: the package's reference vectors are gone", hint) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != section.sha256:
        raise ProgramError(
            f"{path} does not match its manifest (sha256 {actual[:12]}… ≠ {section.sha256[:12]}…): the "
            "reference vectors changed after the build",
            hint,
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            inputs = [z[f"input_{i}"] for i in range(len(section.inputs))]
            expected = [z[f"expected_{j}"] for j in range(len(section.outputs))]
    except (ValueError, KeyError, OSError) as exc:
        raise ProgramError(f"{path} is not a reference file edgekit can read ({str(exc)[:100]})", hint) from None
    for i, (a, spec) in enumerate(zip(inputs, section.inputs)):
        if list(a.shape) != [section.samples, *spec.shape]:
            raise ProgramError(
                f"{path}: input_{i} has shape {list(a.shape)}, the manifest says {[section.samples, *spec.shape]}",
                hint,
            )
    return ReferenceVectors(section, inputs, expected)


def compare(ref: ReferenceVectors, raw: bytes, where: str) -> ReferenceCheck:
    """The device's raw outputs for the K sets (each set's outputs one after another) against the user's model.

    Raises:
        ProfileError: the outputs do not have the size the reference says (a program that changed shape).
    """
    import numpy as np

    k = ref.section.samples
    sizes = [int(np.prod(o.shape)) * 4 for o in ref.section.outputs]
    if len(raw) != k * sum(sizes):
        raise ProfileError(
            f"the reference check {where} returned {len(raw)} bytes of outputs, {k * sum(sizes)} were expected",
            "rebuild the package",
        )
    got: list[list[np.ndarray]] = [[] for _ in ref.section.outputs]
    offset = 0
    for _ in range(k):
        for j, o in enumerate(ref.section.outputs):
            got[j].append(np.frombuffer(raw, np.float32, sizes[j] // 4, offset).reshape(o.shape))
            offset += sizes[j]
    checks = []
    for j, o in enumerate(ref.section.outputs):
        exp, dev = ref.expected[j].astype(np.float64), np.stack(got[j]).astype(np.float64)
        finite = bool(np.isfinite(dev).all())
        s = sqnr_db(exp, dev) if finite else None
        flat_e, flat_d = exp.reshape(k, -1), dev.reshape(k, -1)
        denom = np.linalg.norm(flat_e, axis=1) * np.linalg.norm(flat_d, axis=1)
        cos = np.where(denom > 0, (flat_e * flat_d).sum(1) / np.where(denom > 0, denom, 1.0), 1.0)
        top1 = None
        if len(o.shape) == 2 and o.shape[-1] > 1:  # class scores: does the device pick the user's model's class?
            rows_e, rows_d = exp.reshape(-1, o.shape[-1]), dev.reshape(-1, o.shape[-1])
            top1 = round(float((rows_e.argmax(1) == rows_d.argmax(1)).mean()), 6) if finite else 0.0
        checks.append(
            OutputCheck(
                index=j,
                finite=finite,
                sqnr_db=None if s is None else round(max(s, -999.0), 3),
                cosine_min=round(float(cos.min()), 6) if finite else -1.0,
                max_abs_error=float(np.abs(exp - dev).max()) if finite else None,
                required_sqnr_db=o.required_sqnr_db,
                ok=finite and (s is None or s >= o.required_sqnr_db),
                top1_agreement=top1,
            )
        )
    failed = [c for c in checks if not c.ok]
    return ReferenceCheck(
        status="failed" if failed else "passed",
        samples=k,
        outputs=checks,
        note=failure_line(failed, ref.section, where)
        if failed
        else f"{k} reference set(s) agree with your model {where}",
    )


def failure_line(failed: list[OutputCheck], section: ReferenceSection, where: str) -> str:
    worst = min(failed, key=lambda c: -1e9 if not c.finite else c.sqnr_db)
    built = next(o for o in section.outputs if o.index == worst.index).build_sqnr_db
    have = "NaN/inf" if not worst.finite else f"{worst.sqnr_db:.1f} dB SQNR"
    return (
        f"the program computes wrong results {where}: output {worst.index} is {have} against your model on the "
        f"reference inputs (it gave {'exact outputs' if built is None else f'{built:.1f} dB'} when built; at least "
        f"{worst.required_sqnr_db:.1f} dB expected)"
    )
