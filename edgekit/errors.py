"""Errors raised by edgekit.

Every error carries a one-line ``message`` that names the problem and a ``hint`` that names the fix.
Library code raises these and never prints or exits; :mod:`edgekit.cli` turns them into exit codes:
``UsageError`` subclasses exit 2 (like click's own usage errors), everything else exits 1.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class of every error edgekit raises on purpose.

    Args:
        message: what went wrong, in one line.
        hint: what the user can do about it, in one line (optional).
    """

    #: True when the error is about how the command was called (exit code 2).
    usage = False

    def __init__(self, message: str, hint: str | None = None):
        # Keep everything on one line: users read these in a terminal and in CI logs.
        self.message = " ".join(str(message).split())
        self.hint = " ".join(str(hint).split()) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(EdgekitError):
    """A malformed option or argument (exit code 2)."""

    usage = True


class ConfigError(EdgekitError):
    """A target or suite definition is invalid."""


class TargetNotFoundError(UsageError):
    """A target name that is neither built in nor a readable TOML file."""


class InputSpecError(UsageError):
    """A malformed ``--input`` or ``--dynamic-batch`` spec."""


class ModelLoadError(EdgekitError):
    """The model spec could not be resolved to a module or an ExportedProgram."""


class DataError(EdgekitError):
    """Calibration, evaluation or input data is unreadable or does not fit the model."""


class ExportError(EdgekitError):
    """``torch.export`` could not trace the model."""


class QuantizeError(EdgekitError):
    """PT2E quantization failed."""


class PruneError(EdgekitError):
    """Pruning could not be applied to the model."""


class LowerError(EdgekitError):
    """Lowering to an ExecuTorch program failed."""


class VerifyError(EdgekitError):
    """The lowered program could not be run or does not match eager PyTorch."""


class BudgetError(EdgekitError):
    """A result exceeds the target's budget."""


class OutputExistsError(EdgekitError):
    """The output path exists and ``force`` was not given."""


class ProgramError(EdgekitError):
    """A file is not a valid ExecuTorch program, or a package does not match its manifest."""


class ProfileError(EdgekitError):
    """The profiler could not measure the program (worker crash, timeout, bad options)."""


class BenchError(EdgekitError):
    """A benchmark suite, stored run or comparison is invalid."""
