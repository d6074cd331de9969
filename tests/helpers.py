"""What many test files ask of a command: run it in process, and check that it failed in one line."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from edgekit.cli import cli


def run_cli(*args: Any) -> Any:
    """``edgekit ARGS`` in this process (click's runner), each argument as text."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result: Any, code: int, *fragments: str) -> str:
    """The house rule for bad input: exit ``code``, exactly one line starting with ``Error`` on stderr (click's runner
    or a finished subprocess), holding every fragment; no traceback, no "unexpected". Returns that line."""
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr if isinstance(result.stderr, str) else (result.stderr or b"").decode(errors="replace")
    output = getattr(result, "output", "") or ""
    assert exit_code == code, (exit_code, output[-2000:], stderr[-2000:])
    errors = [ln for ln in stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, stderr[-2000:]
    assert all(f in errors[0] for f in fragments), errors[0]
    assert "Traceback" not in stderr + output and "unexpected" not in stderr, stderr[-2000:]
    return errors[0]
