"""Dynamic dimensions: which input sizes a program accepts besides the one it was exported with.

``--dynamic-dim INPUTS:DIM:MIN:MAX`` makes dimension DIM of the named inputs dynamic within [MIN, MAX]. INPUTS is
one input or several joined by commas (names from the model's ``forward`` or 0-based positions); the inputs listed
together share one size, one symbol in ``torch.export``: a BERT's ids and mask are
``input_ids,attention_mask:1:8:128``. ``*`` means every input. ``--dynamic-batch MIN:MAX`` is ``*:0:MIN:MAX``.

This module only parses and resolves; torch is imported by the functions that build tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .errors import DataError, InputSpecError, UsageError

if TYPE_CHECKING:
    import torch
    from torch.export import Dim

    from .manifest import DynamicDimInfo

DYNAMIC_DIM_HELP = (
    "INPUTS:DIM:MIN:MAX — make dimension DIM of INPUTS dynamic (repeatable). Inputs that share the "
    "dimension are listed together and share one size: input_ids,attention_mask:1:8:128. INPUTS are "
    "forward() argument names or 0-based positions; * is every input."
)


@dataclass(frozen=True)
class DynamicDim:
    """A dynamic dimension as the user wrote it (inputs still names or positions)."""

    inputs: tuple[str, ...]
    dim: int
    min: int
    max: int

    def __str__(self) -> str:
        return f"{','.join(self.inputs)}:{self.dim}:{self.min}:{self.max}"


@dataclass(frozen=True)
class ResolvedDim:
    """A dynamic dimension bound to the model: input positions and names, and the size exported with."""

    name: str  # the torch.export symbol
    indices: tuple[int, ...]
    names: tuple[str, ...]
    dim: int
    min: int
    max: int
    example: int  # the size the program is traced at (inside the range, never 0 or 1)
    peers: tuple[str, ...] = ()  # other inputs of the same size in that dimension: maybe the same length

    def hint(self) -> str:
        """How to declare it with the inputs it may have to share its size with."""
        return f"--dynamic-dim {','.join(self.names + self.peers)}:{self.dim}:{self.min}:{self.max}"

    def label(self) -> str:
        return f"{','.join(self.names)}:{self.dim}"


def parse_dynamic_dim(text: str) -> DynamicDim:
    """``INPUTS:DIM:MIN:MAX`` → a :class:`DynamicDim`.

    Raises:
        InputSpecError: malformed, or not 1 <= MIN < MAX.
    """
    m = re.match(r"^\s*([^:]+?)\s*:\s*(\d+)\s*:\s*(\d+)\s*:\s*(\d+)\s*$", text or "")
    example = "e.g. --dynamic-dim input_ids,attention_mask:1:8:128"
    if not m:
        raise InputSpecError(f"malformed --dynamic-dim {text!r}: expected INPUTS:DIM:MIN:MAX", example)
    inputs = tuple(s.strip() for s in m.group(1).split(","))
    if any(not s for s in inputs):
        raise InputSpecError(f"malformed --dynamic-dim {text!r}: an empty input name", example)
    dim, lo, hi = int(m.group(2)), int(m.group(3)), int(m.group(4))
    if not 1 <= lo < hi:
        raise InputSpecError(f"--dynamic-dim {text!r}: need 1 <= MIN < MAX", example)
    return DynamicDim(inputs, dim, lo, hi)


def batch_dim(lo: int, hi: int) -> DynamicDim:
    """``--dynamic-batch MIN:MAX``: dimension 0 of every input."""
    return DynamicDim(("*",), 0, lo, hi)


def forward_names(module: torch.nn.Module, count: int) -> list[str]:
    """The names of ``module.forward``'s first ``count`` positional arguments (``x0, x1, ...`` when unknown)."""
    import inspect

    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError, AttributeError):
        params = []
    return params[:count] + [f"x{i}" for i in range(len(params), count)]


def _index(token: str, names: Sequence[str], text: str) -> int:
    if token.isdigit():
        i = int(token)
        if i >= len(names):
            raise UsageError(
                f"--dynamic-dim {text}: input {i} does not exist (the model takes {len(names)})",
                "inputs are " + ", ".join(f"{k}={n}" for k, n in enumerate(names)),
            )
        return i
    if token not in names:
        raise UsageError(
            f"--dynamic-dim {text}: the model has no input named {token!r}",
            "inputs are " + ", ".join(f"{k}={n}" for k, n in enumerate(names)),
        )
    return names.index(token)


def resolve(dims: Sequence[DynamicDim], names: Sequence[str], examples: Sequence[torch.Tensor]) -> list[ResolvedDim]:
    """Bind the user's dimensions to the model's inputs, checking every one against the example shapes.

    Raises:
        UsageError: an unknown input, a dimension the input does not have, or one (input, dim) listed twice.
    """
    out, seen = [], {}
    for k, d in enumerate(dims):
        text = str(d)
        idx = (
            tuple(range(len(names)))
            if d.inputs == ("*",)
            else tuple(dict.fromkeys(_index(t, names, text) for t in d.inputs))
        )
        for i in idx:
            rank = examples[i].dim()
            if d.dim >= rank:
                raise UsageError(
                    f"--dynamic-dim {text}: input {names[i]} has {rank} dimension(s), so {d.dim} does not exist",
                    f"use a dimension 0..{rank - 1}",
                )
            if (i, d.dim) in seen:
                raise UsageError(
                    f"--dynamic-dim {text}: dimension {d.dim} of {names[i]} is already dynamic ({seen[i, d.dim]})",
                    "give each input's dimension once; list inputs that share it together",
                )
            seen[i, d.dim] = text
        sizes = {int(examples[i].shape[d.dim]) for i in idx}
        if len(sizes) > 1:
            raise UsageError(
                f"--dynamic-dim {text}: the inputs listed together differ in dimension {d.dim} ({sorted(sizes)})",
                "list together only inputs that share that size",
            )
        size = sizes.pop()
        example = min(max(size, d.min, 2), d.max)
        peers = tuple(
            n
            for j, (n, ex) in enumerate(zip(names, examples))
            if j not in idx and ex.dim() > d.dim and int(ex.shape[d.dim]) == size
        )
        symbol = "batch" if d.dim == 0 else re.sub(r"\W", "_", f"{names[idx[0]]}_d{d.dim}")
        out.append(
            ResolvedDim(
                symbol if symbol.isidentifier() else f"dyn{k}",
                idx,
                tuple(names[i] for i in idx),
                d.dim,
                d.min,
                d.max,
                example,
                peers,
            )
        )
    return out


def resize(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``t`` cut or tiled along ``dim`` to ``size`` (any valid input is fine for tracing and for comparing)."""
    have = int(t.shape[dim])
    if have == size:
        return t
    if have > size:
        return t.narrow(dim, 0, size).contiguous()
    reps = [1] * t.dim()
    reps[dim] = -(-size // have)
    return t.repeat(*reps).narrow(dim, 0, size).contiguous()


def at_sizes(
    tensors: Sequence[torch.Tensor], dims: Sequence[ResolvedDim], sizes: Sequence[int]
) -> tuple[torch.Tensor, ...]:
    """The tensors with each dynamic dimension set to its size in ``sizes``."""
    out = list(tensors)
    for d, size in zip(dims, sizes):
        for i in d.indices:
            out[i] = resize(out[i], d.dim, size)
    return tuple(out)


def export_examples(examples: Sequence[torch.Tensor], dims: Sequence[ResolvedDim]) -> tuple[torch.Tensor, ...]:
    """Examples sized inside every range and never at 0 or 1 (``torch.export`` specialises those)."""
    return at_sizes(examples, dims, [d.example for d in dims])


def dynamic_shapes(count: int, dims: Sequence[ResolvedDim]) -> tuple[dict[int, Dim], ...] | None:
    """The ``dynamic_shapes`` argument of ``torch.export.export``: one Dim per ResolvedDim, shared by its inputs."""
    if not dims:
        return None
    from torch.export import Dim

    shapes: list[dict[int, Dim]] = [{} for _ in range(count)]
    for d in dims:
        sym = Dim(d.name, min=d.min, max=d.max)
        for i in d.indices:
            shapes[i][d.dim] = sym
    return tuple(shapes)


def check_sizes(shapes: Sequence[Sequence[int]], ranges: Sequence[DynamicDimInfo], source: str) -> None:
    """Refuse input shapes outside the ranges a package records (``model.dynamic_dims``).

    Raises:
        DataError: a dynamic dimension's size is outside [min, max].
    """
    for r in ranges:
        for name, i in zip(r.inputs, r.indices):
            size = shapes[i][r.dim]
            if not r.min <= size <= r.max:
                raise DataError(
                    f"{source}: {name} has size {size} in dimension {r.dim}, outside the program's range "
                    f"{r.min}..{r.max}",
                    f"give inputs of {r.min}..{r.max} there, or rebuild with a wider --dynamic-dim",
                )


def verify_sizes(d: ResolvedDim) -> list[int]:
    """Sizes to verify a non-batch dynamic dimension at: its bounds and the traced size."""
    return sorted({d.min, d.example, d.max})
