"""Patches to torch's FX and export machinery (see :mod:`edgekit.upstream` for the registry): provenance records that
share their history, and the CompositeImplicitAutograd operator table walked once per set of registrations."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable

from ._shared import Shared


def shared_provenance() -> AbstractContextManager[None]:
    """Let torch's FX provenance records share their history instead of deep-copying it, while a build runs.

    Every FX pass that re-runs a graph (export's decompositions, PT2E's prepare and convert, each of ExecuTorch's and
    XNNPACK's passes, each retrace) gives every node a ``NodeSource`` that records the node it came from, and torch
    2.13 builds it with ``copy.deepcopy`` of that node's whole ``from_node`` history: a chain one level longer per pass,
    copied again at every level, for every node. ``NodeSource`` objects are never changed once made (torch,
    torchao and ExecuTorch only read them: the debug handles ``edgekit explain`` maps back to modules come from them),
    so a new list holding the same entries is the same record; only the copying goes. The tiny BERT of the tests lowers
    in 7-9 s instead of 11; the program's bytes and every node's history are unchanged (a test compares both).
    The constructor is torch's again when the last open block ends (builds in several threads: the last to finish);
    while a block is open, the host application's own FX work in other threads shares its records too, equally
    harmless since nothing changes them."""
    return _PROVENANCE.block()


def _install_provenance() -> Callable[..., None]:
    from torch.fx import traceback as fx_traceback

    source = fx_traceback.NodeSource
    full = source.__init__

    def __init__(self, node, *args, **kwargs):  # noqa: N807 (replaces NodeSource.__init__)
        history = node.meta.get("from_node") if node is not None else None
        if not history:
            return full(self, node, *args, **kwargs)
        node.meta["from_node"] = []  # the full constructor then copies nothing ...
        try:
            full(self, node, *args, **kwargs)
        finally:
            node.meta["from_node"] = history
        self.from_node = list(history)  # ... and the history is shared, entry by entry

    source.__init__ = __init__
    return full


def _uninstall_provenance(full: Callable[..., None]) -> None:
    from torch.fx import traceback as fx_traceback

    fx_traceback.NodeSource.__init__ = full


_PROVENANCE = Shared(_install_provenance, _uninstall_provenance)


def cia_ops_materialized_once() -> AbstractContextManager[None]:
    """Let torch materialize its CompositeImplicitAutograd operators once per set of registrations, while a build runs.

    Every ``run_decompositions`` (export, PT2E, each of ExecuTorch's edge steps: five or more per build) lists the
    operators it may keep, and torch 2.13 re-reads the C++ dispatcher's whole CIA table and looks every operator up
    again, once per operator namespace (about 40 here). The lookups fill ``torch.ops``' attribute caches, so after one
    pass over a given table a second pass changes nothing, and is skipped; the table itself is still read every time
    (0.2 ms), so a new registration (a custom op loaded mid-build) changes it and is materialized as torch would. The
    one thing that empties those caches, torch deleting a destroyed library's operators from ``torch.ops``, also
    forgets every table seen, so a library destroyed and defined again is walked again. The suite's small CNN builds
    for int8 in 1.41 s instead of 1.55 (``benchmarks/results/cia_walk.txt``); the program is byte for byte the same (a
    test compares). Torch's own functions are back when the last open block ends."""
    return _CIA.block()


def _install_cia() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """Torch's own two functions, or None where this torch has not got them (then nothing is changed)."""
    import torch
    import torch.library
    from torch._export import utils

    if not (hasattr(utils, "_materialize_cpp_cia_ops") and hasattr(torch.library, "_clear_torch_ops_cache")):
        return None
    walk, clear = utils._materialize_cpp_cia_ops, torch.library._clear_torch_ops_cache
    done: set[frozenset] = set()

    def materialize(*args: object, **kwargs: object) -> None:
        table = frozenset(torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd"))
        if table in done:
            return None
        result = walk(*args, **kwargs)
        done.add(table)
        return result

    def clear_and_forget(*args: object, **kwargs: object) -> None:
        done.clear()
        return clear(*args, **kwargs)

    utils._materialize_cpp_cia_ops, torch.library._clear_torch_ops_cache = materialize, clear_and_forget
    return walk, clear


def _uninstall_cia(saved: tuple[Callable[..., None], Callable[..., None]] | None) -> None:
    if saved is None:
        return
    import torch.library
    from torch._export import utils

    utils._materialize_cpp_cia_ops, torch.library._clear_torch_ops_cache = saved


_CIA = Shared(_install_cia, _uninstall_cia)
