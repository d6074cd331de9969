"""The profiler's worker protocol, version :data:`PROTOCOL_VERSION`: one definition for the C++ runner
(``runner.cpp``), the Python worker (``pyworker.py``) and the parent (``harness.py``).

A worker is started with the options in :data:`WORKER_OPTIONS`. While it runs it writes lines to stderr:
``@phase NAME`` when it enters a :class:`Phase`, ``@progress DONE TOTAL`` during the timed runs, and
``@error MESSAGE`` before exiting with code 1. Asked to (``--check-count``), it first runs the package's reference
inputs once each and writes their outputs raw. At the end it writes one JSON object, a :class:`WorkerResult`, to
the ``--result`` file (and, with ``--outputs``, the last run's output tensors as raw bytes). Raw samples only: statistics are computed by the parent, so every engine shares one
definition. ``tests/test_profile_protocol.py`` checks that ``runner.cpp`` speaks exactly this.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from .._contract import Contract
from ..errors import ContractError, ProfileError
from ..fileops import read_json

PROTOCOL_VERSION = 3  # 2: the reference workload (noise floor); 3: the package's reference inputs checked first

PHASE_PREFIX = "@phase "
PROGRESS_PREFIX = "@progress "
ERROR_PREFIX = "@error "

# the files of a worker's working folder, here or on a device
RESULT = "result.json"  # --result: the WorkerResult
OUTPUTS = "outputs.bin"  # --outputs: the last run's output tensors
CHECK_INPUTS = "check_in.bin"  # --check-inputs: the package's reference inputs
#: the outputs of the package's reference inputs (``--check-outputs``, the tensor engines; ``--outputs`` of the check
#: steps, the generation runner)
CHECK_OUTPUTS = "check_out.bin"

#: Options every worker accepts (each takes one value; ``--shape`` and ``--dtype`` repeat, one per input).
WORKER_OPTIONS = (
    "--model",
    "--method",
    "--inputs",
    "--shape",
    "--result",
    "--outputs",
    "--etdump",
    "--etdump-runs",
    "--loader",
    "--threads",
    "--warmup",
    "--warmup-seconds",
    "--runs",
    "--min-seconds",
    "--max-seconds",
    "--check-inputs",  # the reference check: COUNT sets of inputs (raw, at --check-shape), run once each before the
    "--check-shape",  # first run, their outputs written raw to --check-outputs
    "--check-count",
    "--check-outputs",
)

#: Options of a generation profile (``runner.cpp`` when ``--prompt-tokens`` is given, and ``llmworker.py``), with
#: ``--model``, ``--result``, ``--threads``, ``--warmup``, ``--runs`` and ``--outputs`` (the answers check's logits,
#: raw float32, one step after another: what the parent compares with the user's model's).
GENERATION_OPTIONS = (
    "--prompt-tokens",  # comma-separated token ids: the prefill of every round
    "--gen-len",  # tokens per round: the prefill's, then greedy decode steps
    "--check-prompt",  # the answers check: these tokens in one call, then --check-tokens one per call
    "--check-tokens",
    "--prefill-chunk",  # prompts fed this many tokens per call at increasing positions (0: the whole prompt at once)
    "--data",  # the program's external weights (a .ptd file), when it has any
)


class Phase(str, enum.Enum):
    """What the worker is doing, in order (``ops`` only with an ETDump)."""

    START = "start"  # not announced: the parent's state before the first line
    LOAD = "load"
    CHECK = "check"  # the package's reference inputs, once each (only when asked)
    FIRST_RUN = "first_run"
    WARMUP = "warmup"
    TIMED = "timed"
    OPS = "ops"
    DONE = "done"


class Engine(str, enum.Enum):
    """Which worker measures: ``auto`` picks native when a compiler is there, else python (for a generation program
    too: edgekit's ``llama::`` kernels in the runner; on a device always native)."""

    AUTO = "auto"
    NATIVE = "native"  # the C++ runner: no Python in the measured process
    PYTHON = "python"  # ExecuTorch's Python bindings (a fallback; its RSS includes the interpreter and torch)
    EAGER = "eager"  # eager PyTorch, for comparison


#: The engines a user may choose (eager is chosen by --eager, not by name).
SELECTABLE_ENGINES = tuple(e.value for e in Engine if e is not Engine.EAGER)


class Loader(str, enum.Enum):
    MMAP = "mmap"
    FILE = "file"


@dataclass(frozen=True)
class CpuUsage(Contract):
    """getrusage deltas over one phase of the worker."""

    user_s: float
    sys_s: float
    voluntary_ctx_switches: int
    involuntary_ctx_switches: int


@dataclass(frozen=True)
class WorkerResult(Contract):
    """The worker's ``--result`` file."""

    protocol: int
    engine: str
    method: str
    loader: str
    threads_requested: int
    threads_effective: int
    load_ms: float
    first_run_ms: float
    warmup_ms: list[float]
    samples_ms: list[float]
    timed_wall_s: float
    reference_before_ms: float  # the fixed reference workload, before the warm-up ...
    reference_after_ms: float  # ... and after the timed runs: how much the machine itself drifted
    rss_baseline_bytes: int
    rss_after_load_bytes: int
    hwm_bytes: int
    cpu_load: CpuUsage
    cpu_timed: CpuUsage
    etdump: str  # "not requested" | "written" | "empty"
    check_runs: int = 0  # reference input sets run (their outputs are in the --check-outputs file)


@dataclass(frozen=True)
class GenerationRound(Contract):
    prefill_ms: float  # the prefill call (its first token comes out of it)
    decode_ms: list[float]  # each greedy decode step


@dataclass(frozen=True)
class GenerationCheckResult(Contract):
    """The program fed the check's tokens: its top token at each step, and how far the token fed next is below it in
    units of the logits' spread (max − mean; None where the logits were not finite). A package with reference logits
    is judged on those (``--outputs``); an older one on these, against its build's greedy tokens."""

    prompt_tokens: int
    tokens: int
    matching: int
    got: list[int]
    gaps: list[float | None]


@dataclass(frozen=True)
class GenerationWorkerResult(Contract):
    """A generation profile's ``--result`` file, from either engine."""

    threads: int
    load_ms: float
    rounds: list[GenerationRound]
    baseline_rss_kb: int  # the process before the program is loaded
    after_load_rss_kb: int
    peak_rss_kb: int
    cpu_s: float  # over the timed rounds
    wall_s: float
    check: GenerationCheckResult | None
    engine: str = "python"


def read_generation_result(path: str | Path) -> GenerationWorkerResult:
    """Read and validate a generation worker's result file.

    Raises:
        ProfileError: missing, not JSON, or a missing/mistyped field.
    """
    data = read_json(path, "the generation worker's result", ProfileError, "rerun; report it if it persists")
    try:
        return GenerationWorkerResult.from_dict(data, "the generation worker's result")
    except ContractError as exc:
        raise ProfileError(exc.message, "rerun; report it if it persists") from None


def read_result(path: str | Path) -> WorkerResult:
    """Read and validate a worker's result file.

    Raises:
        ProfileError: missing, not JSON, another protocol version, or a missing/mistyped field.
    """
    hint = "rerun; report it if it persists"
    data = read_json(path, "the profiling worker's result", ProfileError, hint)
    if not isinstance(data, dict) or data.get("protocol") != PROTOCOL_VERSION:
        got = data.get("protocol") if isinstance(data, dict) else None
        raise ProfileError(
            f"the profiling worker speaks protocol {got!r}, this edgekit {PROTOCOL_VERSION}",
            "rebuild the runner (it is cached by source hash; delete ~/.cache/edgekit/native-runner)",
        )
    try:
        result = WorkerResult.from_dict(data, "the profiling worker's result")
    except ContractError as exc:
        raise ProfileError(exc.message, hint) from None
    if not result.samples_ms:
        raise ProfileError("the profiling worker recorded no timed runs", "raise --max-seconds or --runs")
    return result
