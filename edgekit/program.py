"""Read an ExecuTorch program (``.pte``): its methods, input/output metadata and planned memory.

Reading deserializes the flatbuffer only; nothing in the file is executed. Running it in-process (used by
verification) goes through ``executorch.runtime``; the profiler runs programs in a separate process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProgramError

# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) to dtype names.
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                7: "float64", 11: "bool", 15: "bfloat16"}
PTE_MAGIC_OFFSET = 4  # flatbuffer file identifier "ET12" etc. sits at bytes 4..8


@dataclass(frozen=True)
class TensorMeta:
    """A tensor's shape (the upper bound when dynamic), dtype, and whether its shape may shrink at run time."""

    shape: tuple[int, ...]
    dtype: str
    dynamic: bool = False

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, "dynamic": self.dynamic}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    planned_buffer_bytes: tuple[int, ...]  # one per memory-planned buffer (mem_id 0 is reserved and skipped)
    delegates: tuple[str, ...]
    operators: tuple[str, ...]

    @property
    def planned_bytes(self) -> int:
        return int(sum(self.planned_buffer_bytes))


@dataclass(frozen=True)
class ProgramInfo:
    path: str
    size_bytes: int
    sha256: str
    methods: dict[str, MethodInfo] = field(default_factory=dict)
    constant_bytes: int = 0

    def method(self, name: str = "forward") -> MethodInfo:
        if name not in self.methods:
            raise ProgramError(
                f"{self.path} has no method {name!r}", "methods in this program: " + ", ".join(sorted(self.methods))
            )
        return self.methods[name]

    def planned_memory(self, method: str = "forward") -> dict:
        m = self.method(method)
        return {"method": method, "planned_buffers_bytes": list(m.planned_buffer_bytes), "planned_bytes": m.planned_bytes,
                "planned_mb": round(m.planned_bytes / 2**20, 4)}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor_meta(value: Any) -> TensorMeta:
    val = value.val
    sizes = tuple(int(s) for s in getattr(val, "sizes", ()) or ())
    dtype = SCALAR_TYPES.get(int(getattr(val, "scalar_type", -1)), f"scalar_type_{getattr(val, 'scalar_type', '?')}")
    return TensorMeta(sizes, dtype, int(getattr(val, "shape_dynamism", 0) or 0) != 0)  # 0 = STATIC


def inspect_program(path: str | Path, data: bytes | None = None) -> ProgramInfo:
    """Read a ``.pte`` file's methods, tensor metadata and memory plan.

    Args:
        path: the program file.
        data: its bytes, when the caller already holds them (saves reading and hashing the file again).

    Raises:
        ProgramError: the file is missing, empty, or not an ExecuTorch program.
    """
    p = Path(path)
    if data is None:
        if not p.is_file():
            raise ProgramError(f"program {p} does not exist", "build one with `edgekit build`, or check the path")
        data = p.read_bytes()
    if len(data) < 16 or data[PTE_MAGIC_OFFSET:PTE_MAGIC_OFFSET + 2] != b"ET":
        raise ProgramError(f"{p} is not an ExecuTorch program (no ET flatbuffer header)", "pass a .pte written by edgekit build or to_executorch()")
    from ._noise import quiet

    try:
        with quiet():
            from executorch.exir._serialize._program import deserialize_pte_binary

            pte = deserialize_pte_binary(data)
    except Exception as exc:
        raise ProgramError(f"{p} is not a readable ExecuTorch program ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})",
                           "the file may be truncated or corrupt; rebuild it") from exc
    program = getattr(pte, "program", pte)
    methods = {}
    for plan in program.execution_plan:
        sizes = tuple(int(s) for s in list(plan.non_const_buffer_sizes)[1:])
        methods[plan.name] = MethodInfo(
            name=plan.name,
            inputs=tuple(_tensor_meta(plan.values[i]) for i in plan.inputs),
            outputs=tuple(_tensor_meta(plan.values[i]) for i in plan.outputs),
            planned_buffer_bytes=sizes,
            delegates=tuple(d.id for d in plan.delegates),
            operators=tuple(o.name + (f".{o.overload}" if getattr(o, "overload", "") else "") for o in plan.operators),
        )
    return ProgramInfo(str(p), len(data), hashlib.sha256(data).hexdigest(), methods)


class InProcessProgram:
    """A program loaded into this process with ``executorch.runtime`` (for verification)."""

    def __init__(self, path: str | Path, method: str = "forward"):
        from ._noise import quiet

        with quiet():
            from executorch.runtime import Runtime

            try:
                self._program = Runtime.get().load_program(str(path))
                self._method = self._program.load_method(method)
            except Exception as exc:
                raise ProgramError(f"the ExecuTorch runtime could not load {path}: {str(exc).splitlines()[0][:200]}",
                                   "rebuild the program; check the target's backend") from exc

    def run(self, inputs: tuple) -> tuple:
        try:
            return tuple(self._method.execute(list(inputs)))
        except Exception as exc:
            shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs)
            raise ProgramError(f"the program failed on inputs of shape {shapes}: {str(exc).splitlines()[0][:200]}",
                               "check the inputs match the program") from exc
