"""The build's stages, in the order they run, and the runner that times them and reports progress."""

from __future__ import annotations

import contextlib
import enum
import gc
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from .. import upstream
from .._noise import quiet

T = TypeVar("T")


class Stage(str, enum.Enum):
    """Build stages in the order they run. Pruning works on the eager ``nn.Module``, so it comes before export."""

    LOAD = "load"
    PRUNE = "prune"
    EXPORT = "export"
    QUANTIZE = "quantize"
    LOWER = "lower"
    VERIFY = "verify"
    PACKAGE = "package"


class StageState(str, enum.Enum):
    START = "start"
    DONE = "done"
    SKIP = "skip"


@dataclass(frozen=True)
class StageEvent:
    """A progress event: a stage started, finished (with its time) or was skipped (with the reason)."""

    stage: Stage
    state: StageState
    seconds: float = 0.0
    detail: str = ""


class StageRunner:
    """Runs stages quietly (the stack's known noise filtered), times them and reports progress."""

    def __init__(self, progress: Callable[[StageEvent], None] | None = None):
        self.progress = progress or (lambda e: None)
        self.seconds: dict[str, float] = {}

    def run(self, stage: Stage, fn: Callable[[], T], detail: str = "") -> T:
        self.progress(StageEvent(stage, StageState.START, detail=detail))
        t0 = time.perf_counter()
        freeze_more()  # what earlier stages left alive too (see frozen_heap)
        with quiet():
            value = fn()
        self.seconds[stage.value] = round(self.seconds.get(stage.value, 0.0) + time.perf_counter() - t0, 3)
        self.progress(StageEvent(stage, StageState.DONE, self.seconds[stage.value], detail))
        return value

    def skip(self, stage: Stage, reason: str) -> None:
        self.seconds[stage.value] = 0.0
        self.progress(StageEvent(stage, StageState.SKIP, detail=reason))


class SilentRunner(StageRunner):
    """A runner for side work (the dense twin's sizes) that reports nothing."""

    def run(self, stage: Stage, fn: Callable[[], T], detail: str = "") -> T:
        return fn()

    def skip(self, stage: Stage, reason: str) -> None:
        return None


_owned = 0  # how many frozen_heap blocks of ours are open: the freeze is ours only while this is > 0


@contextlib.contextmanager
def frozen_heap():
    """Leave the objects alive before a build (the imported torch/executorch stack: millions of them) out of the cyclic
    garbage collector's scans while it runs; each stage freezes what the earlier ones left alive as well
    (:meth:`StageRunner.run`). Every full collection walks them again otherwise, and lowering allocates enough to
    trigger many: ResNet-18 @224 lowers in 6.3 s instead of 7.3 s, at the same peak RSS. Garbage a stage makes is
    collected as usual, and everything frozen is handed back to the collector when the outermost block ends.

    ``gc.unfreeze`` hands back every frozen object, whoever froze it, so a host application that froze its own heap
    (``gc.freeze()`` before forking workers, say) is left alone: there the build runs without freezing."""
    global _owned
    if _owned == 0 and gc.get_freeze_count() > 0:  # the host's freeze, not ours: never undo it
        yield
        return
    if _owned == 0:
        gc.freeze()
    _owned += 1
    try:
        yield
    finally:
        _owned -= 1
        if _owned == 0:
            gc.unfreeze()


def freeze_more() -> None:
    """Freeze what is alive now, when the heap's freeze is ours (inside :func:`frozen_heap`); else nothing."""
    if _owned > 0:
        gc.freeze()


@contextlib.contextmanager
def build_scope():
    """What a build changes in its own process while it runs, and hands back when it ends: the collector's view of
    the heap (:func:`frozen_heap`), torch's provenance copying and its operator table walks (the upstream patches
    ``shared-provenance`` and ``cia-walk-once``, :mod:`edgekit.upstream`). Builds and tune's scans run inside it."""
    with frozen_heap(), upstream.applied("shared-provenance"), upstream.applied("cia-walk-once"):
        yield
