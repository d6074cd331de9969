"""A patch to how ExecuTorch's Python runtime imports (see :mod:`edgekit.upstream` for the registry).

``executorch.extension.pybindings.portable_lib`` imports ``executorch.exir._warnings`` (two decorators), and importing
that runs ``executorch/exir/__init__.py``, which pulls in the exporter, torch._dynamo and torch._inductor: 3 s of
start-up and ~130 MiB of RSS that a process which only loads and runs a program never uses, and that a memory
baseline then carries. So while the runtime imports, ``executorch.exir`` is a placeholder package (its submodules
still load from the real folder, its ``__init__`` does not run); afterwards the placeholder and what came in through
it are dropped, so a later ``import executorch.exir`` is the real one. Measured: worker start-up 4.0 s → 1.0 s, RSS
after loading a program 362 → 228 MiB.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

_EXIR = "executorch.exir"


@contextlib.contextmanager
def exir_placeholder(root: Path) -> Iterator[None]:
    """``executorch.exir`` as a placeholder package (from the executorch folder ``root``) inside the block, unless
    the real one is imported already."""
    placeholder = None
    if _EXIR not in sys.modules:
        placeholder = types.ModuleType(_EXIR)
        placeholder.__path__ = [str(root / "exir")]
        sys.modules[_EXIR] = placeholder
    try:
        yield
    finally:
        if placeholder is not None:
            _drop(placeholder)


def _drop(placeholder: types.ModuleType) -> None:
    """Remove the placeholder and whatever was imported through it, so a later ``import executorch.exir`` is real
    (unless the real package has replaced it meanwhile: then its modules stay as they are)."""
    if sys.modules.get(_EXIR) is not placeholder:
        return
    for name in [n for n in sys.modules if n == _EXIR or n.startswith(_EXIR + ".")]:
        del sys.modules[name]
