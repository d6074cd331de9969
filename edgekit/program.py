"""Read an ExecuTorch program (``.pte``): its methods, input/output metadata and planned memory.

The flatbuffer is walked directly, with every offset bounds-checked, following the schema the executorch wheel
ships (``executorch/schema/program.fbs``). No exir import (7 s) and no torch: profiling starts in a fraction of
a second, and a corrupt or hostile file becomes a :class:`ProgramError`, never an IndexError or a crash.
Running a program in-process (used by verification) goes through ``executorch.runtime``; the profiler runs
programs in a separate process.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ProgramError, first_line

if TYPE_CHECKING:
    import torch

    from .manifest import PlannedMemory, ProgramData

# ExecuTorch ScalarType codes (schema/scalar_type.fbs) to dtype names; the ones a program's inputs may use.
SCALAR_TYPES = {
    0: "uint8",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "int64",
    5: "float16",
    6: "float32",
    7: "float64",
    11: "bool",
    15: "bfloat16",
    27: "uint16",
    28: "uint32",
    29: "uint64",
}
DTYPE_BYTES = {
    "uint8": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "bool": 1,
    "bfloat16": 2,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
}
PTE_MAGIC_OFFSET = 4  # flatbuffer file identifier "ET12" etc. sits at bytes 4..8
MAX_RANK = 16
_TENSOR = 5  # KernelTypes union: NONE, Null, Int, Bool, Double, Tensor, ...
_INT, _BOOL, _DOUBLE = 2, 3, 4


@dataclass(frozen=True)
class TensorMeta:
    """A tensor's shape (the upper bound when dynamic), dtype, and whether its shape may shrink at run time."""

    shape: tuple[int, ...]
    dtype: str
    dynamic: bool = False

    def to_dict(self) -> dict[str, list[int] | str | bool]:
        return {"shape": list(self.shape), "dtype": self.dtype, "dynamic": self.dynamic}

    @property
    def nbytes(self) -> int:
        n = DTYPE_BYTES[self.dtype]
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class MethodInfo:
    name: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    planned_buffer_bytes: tuple[int, ...]  # one per memory-planned buffer (mem_id 0 is reserved and skipped)
    delegates: tuple[str, ...]
    operators: tuple[str, ...]
    constants: tuple[int | float | bool, ...] | None = None  # a constant method (no inputs, scalar outputs): its values

    @property
    def planned_bytes(self) -> int:
        return int(sum(self.planned_buffer_bytes))


@dataclass(frozen=True)
class ProgramInfo:
    path: str
    size_bytes: int
    sha256: str
    methods: dict[str, MethodInfo] = field(default_factory=dict)

    def method(self, name: str = "forward") -> MethodInfo:
        if name not in self.methods:
            raise ProgramError(
                f"{self.path} has no method {name!r}", "methods in this program: " + ", ".join(sorted(self.methods))
            )
        return self.methods[name]

    def planned_memory(self, method: str = "forward") -> PlannedMemory:
        """What ExecuTorch's memory planner allocated for ``method``, as the manifest records it."""
        from .manifest import PlannedMemory

        m = self.method(method)
        return PlannedMemory(
            method=method,
            planned_buffers_bytes=list(m.planned_buffer_bytes),
            planned_bytes=m.planned_bytes,
            planned_mb=round(m.planned_bytes / 2**20, 4),
        )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_file_problem(folder: str | Path, data: ProgramData) -> str | None:
    """What is wrong with a package's external weights file (``data``: the manifest's ``program.data``), in words:
    ``missing``, or the sha256 that is not the manifest's; None when it is the file the program was built with."""
    path = Path(folder) / data.file
    if not path.is_file():
        return "missing"
    actual = sha256_file(path)
    return None if actual == data.sha256 else f"sha256 {actual[:12]}… is not the manifest's {data.sha256[:12]}…"


class _Corrupt(Exception):
    """An offset or a value outside what the schema allows (turned into ProgramError with the file name)."""


class FlatTable:
    """One flatbuffer table: fields by slot number (the schema's declaration order), every read bounds-checked."""

    __slots__ = ("buf", "pos", "vtable", "vt_len")

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - read_at(buf, "<i", pos)
        self.vt_len = read_at(buf, "<H", self.vtable)

    def slot_offset(self, slot: int) -> int:
        voff = 4 + 2 * slot
        return read_at(self.buf, "<H", self.vtable + voff) if voff + 2 <= self.vt_len else 0

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        off = self.slot_offset(slot)
        return read_at(self.buf, fmt, self.pos + off) if off else default

    def _ref(self, slot: int) -> int | None:
        off = self.slot_offset(slot)
        if not off:
            return None
        at = self.pos + off
        return at + read_at(self.buf, "<I", at)

    def table(self, slot: int) -> "FlatTable | None":
        ref = self._ref(slot)
        return None if ref is None else FlatTable(self.buf, ref)

    def string(self, slot: int) -> str:
        ref = self._ref(slot)
        if ref is None:
            return ""
        n = read_at(self.buf, "<I", ref)
        _need(self.buf, ref + 4, n)
        try:
            return self.buf[ref + 4 : ref + 4 + n].decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt("a name is not UTF-8") from None

    def _vector(self, slot: int, width: int) -> tuple[int, int]:
        ref = self._ref(slot)
        if ref is None:
            return 0, 0
        n = read_at(self.buf, "<I", ref)
        _need(self.buf, ref + 4, n * width)
        return ref + 4, n

    def scalars(self, slot: int, fmt: str) -> list[int]:
        width = struct.calcsize(fmt)
        start, n = self._vector(slot, width)
        return list(struct.unpack_from(f"<{n}{fmt[-1]}", self.buf, start)) if n else []

    def tables(self, slot: int) -> list["FlatTable"]:
        start, n = self._vector(slot, 4)
        return [FlatTable(self.buf, start + 4 * i + read_at(self.buf, "<I", start + 4 * i)) for i in range(n)]


def _need(buf: bytes, start: int, length: int) -> None:
    if start < 0 or length < 0 or start + length > len(buf):
        raise _Corrupt(f"an offset points outside the file ({start}+{length} > {len(buf)} bytes)")


def read_at(buf: bytes, fmt: str, at: int) -> int:
    """The value of struct format ``fmt`` at byte ``at`` of ``buf`` (ProgramError when it is not all there)."""
    _need(buf, at, struct.calcsize(fmt))
    return struct.unpack_from(fmt, buf, at)[0]


def _tensor_meta(values: list[FlatTable], index: int, what: str) -> TensorMeta:
    if not 0 <= index < len(values):
        raise _Corrupt(f"{what} refers to value {index} of {len(values)}")
    ev = values[index]
    if ev.scalar(0, "<B") != _TENSOR:
        raise _Corrupt(f"{what} is not a tensor (only tensor inputs and outputs are supported)")
    t = ev.table(1)
    if t is None:
        raise _Corrupt(f"{what} has no tensor metadata")
    code = t.scalar(0, "<b")
    if code not in SCALAR_TYPES:
        raise _Corrupt(f"{what} has an unknown scalar type {code}")
    sizes = tuple(t.scalars(2, "<i"))
    if len(sizes) > MAX_RANK or any(s < 0 for s in sizes):
        raise _Corrupt(f"{what} has an impossible shape {list(sizes)[:8]}")
    return TensorMeta(sizes, SCALAR_TYPES[code], t.scalar(8, "<b") != 0)  # shape_dynamism 0 = STATIC


def _scalar(ev: FlatTable, what: str) -> int | float | bool:
    kind, t = ev.scalar(0, "<B"), ev.table(1)
    if t is None or kind not in (_INT, _BOOL, _DOUBLE):
        raise _Corrupt(f"{what} is neither a tensor nor an int, bool or double")
    if kind == _INT:
        return int(t.scalar(0, "<q"))
    if kind == _BOOL:
        return bool(t.scalar(0, "<B"))
    return float(t.scalar(0, "<d"))


def _method(plan: FlatTable) -> MethodInfo:
    name = plan.string(0)
    if not name:
        raise _Corrupt("a method has no name")
    values = plan.tables(2)
    buffers = plan.scalars(8, "<q")
    if any(b < 0 for b in buffers):
        raise _Corrupt(f"method {name!r} plans a buffer of negative size")
    ops = []
    for op in plan.tables(6):
        overload = op.string(1)
        ops.append(op.string(0) + (f".{overload}" if overload else ""))
    inputs, outputs = plan.scalars(3, "<i"), plan.scalars(4, "<i")
    if not inputs and outputs and all(0 <= i < len(values) and values[i].scalar(0, "<B") != _TENSOR for i in outputs):
        # a constant method (what ExecuTorch's text runner reads: get_max_seq_len, get_eos_ids, ...)
        return MethodInfo(name, (), (), (), (), (), tuple(_scalar(values[i], f"output of {name!r}") for i in outputs))
    return MethodInfo(
        name=name,
        inputs=tuple(_tensor_meta(values, i, f"input {k} of {name!r}") for k, i in enumerate(plan.scalars(3, "<i"))),
        outputs=tuple(_tensor_meta(values, i, f"output {k} of {name!r}") for k, i in enumerate(plan.scalars(4, "<i"))),
        planned_buffer_bytes=tuple(int(b) for b in buffers[1:]),
        delegates=tuple(d.string(0) for d in plan.tables(7)),
        operators=tuple(ops),
    )


def _check_segments(data: bytes, root: FlatTable) -> None:
    """The extended header ("eh00" after the identifier) says where the data segments start; each must fit."""
    if data[8:12] != b"eh00":
        return
    program_size, base = read_at(data, "<Q", 16), read_at(data, "<Q", 24)
    if program_size > len(data) or base > len(data):
        raise _Corrupt(f"it is truncated: its header says {max(program_size, base)} bytes, the file has {len(data)}")
    for seg in root.tables(4):
        end = base + seg.scalar(0, "<Q") + seg.scalar(1, "<Q")
        if end > len(data):
            raise _Corrupt(f"it is truncated: a data segment ends at byte {end}, the file has {len(data)}")


def inspect_program(path: str | Path, data: bytes | None = None) -> ProgramInfo:
    """Read a ``.pte`` file's methods, tensor metadata and memory plan, validating them.

    Args:
        path: the program file.
        data: its bytes, when the caller already holds them (saves reading and hashing the file again).

    Raises:
        ProgramError: the file is missing, empty, not an ExecuTorch program, or its metadata is corrupt.
    """
    p = Path(path)
    if data is None:
        if not p.is_file():
            raise ProgramError(f"program {p} does not exist", "build one with `edgekit build`, or check the path")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ProgramError(f"cannot read {p}: {exc.strerror or exc}") from None
    if len(data) < 16 or data[PTE_MAGIC_OFFSET : PTE_MAGIC_OFFSET + 2] != b"ET":
        raise ProgramError(
            f"{p} is not an ExecuTorch program (no ET flatbuffer header)",
            "pass a .pte written by edgekit build or to_executorch()",
        )
    try:
        root = FlatTable(data, read_at(data, "<I", 0))
        methods = {}
        for plan in root.tables(1):
            m = _method(plan)
            methods[m.name] = m
        if not methods:
            raise _Corrupt("it has no methods")
        _check_segments(data, root)
    except (_Corrupt, struct.error, RecursionError) as exc:
        raise ProgramError(
            f"{p} is not a readable ExecuTorch program: {exc}", "the file may be truncated or corrupt; rebuild it"
        ) from None
    return ProgramInfo(str(p), len(data), hashlib.sha256(data).hexdigest(), methods)


class InProcessProgram:
    """A program loaded into this process with ``executorch.runtime`` (for verification), from a file or bytes."""

    def __init__(self, program: str | Path | bytes, method: str = "forward", data: bytes | None = None):
        """``data``: the program's external weights (a .ptd file's bytes), when it has any; a program read from a
        file finds its own beside it (``model.pte`` → ``model.ptd``)."""
        import tempfile

        from ._noise import quiet

        name = "the lowered program" if isinstance(program, (bytes, bytearray)) else str(program)
        data_path = None
        if data is None and not isinstance(program, (bytes, bytearray)) and Path(program).with_suffix(".ptd").is_file():
            data_path = Path(program).with_suffix(".ptd")
        elif data is not None:  # the runtime reads external weights from a file: one that lives as long as this
            self._data_dir = tempfile.TemporaryDirectory(prefix="edgekit-ptd-")
            data_path = Path(self._data_dir.name) / "model.ptd"
            data_path.write_bytes(data)
        with quiet():
            import executorch.kernels.quantized  # noqa: F401  (registers quantized_decomposed::embedding_byte & co.)
            from executorch.runtime import Runtime

            try:
                self._program = Runtime.get().load_program(
                    program if isinstance(program, (bytes, bytearray)) else str(program),
                    data_path=None if data_path is None else str(data_path),
                )
                self._method = self._program.load_method(method)
            except Exception as exc:
                with_data = (
                    ""
                    if data_path is None
                    else f" with {'its external weights' if data is not None else data_path.name}"
                )
                raise ProgramError(
                    f"the ExecuTorch runtime could not load {name}{with_data}: {first_line(exc, 200)}",
                    "rebuild the program; check the target's backend"
                    + ("" if data_path else "; a program that keeps weights in a .ptd file needs it beside it"),
                ) from exc

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        try:
            return tuple(self._method.execute(list(inputs)))
        except Exception as exc:
            shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs)
            raise ProgramError(
                f"the program failed on inputs of shape {shapes}: {first_line(exc, 200)}",
                "check the inputs match the program",
            ) from exc
