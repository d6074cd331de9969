"""Targets: what a build aims at (backend, quantization, pruning), how it is profiled, and its budgets.

A target is a frozen dataclass read from a TOML file: a built-in one in ``targets/`` by name, or a path.
Every field is validated in ``__post_init__``; unknown keys and values raise :class:`ConfigError` naming
the file, the key and the allowed values. ``Target.to_toml()`` writes a file that loads back equal.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, TargetNotFoundError

SCHEMA_VERSION = 1


#: the target task of a generation program (a decoder-only language model with a static KV cache)
GENERATION = "text-generation"
TASKS = (GENERATION,)


class Backend(str, enum.Enum):
    """Where the program's operators run."""

    XNNPACK = "xnnpack"  #: delegated to XNNPACK (optimized CPU kernels)
    PORTABLE = "portable"  #: no delegate: ExecuTorch's own CPU kernels, for comparison


class QuantScheme(str, enum.Enum):
    """PT2E quantization schemes (XNNPACKQuantizer configurations)."""

    NONE = "none"
    INT8_STATIC_PER_CHANNEL = "int8-static-per-channel"
    INT8_STATIC_PER_TENSOR = "int8-static-per-tensor"
    INT8_DYNAMIC_PER_CHANNEL = "int8-dynamic-per-channel"
    #: not PT2E: the model is cast to float16 before export (inputs and outputs stay float32); XNNPACK runs it in
    #: fp16 where the CPU has fp16 arithmetic (Arm asimdhp, x86 AVX512-FP16) and emulates it, slower, elsewhere
    FP16 = "fp16"
    #: generation programs only (torchao before export, not PT2E): int8 dynamic activations with int4 group-wise
    #: weights (``quantize.group_size``), XNNPACK's qd8-qb4w GEMMs
    INT8_DYNAMIC_INT4_WEIGHT = "8da4w"
    #: generation programs only: int8 dynamic activations, int8 per-channel weights (qd8-qc8w GEMMs)
    INT8_DYNAMIC_INT8_WEIGHT = "8da8w"

    @property
    def is_int8(self) -> bool:
        return self not in (QuantScheme.NONE, QuantScheme.FP16)

    @property
    def for_generation_only(self) -> bool:
        """Applied with torchao's ``quantize_`` to a decoder before export: only generation builds use it."""
        return self in (QuantScheme.INT8_DYNAMIC_INT4_WEIGHT, QuantScheme.INT8_DYNAMIC_INT8_WEIGHT)

    @property
    def is_dynamic(self) -> bool:
        return self is QuantScheme.INT8_DYNAMIC_PER_CHANNEL

    @property
    def needs_calibration(self) -> bool:
        return self in (QuantScheme.INT8_STATIC_PER_CHANNEL, QuantScheme.INT8_STATIC_PER_TENSOR)


class EmbeddingQuant(str, enum.Enum):
    """Weight-only per-row quantization of ``nn.Embedding`` tables (torchao, fused to ExecuTorch's quantized
    embedding kernels): a 30522 x 384 vocabulary goes from 45 MiB to 11 MiB at int8."""

    NONE = "none"
    INT8 = "int8"
    INT4 = "int4"


class PruneScope(str, enum.Enum):
    """How ratios apply: the same ratio in every layer, or one global ranking across layers."""

    LAYER = "layer"
    GLOBAL = "global"


class Importance(str, enum.Enum):
    """How structured pruning ranks channels."""

    L1 = "l1"
    L2 = "l2"


def _enum(cls: type[enum.Enum], value: Any, key: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"{key} = {value!r} is not valid; allowed: {allowed}") from None


def _number(
    value: Any,
    key: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    hi_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    if value is None and optional:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if (lo is not None and value < lo) or too_high:
        rng = f"[{lo}, {hi}{')' if hi_open else ']'}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{key} must be in {rng}, got {value}")
    return value


@dataclass(frozen=True)
class QuantizeConfig:
    """PT2E quantization. ``calibration_samples``: how many samples calibrate a static scheme. ``embeddings``:
    weight-only quantization of embedding tables, independent of the scheme. ``fp32_layers``: module names
    (``features.0.0``) kept in float32 while the rest is quantized: mixed precision (what ``edgekit tune`` picks)."""

    scheme: QuantScheme = QuantScheme.NONE
    calibration_samples: int = 64
    embeddings: EmbeddingQuant = EmbeddingQuant.NONE
    fp32_layers: tuple[str, ...] = ()
    group_size: int = 32  # int4 weights (8da4w) and int4 embedding tables: values sharing one scale

    def __post_init__(self) -> None:
        if isinstance(self.fp32_layers, str) or not all(isinstance(n, str) for n in self.fp32_layers):
            raise ConfigError(f"quantize.fp32_layers must be a list of layer names, got {self.fp32_layers!r}")
        object.__setattr__(self, "fp32_layers", tuple(self.fp32_layers))
        object.__setattr__(self, "scheme", _enum(QuantScheme, self.scheme, "quantize.scheme"))
        object.__setattr__(self, "embeddings", _enum(EmbeddingQuant, self.embeddings, "quantize.embeddings"))
        _number(self.calibration_samples, "quantize.calibration_samples", lo=1, integer=True)
        _number(self.group_size, "quantize.group_size", lo=32, integer=True)
        if self.group_size % 32:
            raise ConfigError(
                f"quantize.group_size must be a multiple of 32 (XNNPACK's int4 kernels), got {self.group_size}"
            )
        if self.scheme is QuantScheme.FP16 and self.embeddings is not EmbeddingQuant.NONE:
            raise ConfigError(
                f"quantize.scheme = 'fp16' does not combine with {self.embeddings.value} embedding tables: set "
                "quantize.embeddings = 'none' (on the command line: --quantize-embeddings none)"
            )
        if self.fp32_layers and not self.scheme.is_int8:
            raise ConfigError(
                f"quantize.fp32_layers keeps layers out of int8, but quantize.scheme = "
                f"'{self.scheme.value}' quantizes none to int8: drop fp32_layers or pick an int8 scheme"
            )


@dataclass(frozen=True)
class PruneConfig:
    """Pruning before quantization.

    ``structured_ratio``: fraction of channels removed (a smaller dense model: faster).
    ``sparsity``: fraction of weights zeroed by magnitude (smaller compressed download; not faster).
    ``round_to``: keep channel counts multiples of this (SIMD-friendly). ``ignore``: layer names kept whole.
    """

    structured_ratio: float = 0.0
    sparsity: float = 0.0
    importance: Importance = Importance.L2
    scope: PruneScope = PruneScope.LAYER
    round_to: int = 8
    ignore: tuple[str, ...] = ()
    layer_ratios: dict[str, float] = field(default_factory=dict)
    finetune_epochs: int = 0
    finetune_lr: float = 1e-3

    def __post_init__(self) -> None:
        _number(self.structured_ratio, "prune.structured_ratio", lo=0.0, hi=1.0, hi_open=True)
        _number(self.sparsity, "prune.sparsity", lo=0.0, hi=1.0, hi_open=True)
        object.__setattr__(self, "importance", _enum(Importance, self.importance, "prune.importance"))
        object.__setattr__(self, "scope", _enum(PruneScope, self.scope, "prune.scope"))
        if not isinstance(self.layer_ratios, dict):
            raise ConfigError(f"prune.layer_ratios must be a table of layer name = ratio, got {self.layer_ratios!r}")
        for name, ratio in self.layer_ratios.items():
            _number(ratio, f"prune.layer_ratios.{name}", lo=0.0, hi=1.0, hi_open=True)
        _number(self.round_to, "prune.round_to", lo=1, integer=True)
        if isinstance(self.ignore, str) or not all(isinstance(n, str) for n in self.ignore):
            raise ConfigError(f"prune.ignore must be a list of layer names, got {self.ignore!r}")
        object.__setattr__(self, "ignore", tuple(self.ignore))
        _number(self.finetune_epochs, "prune.finetune_epochs", lo=0, integer=True)
        _number(self.finetune_lr, "prune.finetune_lr", lo=0.0)

    @property
    def active(self) -> bool:
        return self.structured_ratio > 0 or self.sparsity > 0 or any(r > 0 for r in self.layer_ratios.values())

    def __hash__(self) -> int:  # layer_ratios is a dict; hash what identifies the config
        return hash(
            (
                self.structured_ratio,
                self.sparsity,
                self.importance,
                self.scope,
                self.round_to,
                self.ignore,
                tuple(sorted(self.layer_ratios.items())),
                self.finetune_epochs,
                self.finetune_lr,
            )
        )


@dataclass(frozen=True)
class ProfileConfig:
    """Profiler defaults for this target."""

    threads: int = 1
    warmup: int = 20
    runs: int = 100
    min_seconds: float = 0.0

    def __post_init__(self) -> None:
        _number(self.threads, "profile.threads", lo=1, integer=True)
        _number(self.warmup, "profile.warmup", lo=0, integer=True)
        _number(self.runs, "profile.runs", lo=1, integer=True)
        _number(self.min_seconds, "profile.min_seconds", lo=0.0)


@dataclass(frozen=True)
class BudgetConfig:
    """Limits a build or profile must respect; a missing key means no limit."""

    max_size_mb: float | None = None
    max_p50_ms: float | None = None
    max_peak_rss_mb: float | None = None
    max_accuracy_drop: float | None = None
    min_sqnr_db: float | None = None  # output SQNR against the user's model (verify's), checked by build and tune
    max_ppl_increase_pct: float | None = None  # generation: the program's perplexity over the model's, in percent

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _number(
                getattr(self, f.name), f"budget.{f.name}", lo=None if f.name == "min_sqnr_db" else 0.0, optional=True
            )

    def fidelity_miss(self, drop: float | None, sqnr: float | None) -> float | None:
        """How far a program is outside the fidelity part of the budget: the accuracy drop when that is set, else the
        SQNR (0 inside; None when the figure the budget needs was not measured). Both are against the user's model."""
        if self.max_accuracy_drop is not None:
            return None if drop is None else max(0.0, drop - self.max_accuracy_drop)
        if self.min_sqnr_db is None or sqnr is None:  # no SQNR limit, or identical outputs
            return 0.0
        return max(0.0, self.min_sqnr_db - sqnr)

    def describe_fidelity(self) -> str:
        if self.max_accuracy_drop is not None:
            return f"top-1 accuracy drop ≤ {self.max_accuracy_drop:g}"
        return f"SQNR ≥ {self.min_sqnr_db:g} dB" if self.min_sqnr_db is not None else "no fidelity limit"

    def fidelity_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("max_accuracy_drop", "min_sqnr_db") if getattr(self, k) is not None}


@dataclass(frozen=True)
class PowerConfig:
    """A simple power model for *estimated* energy when RAPL is not readable: watts per busy core + idle."""

    active_watts_per_core: float = 2.0
    idle_watts: float = 0.5

    def __post_init__(self) -> None:
        _number(self.active_watts_per_core, "power.active_watts_per_core", lo=0.0)
        _number(self.idle_watts, "power.idle_watts", lo=0.0)


_SECTIONS = {
    "quantize": QuantizeConfig,
    "prune": PruneConfig,
    "profile": ProfileConfig,
    "budget": BudgetConfig,
    "power": PowerConfig,
}


@dataclass(frozen=True)
class Target:
    """A build and profiling target, e.g. ``xnnpack-int8``.

    Example:
        >>> t = load_target("xnnpack-int8")
        >>> t.quantize.scheme.value
        'int8-static-per-channel'
    """

    name: str
    backend: Backend = Backend.XNNPACK
    description: str = ""
    schema_version: int = SCHEMA_VERSION
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    task: str | None = None  # "text-generation": builds a generation program (a decoder with a KV cache)
    source: str = field(default="<python>", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name must be a non-empty string")
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(
                f"schema_version {self.schema_version!r} is not supported; this edgekit reads {SCHEMA_VERSION}"
            )
        object.__setattr__(self, "backend", _enum(Backend, self.backend, "backend"))
        if self.task not in (None, *TASKS):
            raise ConfigError(f"task = {self.task!r} is not valid; allowed: {', '.join(TASKS)} (or no task)")
        if self.quantize.scheme.for_generation_only and self.task != GENERATION:
            raise ConfigError(
                f"quantize.scheme = '{self.quantize.scheme.value}' is for generation programs: add "
                f"task = '{GENERATION}' to the target"
            )
        if self.backend is Backend.PORTABLE and self.quantize.scheme is not QuantScheme.NONE:
            raise ConfigError("backend = 'portable' runs fp32 only here; quantized programs need the xnnpack backend")

    def replace(self, **changes: Any) -> "Target":
        """A copy with top-level fields or ``section__field`` keys changed (``prune__sparsity=0.5``)."""
        sections: dict[str, dict[str, Any]] = {}
        top = {}
        for key, value in changes.items():
            if "__" in key:
                sec, name = key.split("__", 1)
                sections.setdefault(sec, {})[name] = value
            else:
                top[key] = value
        for sec, values in sections.items():
            top[sec] = dataclasses.replace(getattr(self, sec), **values)
        return dataclasses.replace(self, **top)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (enums as strings, tuples as lists; budgets without the unset keys)."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "backend": self.backend.value,
        }
        if self.task is not None:
            out["task"] = self.task
        for sec in _SECTIONS:
            values = {}
            for f in dataclasses.fields(getattr(self, sec)):
                v = getattr(getattr(self, sec), f.name)
                if v is None:
                    continue
                values[f.name] = (
                    v.value
                    if isinstance(v, enum.Enum)
                    else list(v)
                    if isinstance(v, tuple)
                    else dict(v)
                    if isinstance(v, dict)
                    else v
                )
            out[sec] = values
        return out

    def to_toml(self) -> str:
        """TOML text that :func:`load_target` reads back into an equal Target."""
        d = self.to_dict()
        keys = ("schema_version", "name", "description", "backend", "task")
        lines = [f"{k} = {_toml_value(d[k])}" for k in keys if k in d]
        for sec in _SECTIONS:
            lines.append(f"\n[{sec}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in d[sec].items()]
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _check_keys(table: dict, cls: type, where: str, path: str) -> None:
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            raise ConfigError(
                f"{path}: unknown key {where}{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                "allowed keys: " + ", ".join(allowed),
            )


def target_from_dict(data: dict, source: str = "<dict>") -> Target:
    """Build a validated :class:`Target` from parsed TOML.

    Raises:
        ConfigError: unknown keys or invalid values, prefixed with ``source``.
    """
    _check_keys(data, Target, "", source)
    kwargs = {k: v for k, v in data.items() if k not in _SECTIONS}
    try:
        for sec, cls in _SECTIONS.items():
            table = data.get(sec, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{sec}] must be a table")
            _check_keys(table, cls, f"[{sec}] ", source)
            for key in ("ignore", "fp32_layers"):
                if isinstance(table.get(key), list):
                    table = {**table, key: tuple(table[key])}
            kwargs[sec] = cls(**table)
        if "name" not in kwargs:
            raise ConfigError("missing key 'name'", 'add name = "my-target"')
        return Target(**kwargs, source=source)
    except ConfigError as exc:
        if exc.message.startswith(source):
            raise
        raise ConfigError(f"{source}: {exc.message}", exc.hint) from None


def builtin_targets_dir() -> Path:
    """The folder of shipped target TOML files."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "targets"
    if repo.is_dir():
        return repo
    from importlib import resources

    return Path(str(resources.files("edgekit.builtin_targets")))


def list_targets() -> list[Target]:
    """All built-in targets, sorted by name."""
    return sorted((load_target(p) for p in builtin_targets_dir().glob("*.toml")), key=lambda t: t.name)


def builtin_target_names() -> list[str]:
    return sorted(p.stem for p in builtin_targets_dir().glob("*.toml"))


def load_target(name_or_path: str | Path | Target) -> Target:
    """Load a built-in target by name (``xnnpack-int8``) or a TOML file by path.

    Raises:
        TargetNotFoundError: neither a built-in name nor an existing file (the valid names are listed).
        ConfigError: the file is not valid TOML or has unknown keys/values.
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    # A path is a .toml name or an existing file; a folder that happens to share a built-in's name is not a target.
    if not (path.suffix == ".toml" or path.is_file()):
        path = builtin_targets_dir() / f"{text}.toml"
        if not path.exists():
            names = builtin_target_names()
            close = difflib.get_close_matches(text, names, n=1)
            raise TargetNotFoundError(
                f"unknown target {text!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                "valid targets: " + ", ".join(names) + "; or pass a path to a .toml file",
            )
    if not path.is_file():
        raise TargetNotFoundError(
            f"target file {path} does not exist", "valid targets: " + ", ".join(builtin_target_names())
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the syntax at that line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return target_from_dict(data, str(path))
