"""What a profile is asked for (:class:`ProfileOptions`), and the parsers of the CLI's thread and CPU lists."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..runner.protocol import Engine, Loader


@dataclass(frozen=True)
class ProfileOptions:
    """How to measure. ``None`` takes the target's ``[profile]`` defaults."""

    runs: int | None = None
    warmup: int | None = None
    warmup_seconds: float = 0.5
    min_seconds: float | None = None
    max_seconds: float = 60.0
    threads: int | None = None
    cpus: tuple[int, ...] | None = None
    timeout: float = 300.0
    method: str = "forward"
    engine: Engine = Engine.AUTO
    ops: bool = False
    ops_runs: int = 20
    loader: Loader = Loader.MMAP
    batch: int | None = None
    save_outputs: str | None = None  # write the last run's outputs (raw bytes) here: compare engines and devices
    check: bool = True  # run the package's reference vectors first and fail on wrong answers (--no-check: don't)
    etdump_out: str | None = None  # with ops: keep the raw ETDump here (edgekit explain reads its events)

    def __post_init__(self) -> None:
        import math

        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise UsageError(f"--batch must be a positive integer, got {self.batch}", "e.g. --batch 8")
        for name in ("runs", "warmup", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "warmup" else 1)):
                raise UsageError(
                    f"--{name} must be {'>= 0' if name == 'warmup' else 'a positive integer'}, got {v}",
                    "e.g. --threads 2" if name == "threads" else f"e.g. --{name} 100",
                )
        for name in ("warmup_seconds", "min_seconds", "max_seconds", "timeout"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        for name, cls in (("engine", Engine), ("loader", Loader)):
            try:
                object.__setattr__(self, name, cls(getattr(self, name)))
            except ValueError:
                raise UsageError(
                    f"unknown {name} {getattr(self, name)!r}",
                    f"valid {name}s: " + ", ".join(e.value for e in cls if e is not Engine.EAGER),
                ) from None


def parse_threads(text: str) -> list[int]:
    """``2`` or ``1,2,4`` → thread counts (each >= 1)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"--threads {text!r} is not a number or a comma-separated list", "e.g. --threads 2 or --threads 1,2"
        ) from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--threads {text!r}: thread counts must be >= 1", "e.g. --threads 2 or --threads 1,2")
    return values


def parse_cpus(text: str | None) -> tuple[int, ...] | None:
    """``--cpus 0,1`` as a tuple of CPU numbers (None when not given), or UsageError."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--cpus {text!r} is not a comma-separated list of CPU numbers", "e.g. --cpus 0,1") from None
