"""What a model is to the rest of edgekit: the spec of each input (``1x3x224x224[:dtype]``), a dynamic batch range,
the loaded model (the eager module with its example inputs), and the objects ``module:name`` specs name (user code,
imported). The ground floor: it imports nothing of edgekit's but errors, so data, models and hf: loading can use it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import InputSpecError, ModelLoadError

if TYPE_CHECKING:  # torch is imported lazily so that `edgekit --help` stays fast
    import torch

#: dtype names accepted in input specs and data files, mapped to torch attribute names.
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float64": "float64",
    "int64": "int64",
    "long": "int64",
    "int32": "int32",
    "int": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
}

_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one model input, parsed from ``1x3x224x224[:float32]``."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __str__(self) -> str:
        return "x".join(map(str, self.shape)) + f":{self.dtype}"

    def make(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random, contiguous tensor of this spec (normal floats, small non-negative ints)."""
        import torch

        dtype = getattr(torch, self.dtype)
        if dtype.is_floating_point:
            t = torch.randn(self.shape, generator=generator, dtype=torch.float32).to(dtype)
        elif dtype == torch.bool:
            t = torch.randint(0, 2, self.shape, generator=generator).bool()
        else:
            t = torch.randint(0, 10, self.shape, generator=generator, dtype=dtype)
        return t.contiguous()


def parse_input_spec(text: str) -> InputSpec:
    """Parse ``1x3x224x224`` or ``1x128:int64`` into an :class:`InputSpec`.

    Raises:
        InputSpecError: the text is not ``DIMxDIM...[:dtype]`` with positive dims and a known dtype.
    """
    raw = text.strip()
    shape_txt, _, dtype_txt = raw.partition(":")
    shape_txt = shape_txt.strip().lower().replace("×", "x").replace(",", "x")
    if not _SHAPE_RE.match(shape_txt):
        raise InputSpecError(
            f"malformed input spec {text!r}: expected dimensions joined by 'x' and an optional dtype",
            "write it like 1x3x224x224 or 1x128:int64",
        )
    shape = tuple(int(d) for d in shape_txt.split("x"))
    if any(d <= 0 for d in shape):
        raise InputSpecError(f"malformed input spec {text!r}: every dimension must be positive", "e.g. 1x3x224x224")
    dtype = dtype_txt.strip().lower() or "float32"
    if dtype not in DTYPE_NAMES:
        raise InputSpecError(
            f"unknown dtype {dtype_txt!r} in input spec {text!r}",
            "valid dtypes: " + ", ".join(sorted(set(DTYPE_NAMES.values()))),
        )
    return InputSpec(shape, DTYPE_NAMES[dtype])


@dataclass(frozen=True)
class DynamicBatch:
    """A dynamic batch dimension for export, parsed from ``MIN:MAX``."""

    min: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}:{self.max}"


def parse_dynamic_batch(text: str) -> DynamicBatch:
    """Parse ``MIN:MAX`` (``1:32``) into a :class:`DynamicBatch`.

    Raises:
        InputSpecError: not two integers with 1 <= MIN < MAX.
    """
    m = re.match(r"^\s*(\d+)\s*:\s*(\d+)\s*$", text or "")
    if not m:
        raise InputSpecError(f"malformed --dynamic-batch {text!r}: expected MIN:MAX", "e.g. --dynamic-batch 1:32")
    lo, hi = int(m.group(1)), int(m.group(2))
    if not 1 <= lo < hi:
        raise InputSpecError(f"--dynamic-batch {text!r}: need 1 <= MIN < MAX", "e.g. --dynamic-batch 1:32")
    return DynamicBatch(lo, hi)


@dataclass(frozen=True)
class LoadedModel:
    """A resolved model: the eager module (reference for verification) and its example inputs.

    ``exported`` is set when the spec was a saved ExportedProgram; ``module`` is then its ``.module()``.
    """

    spec: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    exported: torch.export.ExportedProgram | None = None
    # hf: models: tokenises text-file data to the exported length (an edgekit.data.Tokenizer: edgekit.hf's
    # TextTokenizer; Any because specs sits below both and names neither)
    tokenizer: Any = None
    task: str | None = None  # what the first output is, when the loader knows (hf: pooled → embed)

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        return tuple(InputSpec(tuple(t.shape), str(t.dtype).removeprefix("torch.")) for t in self.example_inputs)


def contiguous(inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Make example inputs contiguous and unambiguous.

    A tensor from numpy with one channel has strides like (64, 1, 8, 1) that export reads as channels-last,
    and the lowered program then fails at run time. A fresh contiguous copy avoids that.
    """
    import torch

    return tuple(t.clone(memory_format=torch.contiguous_format) if isinstance(t, torch.Tensor) else t for t in inputs)


def _close_matches(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return f"did you mean {', '.join(close)}?" if close else ""


def import_object(spec: str) -> object:
    """The object a ``package.module:name`` or ``path/to/file.py:name`` spec names (the user's code is imported).

    Raises:
        ModelLoadError: the module or file cannot be imported, or has no such name (close matches suggested).
    """
    left, _, attr = spec.rpartition(":")
    if not left or not attr:
        raise ModelLoadError(
            f"model spec {spec!r} names no factory",
            "use package.module:factory, path/to/file.py:factory, or a .pt2 file saved with torch.export.save",
        )
    if left.endswith(".py") or "/" in left or "\\" in left:
        path = Path(left)
        if not path.is_file():
            raise ModelLoadError(f"model file {left} does not exist", "check the path before ':'")
        mod_name = f"_edgekit_user_{abs(hash(str(path.resolve())))}"
        try:
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file may raise anything at import time
            raise ModelLoadError(
                f"importing {left} failed: {type(exc).__name__}: {exc}", "fix the error in that file"
            ) from exc
    else:
        try:
            module = importlib.import_module(left)
        except ModuleNotFoundError as exc:
            raise ModelLoadError(
                f"cannot import module {left!r}: {exc}",
                "check the spec is package.module:factory and the package is installed or on PYTHONPATH",
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"importing {left} failed: {type(exc).__name__}: {exc}", "fix the error in that module"
            ) from exc
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
        suggestion = _close_matches(attr, public)
        raise ModelLoadError(
            f"{left} has no attribute {attr!r}",
            suggestion
            or ("callables there: " + ", ".join(public[:10]) if public else "define a factory function there"),
        )
    return getattr(module, attr)
