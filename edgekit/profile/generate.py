"""``edgekit generate``: a generation package's continuation of a prompt, streamed as the Python worker produces it
(:mod:`edgekit.runner.llmworker`, which tokenizes with the package's ``tokenizer.json``)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from ..errors import ProfileError, ProgramError
from .generation import _package, _worker, worker_env


def generate(
    package: str | Path,
    prompt: str,
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    threads: int = 1,
    out: TextIO | None = None,
) -> dict:
    """Stream ``prompt``'s continuation from a generation package to ``out`` (stdout); returns the worker's figures
    (prompt and generated tokens, TTFT, tokens per second, why it stopped).

    Raises:
        UsageError: not a generation package, or no tokenizer in it.
        ProfileError: the worker failed (its one-line reason).
    """
    import os
    import signal

    folder, m = _package(package)
    tok = folder / "tokenizer.json"
    if not tok.is_file():
        raise ProgramError(f"{folder} has no tokenizer.json", "rebuild the package with edgekit build")
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="edgekit-gen-") as d:
        result = Path(d) / "stats.json"
        cmd = _worker(folder, m, threads) + [
            "--mode",
            "generate",
            "--tokenizer",
            str(tok),
            f"--prompt={prompt}",  # one argument: a prompt that begins with "-" is text, not an option
            "--max-new-tokens",
            str(max_new_tokens),
            "--temperature",
            str(temperature),
            "--seed",
            str(seed),
            "--eos",
            ",".join(map(str, m.generation.eos_ids)),
            "--result",
            str(result),
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=worker_env(),
        )
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(4096):
                out.write(chunk.decode("utf-8", errors="replace"))
                out.flush()
            err = proc.stderr.read().decode("utf-8", errors="replace") if proc.stderr else ""
            code = proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        if code != 0:
            from ..runner.protocol import ERROR_PREFIX

            reason = next((ln[len(ERROR_PREFIX) :] for ln in err.splitlines() if ln.startswith(ERROR_PREFIX)), None)
            raise ProfileError(
                f"generation failed: {reason or f'the worker exited with {code}'}", "check the package and prompt"
            )
        return json.loads(result.read_text())
