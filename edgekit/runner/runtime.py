"""``executorch.runtime`` for a measuring worker, without the compiler stack.

Importing ExecuTorch's runtime the ordinary way pulls in its exporter, torch._dynamo and torch._inductor (3 s and ~130
MiB a measured process never uses); the upstream patch ``lean-runtime-import`` (:mod:`edgekit.upstream.runtime`)
lets the runtime import without them, and the ops' shared libraries are loaded directly (ExecuTorch's llama
custom-ops module likewise imports torch._inductor to register lowerings; the runtime needs only its library). Should a
later ExecuTorch need more of exir at import, or the patch be switched off, the ordinary imports run: slower, never
wrong.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .. import upstream


def load_runtime(*, llm_ops: bool = False) -> tuple[Any, Any]:
    """Import ExecuTorch's runtime with the quantized kernels (and with ``llm_ops``, ``llama::update_cache`` and
    ``llama::custom_sdpa``) registered. Returns ``(portable_lib, Runtime)``. ``tests/test_profile.py`` checks that
    the lean path is the one taken with the pinned stack, and that the fallback registers the same kernels."""
    import torch  # portable_lib links libtorch: it must be loaded first

    spec = importlib.util.find_spec("executorch")
    root = Path(next(iter(spec.submodule_search_locations)))
    if upstream.enabled("lean-runtime-import"):
        try:
            with upstream.applied("lean-runtime-import", root):
                load_kernel_libraries(torch, root, llm_ops)
                from executorch.extension.pybindings import portable_lib
                from executorch.runtime import Runtime

                return portable_lib, Runtime
        except (ImportError, AttributeError, OSError):
            pass  # below: the ordinary imports
    import executorch.kernels.quantized  # noqa: F401
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if llm_ops:
        from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401
    return portable_lib, Runtime


def load_kernel_libraries(torch: Any, root: Path, llm_ops: bool) -> None:
    """The quantized kernels' (and with ``llm_ops`` the llama:: ops') shared library, loaded directly: they register
    their kernels as they load."""
    folders = [root / "kernels/quantized"] + ([root / "extension/llm/custom_ops"] if llm_ops else [])
    for folder in folders:
        libs = sorted(folder.glob("lib*_aot_lib.*"))
        if len(libs) != 1:
            raise ImportError(f"expected one AOT library in {folder}, found {len(libs)}")
        torch.ops.load_library(str(libs[0]))
