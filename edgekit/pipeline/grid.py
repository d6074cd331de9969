"""Weights that already sit on a 4-bit grid (a GGUF file's Q4_1, Q4_0 or Q4_K tensors, dequantized) keep that grid.

Requantizing such weights onto a fresh int4 grid rounds every value a second time: SmolLM2-135M's Q4_1 file requantized
by torchao (HQQ scales) lost 36% of its perplexity and llama.cpp's own Q4_0 requantization of it 18.5%
(``benchmarks/results/llm_recipes.txt``). The grid is in the weights themselves: in each group of ``group`` inputs of a
row, the values are ``origin + step·k`` with k = 0…15. XNNPACK's int4 kernels take a symmetric grid only
(``scale·(k − 8)``, no zero point), so the weights are split:

    linear(x, W) = linear(x, step·(k − 8)) + linear(sums(x), offset)       offset = origin + 8·step

where ``sums(x)`` are the sums of each group of inputs. Both terms go into **one** int4 linear over the widened input
``[x, sums(x), sums(x)]``: the first ``in`` columns hold the file's own levels with the file's own steps as scales
(exact, but for XNNPACK storing scales as bf16), and the offsets are written as two int4 digits (``a·d₁ + (a/14)·d₂``,
|dᵢ| ≤ 7: within 1/196 of the row's largest offset) in two blocks of columns that both read the sums. The sums are
one small int4 linear of 0/1 weights per distinct input, shared by the projections that read it (q/k/v, gate/up). The
program gets no other operation per linear, so lowering and running cost what a plain 8da4w linear costs, on an input
wider by ``2·ceil(in/group/32)·32`` columns (576 → 640 on SmolLM2).

Sums, not means: the widened input is quantized per token as one int8 row, so what the offsets read must use that
row's range as x does: means are too small for the row's int8 steps, and twice the sums take over the row's range from
x; from a quarter of the sums to the sums the results are alike, and the sums need no scaling
(``docs/decisions/003-decoder-recipes.md``, ``benchmarks/results/grid_gain.txt``).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

#: ``(levels, steps, offsets)``: a weight on a 4-bit grid (see :func:`int4_grid`)
Grid = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]

#: |k − round(k)| allowed for a value to count as on its group's grid (dequantization rounds in fp32)
TOLERANCE = 1e-3
#: the offsets' second int4 digit has 1/14 of the first's scale, so both stay within ±7
DIGIT_RATIO = 14


def int4_grid(weight: torch.Tensor, group: int) -> Grid | None:
    """``(levels, steps, offsets)`` when every group of ``group`` inputs in every row of ``weight`` ``[out, in]`` holds
    at most 16 evenly spaced levels, so that ``weight = steps·levels + offsets`` (per group); ``levels`` int8 in
    −8…7 ``[out, in]``, ``steps`` (> 0) and ``offsets`` ``[out, in/group]``; else ``None``.

    The step is tried as the GGUF 4-bit formats choose it: the group's range in 15 steps (Q4_1: the minimum is level 0
    and the maximum level 15), its largest magnitude in 8 (Q4_0: ``d·(q − 8)``), and the smallest gap between two of
    its values, or a half or a third of it (Q4_K: ``d·sc·q − dmin·m``, scales quantized per super-block, so the
    group's levels need not reach 0 or 15). A constant group (all zero, or one value) is level 0 at step 1 plus its
    value as the offset: XNNPACK refuses a zero scale.
    Rows are checked in chunks, so a large layer costs a few float64 copies of 1,024 rows, not of the whole weight.
    """
    import torch

    out, width = weight.shape
    if width % group or width < group:
        return None
    if out > 8 and _grid_rows(weight[:8], group) is None:  # weights off any grid fail on their first rows: no copy
        return None
    parts = []
    for start in range(0, out, 1024):
        part = _grid_rows(weight[start : start + 1024], group)
        if part is None:
            return None
        parts.append(part)
    levels, steps, offsets = (torch.cat(p, dim=0) for p in zip(*parts))
    return levels, steps.to(weight.dtype), offsets.to(weight.dtype)


def _grid_rows(weight: torch.Tensor, group: int) -> Grid | None:
    import torch

    out, width = weight.shape
    w = weight.detach().to(torch.float64).reshape(out, width // group, group)
    low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    # the smallest gap between two of the group's values: a k-quant's step when its levels 0 and 15 go unused
    ordered = w.sort(-1).values
    gaps = ordered[..., 1:] - ordered[..., :-1]
    gap = torch.where(gaps > 1e-9 * (high - low), gaps, torch.full_like(gaps, math.inf)).amin(-1, keepdim=True)
    gap = torch.where(torch.isfinite(gap), gap, torch.zeros_like(gap))
    step, level = torch.zeros_like(low), torch.zeros_like(w)
    fitted = high == low  # a constant group: level 0, its value as the offset
    for candidate in ((high - low) / 15, w.abs().amax(-1, keepdim=True) / 8, gap, gap / 2, gap / 3):
        k = (w - low) / torch.where(candidate > 0, candidate, torch.ones_like(candidate))
        rounded = k.round()
        fits = ((k - rounded).abs() <= TOLERANCE).all(-1, keepdim=True) & (rounded <= 15).all(-1, keepdim=True)
        new = fits & ~fitted & (candidate > 0)
        step, level = torch.where(new, candidate, step), torch.where(new, rounded, level)
        fitted = fitted | new
        if bool(fitted.all()):
            break
    if not bool(fitted.all()):
        return None
    offsets = low + 8 * step
    constant = step == 0
    levels = torch.where(constant, torch.zeros_like(level), level - 8).to(torch.int8).reshape(out, width)
    step = torch.where(constant, torch.ones_like(step), step)
    return levels, step.squeeze(-1), offsets.squeeze(-1)


def offset_digits(
    values: torch.Tensor, block: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``values`` ``[out, n]`` (n a multiple of ``block``) as two int4 digits per value with a scale per ``block``
    columns of a row: ``(d1, a1, d2, a2)``, ``values ≈ a1·d1 + a2·d2`` (scales repeated over their block), |d| ≤ 7."""
    import torch

    out, n = values.shape
    v = values.to(torch.float64).reshape(out, n // block, block)

    def bf16(
        t: torch.Tensor,
    ) -> torch.Tensor:  # XNNPACK stores int4 scales as bf16: the digits are chosen against what it will use
        return t.to(torch.bfloat16).to(torch.float64)

    a1 = v.abs().amax(-1, keepdim=True) / 7
    a1 = bf16(torch.where(a1 > 0, a1, torch.ones_like(a1)) * (1 + 2**-8))  # rounded up: |v/a1| stays ≤ 7
    d1 = (v / a1).round().clamp(-7, 7)
    a2 = bf16(a1 / DIGIT_RATIO * (1 + 2**-8))
    d2 = ((v - a1 * d1) / a2).round().clamp(-7, 7)

    def flat(d: torch.Tensor) -> torch.Tensor:
        return d.reshape(out, n).to(torch.int8)

    return flat(d1), a1.squeeze(-1).to(values.dtype), flat(d2), a2.squeeze(-1).to(values.dtype)


def carry_int4_grids(model: nn.Module, group: int, skip: set[str]) -> list[str]:
    """Replace, in place, every ``nn.Linear`` of ``model`` (but the names in ``skip``) whose weights are on a 4-bit grid
    in groups of ``group`` by a ``GridLinear`` (:func:`grid_linear_class`) whose ``.linear`` is already quantized (8da4w,
    torchao's ``IntxUnpackedToInt8Tensor``, as XNNPACK lowers it); the replaced modules' names."""
    from torch import nn

    found = [
        (name, module)
        for name, module in model.named_modules()
        if type(module) is nn.Linear and name not in skip and module.weight.shape[1] % group == 0
    ]
    sums: dict[int, tuple[nn.Parameter, LastInput]] = {}
    replaced = []
    for name, linear in found:
        grid = int4_grid(linear.weight, group)
        if grid is None:
            continue
        width = linear.weight.shape[1]
        if width not in sums:
            sums[width] = (_group_sums(width, group), LastInput())
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2], grid_linear_class()(linear, grid, group, *sums[width]))
        replaced.append(name)
    return replaced


class LastInput:
    """The last input a width's ``GridLinear`` modules saw and its widened form, shared by them (q/k/v, gate/up read
    the same x). A plain object, not a dict: export snapshots a module's tensor attributes and dicts, and warns about
    tensors assigned into them, while this holds only what one trace or one eager call left behind."""

    __slots__ = ("x", "version", "widened")

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None
        self.version: int | None = None
        self.widened: torch.Tensor | None = None


def forget_inputs(model: nn.Module) -> None:
    """Drop the tensors the ``GridLinear`` modules of ``model`` hold from their last call (after export: fake ones)."""
    for module in model.modules():
        last = getattr(module, "last", None)
        if isinstance(last, LastInput):
            last.x = last.version = last.widened = None


def _padded_groups(width: int, group: int) -> int:
    """The number of group sums, padded to whole blocks of 32 columns (XNNPACK's int4 groups)."""
    return math.ceil(width // group / 32) * 32


def _group_sums(width: int, group: int) -> nn.Parameter:
    """The group sums as an int4 linear of 0/1 weights at scale 1 (XNNPACK's int4 kernel, reading x as int8 per token,
    as the widened row is read next). As a dense fp32 matrix XNNPACK read all of it in every layer, a float per input
    and group for each of a layer's four distinct inputs: 18 MB a decode step on SmolLM2-135M, 83 MB on a
    Qwen2.5-0.5B-shaped decoder, where fp32 linears (these, the RMSNorm means and rotate_half) took 22% of a step. In
    int4 SmolLM2 decodes at 72.5 / 111.3 instead of 64.3 / 85.3 tokens/s at 1 / 2 threads with 10 MiB less RSS; mean
    KLD 0.0216 ± 0.0005 → 0.0228 ± 0.0007 nats, 1.4 standard errors apart, same top-1 89.7 → 90.2%
    (``benchmarks/results/llm_group_sums.txt``)."""
    import torch
    from torch import nn
    from torchao.quantization import IntxUnpackedToInt8Tensor

    matrix = torch.zeros(_padded_groups(width, group), width, dtype=torch.int8)  # padding rows stay 0: zero sums
    for g in range(width // group):
        matrix[g, g * group : (g + 1) * group] = 1
    scale = torch.ones(matrix.shape[0], width // 32)
    weight = IntxUnpackedToInt8Tensor(
        qdata=matrix,
        scale=scale,
        zero_point=torch.zeros_like(scale, dtype=torch.int8),
        target_dtype=torch.int4,
        block_size=(1, 32),
        dtype=torch.float32,
        activation_quantization="int8_asym_per_token",
    )
    return nn.Parameter(weight, requires_grad=False)


@functools.cache
def grid_linear_class() -> type:
    """``GridLinear``: one 8da4w linear over ``[x, sums(x), sums(x)]``, built on first use (it needs torch)."""
    import torch
    from torch import nn
    from torch.nn import functional
    from torchao.quantization import IntxUnpackedToInt8Tensor

    class GridLinear(nn.Module):
        """A linear whose weights were on a 4-bit grid, as the module docstring widens it."""

        def __init__(self, linear: nn.Linear, grid: Grid, group: int, sums: nn.Parameter, last: LastInput) -> None:
            super().__init__()
            levels, steps, offsets = grid
            out, width = levels.shape
            padded = sums.shape[0]
            values = torch.zeros(out, padded, dtype=torch.float64)
            values[:, : offsets.shape[1]] = offsets.to(torch.float64)  # the weights of the group sums
            d1, a1, d2, a2 = offset_digits(values)
            qdata = torch.cat([levels, d1, d2], dim=1)
            block = 32  # XNNPACK's int4 groups; the targets' group sizes are multiples of 32
            scale = torch.cat([steps.repeat_interleave(group // block, 1), a1, a2], dim=1).to(torch.float32)
            weight = IntxUnpackedToInt8Tensor(
                qdata=qdata,
                scale=scale,
                zero_point=torch.zeros_like(scale, dtype=torch.int8),
                target_dtype=torch.int4,
                block_size=(1, block),
                dtype=torch.float32,
                activation_quantization="int8_asym_per_token",  # as torchao's Int8DynamicActivationIntxWeightConfig
            )
            self.linear = nn.Linear(width + 2 * padded, out, bias=linear.bias is not None, device="meta")
            self.linear.weight = nn.Parameter(weight, requires_grad=False)
            if linear.bias is not None:
                self.linear.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
            self.sums = sums  # shared: one 0/1 matrix per input width, not one per layer
            self.last = last  # shared with the same width's: the last input and its widened form

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # the same object, unchanged since (an in-place change bumps its version): its widened form is still right
            if self.last.x is not x or self.last.version != x._version:
                s = functional.linear(x, self.sums)
                self.last.x, self.last.version, self.last.widened = x, x._version, torch.cat([x, s, s], dim=-1)
            return self.linear(self.last.widened)

    return GridLinear
