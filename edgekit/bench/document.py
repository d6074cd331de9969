"""The bench run file: one typed, versioned document per ``bench run``, with raw samples and machine facts.

Written by :func:`edgekit.bench.run.run_suite` (through :mod:`edgekit.bench.store`), read by ``bench compare``,
``bench report`` and ``bench list``. A file that lacks a field, or has a wrong one, is refused with one line naming
the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._contract import Contract, JsonDict
from ..errors import BenchError, ContractError
from ..profile.stats import LatencyStats

RUN_SCHEMA_VERSION = 2  # 2: this typed document
READABLE_RUN_VERSIONS = (1, 2)  # 1 (edgekit 0.1) has the same fields: stored baselines stay comparable
RUN_KIND = "edgekit-bench-run"


@dataclass(frozen=True)
class MachineFacts(Contract):
    """What must match for two runs to be comparable (and what is only warned about)."""

    machine_id: str
    cpu_model: str
    arch: str
    cores_logical: int | None
    memory_gb: float | None = None
    cores_physical: int | None = None
    cpu_max_mhz: float | None = None
    os: str | None = None
    hostname: str | None = None
    python: str | None = None
    torch: str | None = None
    executorch: str | None = None
    edgekit: str | None = None

    def get(self, key: str, default: object = None) -> object:
        return getattr(self, key, default)


@dataclass(frozen=True)
class BuildFigures(Contract):
    cached: bool
    seconds: float
    sha256: str
    size_bytes: int
    compressed_size_bytes: int | None = None
    accuracy: float | None = None
    eager_accuracy: float | None = None
    sqnr_db: float | None = None
    planned_bytes: int | None = None
    delegated_partitions: int | None = None
    worker: str | None = None  # where it was built (a Dask worker's address, or host:pid); None: from the cache
    attempts: int = 1  # > 1: a worker died and another one built it
    peak_rss_mb: float | None = None  # the building process's high-water mark (an upper bound for this build)
    perplexity: float | None = None  # text-generation: the program's over the eval text (llama.cpp's protocol)
    ppl_increase_pct: float | None = None  # … above the model handed in
    kld_mean: float | None = None  # … mean KL(the model handed in ‖ program), nats
    same_top1: float | None = None  # … share of positions with the model's top token


@dataclass(frozen=True)
class BenchItem(Contract):
    """One model × target × threads: its build figures and its raw latency samples."""

    key: str
    model: str
    target: str
    threads: int
    engine: str
    build: BuildFigures
    latency_ms: LatencyStats
    samples_ms: list[float]
    phases: dict[str, float | None]
    memory: dict[str, float | None]
    energy: dict[str, object]  # the profile's energy figures (EnergyResult)
    warnings: list[str] = field(default_factory=list)
    noise: dict[str, object] | None = None  # the profile's noise floor: reference workload before/after and its drift
    # the answers check where it was measured: status, worst SQNR (tensor models) or KLD (generation programs), note
    check: dict[str, object] | None = None
    explain: dict[str, object] | None = None  # edgekit explain's slowest and least faithful modules, a line each
    #: text-generation items: prefill/decode tokens per s, time to first token, prompt and generated tokens. Their
    #: latency_ms and samples_ms are the decode steps' (ms per generated token), phases' first_run_ms the TTFT
    generation: dict[str, object] | None = None


@dataclass(frozen=True)
class BenchFailure(Contract):
    model: str
    target: str
    threads: int
    error: str


@dataclass(frozen=True)
class BenchRun(Contract):
    """A stored run. ``path`` is where it was read from (not stored)."""

    schema_version: int
    kind: str
    run_id: str
    created: str
    suite: dict[str, object]  # the suite's name, path and items, as run
    machine: MachineFacts
    commit: dict[str, str | bool | None]  # the checkout it ran from (edgekit.machine.CommitFacts)
    settings: dict[str, object]  # the run's options (threads, runs, executor ...)
    results: list[BenchItem]
    errors: list[BenchFailure]
    wall_seconds: float
    name: str | None = None
    notes: list[str] = field(default_factory=list)  # the executor used, cache warnings
    device: str | None = None  # the device it was measured on (bench run --device), else this machine
    path: str | None = field(default=None, compare=False)

    def to_dict(self, path: str = "") -> JsonDict:
        d = super().to_dict(path)
        d.pop("path")
        return d

    def raise_for_errors(self) -> None:
        """Raise :class:`BenchError` when items failed (the others were measured and saved)."""
        if self.errors:
            raise BenchError(
                f"{len(self.errors)} item(s) failed; the others were measured and saved",
                "see the 'failed:' lines above; first: " + self.errors[0].error[:200],
            )


def run_from_dict(data: object, source: str) -> BenchRun:
    """Validate a parsed run file.

    Raises:
        BenchError: not an edgekit run, another schema version, or a missing/mistyped field (named).
    """
    if not isinstance(data, dict) or data.get("kind") != RUN_KIND:
        raise BenchError(
            f"run file {source} is not an edgekit benchmark run", "pass a file written by `edgekit bench run`"
        )
    if data.get("schema_version") not in READABLE_RUN_VERSIONS:
        raise BenchError(
            f"run file {source} has schema_version {data.get('schema_version')!r}; this edgekit reads "
            f"{', '.join(map(str, READABLE_RUN_VERSIONS))}",
            "run the suite again with this edgekit",
        )
    try:
        return BenchRun.from_dict({**data, "path": source}, f"run file {source}")
    except ContractError as exc:
        raise BenchError(f"{exc.message} (corrupt)", "run the suite again") from None
