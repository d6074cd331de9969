"""A patch to torchao's quantization primitives (see :mod:`edgekit.upstream` for the registry): fake tensors get
their output shapes directly while a lowering propagates them."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable, ContextManager

from ._shared import Shared

if TYPE_CHECKING:
    from torch.library import Library


def shapes_only_quant_ops() -> ContextManager[None]:
    """torchao's quantize_affine / dequantize_affine / choose_qparams_affine answer fake tensors with their output
    shapes and dtypes alone, while a lowering runs.

    Lowering re-propagates fake tensors through the graph in every decomposition pass, edge pass and XNNPACK pass,
    and each time these ops ran their whole Python decomposition on fake tensors with symbolic shapes (reshapes,
    reductions, clamps: SymInt arithmetic for every quantized linear). Their outputs' shapes and dtypes follow from
    the arguments, so the fake answer is computed directly; real tensors (constant folding) still run torchao's own
    code, and the registrations are removed afterwards. The program is byte for byte the same (tests/test_generation.py
    checks the bytes); lowering takes about half the time (benchmarks/results/llm_quant_lowering.txt).
    """
    return _SCOPE.block()


def _register() -> Library | None:
    """The overriding kernels, registered (None without torchao)."""
    import torch

    try:
        import torchao.quantization.quant_primitives as qp
    except ImportError:  # no torchao: nothing of it to speed up
        return None

    def choose(x, mapping_type, block_size, target_dtype, quant_min=None, quant_max=None, eps=None,
               scale_dtype=None, zero_point_dtype=None, keepdim=False):  # fmt: skip
        shape, dims = qp._get_reduction_params(block_size, x.size())
        if keepdim:
            out = [x.size(i) // block_size[i] for i in range(len(block_size))]
        else:
            out = [n for i, n in enumerate(shape) if i not in dims]
        zero_dtype = zero_point_dtype or (torch.int32 if mapping_type == "ASYMMETRIC" else x.dtype)
        with x.fake_mode:
            return (
                torch.empty(out, dtype=scale_dtype or x.dtype, device=x.device),
                torch.empty(out, dtype=zero_dtype, device=x.device),
            )

    sub_byte = getattr(qp, "_SUB_BYTE_UINT_BOUNDS", {})  # torchao hands uint1..uint7 results back as uint8

    def quantize(x, block_size, scale, zero_point, output_dtype, quant_min=None, quant_max=None):
        with x.fake_mode:
            return torch.empty(
                x.shape, dtype=torch.uint8 if output_dtype in sub_byte else output_dtype, device=x.device
            )

    def dequantize(x, block_size, scale, zero_point, input_dtype, quant_min=None, quant_max=None,
                   output_dtype=torch.float32):  # fmt: skip
        with x.fake_mode:
            return torch.empty(x.shape, dtype=output_dtype, device=x.device)

    lib = torch.library.Library("torchao", "IMPL")
    try:
        _override(lib, choose, quantize, dequantize)
    except BaseException:
        lib._destroy()  # nothing half-registered
        raise
    return lib


def _override(
    lib: Library, choose: Callable[..., object], quantize: Callable[..., object], dequantize: Callable[..., object]
) -> None:
    import torch
    from torch._inductor.decomposition import decompositions
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    for name, shapes in (("choose_qparams_affine", choose), ("quantize_affine", quantize),
                         ("dequantize_affine", dequantize)):  # fmt: skip
        own = decompositions[getattr(torch.ops.torchao, name).default]  # torchao's Python function

        def kernel(
            *args: object,
            _shapes: Callable[..., object] = shapes,
            _own: Callable[..., object] = own,
            **kwargs: object,
        ) -> object:
            # fake tensors being propagated inside a block; never while a graph is traced (a proxy mode would record
            # the empty tensors instead of torchao's arithmetic)
            fast = _SCOPE.open > 0 and isinstance(args[0], FakeTensor) and get_proxy_mode() is None
            return _shapes(*args, **kwargs) if fast else _own(*args, **kwargs)

        with warnings.catch_warnings():  # torch says once that a kernel is overridden: this one, on purpose
            warnings.filterwarnings("ignore", message=".*other operators may also be overridden")
            lib.impl(name, kernel, "CompositeImplicitAutograd", allow_override=True)


def _unregister(lib: Library | None) -> None:
    # torchao's own kernels are the ones registered again. Torch 2.13 still calls the override's kernel for these
    # ops afterwards (its dispatch table names torchao's), so the kernel itself answers as torchao outside a block
    if lib is not None:
        lib._destroy()


_SCOPE = Shared(_register, _unregister)
