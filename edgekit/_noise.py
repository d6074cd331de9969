"""Keep the stack's known start-up noise away from users, without hiding real errors.

torchao prints that it cannot load CUDA kernels, torch warns about pytree internals, and the ExecuTorch
runtime's cpuinfo prints lines from C++ straight to file descriptor 2. None of it is actionable. We
capture fd 2 around the noisy calls and replay every line that is *not* a known noise pattern.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

NOISE_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"^Failed to load .*torchao/_C.*\.so",
        r"is an Enum subclass and is now natively supported by torch\.compile",
        r"^\[cpuinfo_utils\.cpp:\d+\]",
        r"^\[cpuinfo\]",
        r"LeafSpec.* is deprecated",
        r"^\s*return cls\.__new__\(cls, \*args\)",
        r"^\s*warnings\.warn\(",
        r"^W\d{4} .*torch/_export/",
        r"^W\d{4} .*torch/utils/_pytree\.py",
        r"^W\d{4} .*torch/_dynamo/variables/",
        r"TracerWarning: ",
        r"^I [\d:.]+ executorch:",  # the runtime's info log ("I 00:00:00.000505 executorch:threadpool.cpp:66] ...")
        r"Output Buffer not found\. Tensor Debug Data will not be available",
    )
)


def is_noise(line: str) -> bool:
    """True for a stderr line that is known, harmless start-up or tracing noise."""
    return any(p.search(line) for p in NOISE_PATTERNS)


QUIET_LOGGERS = ("torch._export", "torch.export", "torchao", "torch._dynamo", "torch.fx.experimental.symbolic_shapes")


def _install_python_filters() -> None:
    """Inside ``quiet()`` only: its ``catch_warnings`` puts the caller's filters back when the block ends."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*deprecated.*")
    warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*erase_node.*")
    warnings.filterwarnings("ignore", message=r".*Output Buffer not found.*")
    # torch-pruning's note about parameters outside nn.Modules (positional embeddings, ...): it handles them.
    warnings.filterwarnings("ignore", message=r".*Unwrapped parameters detected.*")


@contextlib.contextmanager
def _quiet_loggers():
    """The stack's chatty loggers at ERROR for the block, then back at the level they had."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def quiet(drop_on_error: bool = False):
    """Capture fd 2 for the duration and replay only the lines that are not known noise.

    Works for Python prints, ``logging`` and C++ code writing to stderr directly. Nested use is safe. With
    ``drop_on_error``, nothing is replayed when the block raises: the error itself says what went wrong (torch's
    export prints whole graph dumps before raising); ``EDGEKIT_DEBUG=1`` keeps them. The warning filters and logger
    levels it sets hold for the block only: the host application's own are back when it ends.
    """
    with warnings.catch_warnings(), _quiet_loggers():
        _install_python_filters()
        with _captured_stderr(drop_on_error):
            yield


@contextlib.contextmanager
def _captured_stderr(drop_on_error: bool):
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. click's CliRunner swaps sys.stderr
        fd = 2
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        failed = False
        try:
            yield
        except BaseException:
            failed = drop_on_error and not os.environ.get("EDGEKIT_DEBUG")
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            kept = [] if failed else [line for line in text.splitlines() if line.strip() and not is_noise(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


_stack_loaded = False


def import_stack() -> None:
    """Import torch, torchao and executorch once, quietly (their import-time noise is filtered)."""
    global _stack_loaded
    if _stack_loaded:
        return
    with quiet():
        import executorch.exir  # noqa: F401
        import torch  # noqa: F401
        import torchao  # noqa: F401
    _stack_loaded = True
