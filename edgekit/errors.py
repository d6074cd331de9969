"""Errors raised by edgekit.

Every error carries a one-line ``message`` that names the problem and a ``hint`` that names the fix.
Library code raises these and never prints or exits. Each class owns its exit code (click's pattern: a class
attribute): ``UsageError`` subclasses exit 2 like click's own usage errors, everything else exits 1.
:mod:`edgekit.cli` turns them into that exit code and the one-line message, in one place.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class of every error edgekit raises on purpose.

    Args:
        message: what went wrong, in one line.
        hint: what the user can do about it, in one line (optional).
    """

    #: The process exit code when this error ends a command: 1 for a failure of the work.
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        # Keep everything on one line: users read these in a terminal and in CI logs.
        self.message = " ".join(str(message).split())
        self.hint = " ".join(str(hint).split()) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(EdgekitError):
    """A malformed option or argument (exit code 2)."""

    exit_code = 2


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
    """A build or profile exceeds the target's budget (the result is complete and can still be shown)."""


class RegressionError(EdgekitError):
    """``bench compare`` found a significant regression beyond its threshold."""


class ContractError(EdgekitError):
    """A manifest, worker result or bench run document lacks a field or has a wrong one."""


class OutputExistsError(EdgekitError):
    """The output path exists and ``force`` was not given."""


class ProgramError(EdgekitError):
    """A file is not a valid ExecuTorch program, or a package does not match its manifest."""


class ProfileError(EdgekitError):
    """The profiler could not measure the program (worker crash, timeout, bad options)."""


class ReferenceMismatchError(ProfileError):
    """The program, where it was profiled, answers its reference inputs unlike the user's model (wrong results)."""


class BenchError(EdgekitError):
    """A benchmark suite, stored run or comparison is invalid."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (or its type name): how foreign errors are quoted."""
    text = exc if isinstance(exc, str) else str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__ if not isinstance(exc, str) else ""
