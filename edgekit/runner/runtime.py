"""``executorch.runtime`` for a measuring worker, without the compiler stack.

``executorch.extension.pybindings.portable_lib`` imports ``executorch.exir._warnings`` (two decorators), and importing
that runs ``executorch/exir/__init__.py``, which pulls in the exporter, torch._dynamo and torch._inductor: 3 s of
start-up and ~130 MiB of RSS that a process which only loads and runs a program never uses, and that a memory
baseline then carries. ExecuTorch's llama custom-ops module likewise imports torch._inductor to register lowerings;
the runtime needs only its shared library (the kernels register themselves when it loads).

So the worker gives ``executorch.exir`` a placeholder package while the runtime imports (its submodules still load
from the real folder, its ``__init__`` does not run) and loads the ops' shared libraries directly. Measured: start-up
4.0 s → 1.0 s, RSS after loading a program 362 → 228 MiB. Should a later ExecuTorch need more of exir at import, the
placeholder is dropped and the ordinary imports run: slower, never wrong.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

_EXIR = "executorch.exir"


def load_runtime(*, llm_ops: bool = False) -> tuple[Any, Any]:
    """Import ExecuTorch's runtime with the quantized kernels (and with ``llm_ops``, ``llama::update_cache`` and
    ``llama::custom_sdpa``) registered. Returns ``(portable_lib, Runtime)``. ``tests/test_profile.py`` checks that
    the lean path is the one taken with the pinned stack, and that the fallback registers the same kernels."""
    import torch  # portable_lib links libtorch: it must be loaded first

    spec = importlib.util.find_spec("executorch")
    root = Path(next(iter(spec.submodule_search_locations)))
    placeholder = None
    if _EXIR not in sys.modules:
        placeholder = types.ModuleType(_EXIR)
        placeholder.__path__ = [str(root / "exir")]
        sys.modules[_EXIR] = placeholder
    try:
        _load_libraries(torch, root, llm_ops)
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        return portable_lib, Runtime
    except (ImportError, AttributeError, OSError):
        pass  # below: the ordinary imports
    finally:
        if placeholder is not None:
            _drop(placeholder)
    import executorch.kernels.quantized  # noqa: F401
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if llm_ops:
        from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401
    return portable_lib, Runtime


def _load_libraries(torch: Any, root: Path, llm_ops: bool) -> None:
    folders = [root / "kernels/quantized"] + ([root / "extension/llm/custom_ops"] if llm_ops else [])
    for folder in folders:
        libs = sorted(folder.glob("lib*_aot_lib.*"))
        if len(libs) != 1:
            raise ImportError(f"expected one AOT library in {folder}, found {len(libs)}")
        torch.ops.load_library(str(libs[0]))


def _drop(placeholder: types.ModuleType) -> None:
    """Remove the placeholder and whatever was imported through it, so a later ``import executorch.exir`` is real
    (unless the real package has replaced it meanwhile: then its modules stay as they are)."""
    if sys.modules.get(_EXIR) is not placeholder:
        return
    for name in [n for n in sys.modules if n == _EXIR or n.startswith(_EXIR + ".")]:
        del sys.modules[name]
