"""A target's tables, each a frozen dataclass validated in ``__post_init__`` (``[quantize]``, ``[prune]``, ``[profile]``,
``[budget]``, ``[power]``), and the enumerations their keys take; a bad value raises :class:`ConfigError` naming the key
and the values allowed. :mod:`edgekit.targets` puts them together into a :class:`~edgekit.targets.Target`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

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


def enum_value(cls: type[enum.Enum], value: Any, key: str) -> Any:
    """``value`` as a member of ``cls``, or ConfigError naming ``key`` and the allowed values."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"{key} = {value!r} is not valid; allowed: {allowed}") from None


def number_value(
    value: Any,
    key: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    hi_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    """``value`` as a number within ``lo``..``hi``, or ConfigError naming ``key``."""
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
        object.__setattr__(self, "scheme", enum_value(QuantScheme, self.scheme, "quantize.scheme"))
        object.__setattr__(self, "embeddings", enum_value(EmbeddingQuant, self.embeddings, "quantize.embeddings"))
        number_value(self.calibration_samples, "quantize.calibration_samples", lo=1, integer=True)
        number_value(self.group_size, "quantize.group_size", lo=32, integer=True)
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
        number_value(self.structured_ratio, "prune.structured_ratio", lo=0.0, hi=1.0, hi_open=True)
        number_value(self.sparsity, "prune.sparsity", lo=0.0, hi=1.0, hi_open=True)
        object.__setattr__(self, "importance", enum_value(Importance, self.importance, "prune.importance"))
        object.__setattr__(self, "scope", enum_value(PruneScope, self.scope, "prune.scope"))
        if not isinstance(self.layer_ratios, dict):
            raise ConfigError(f"prune.layer_ratios must be a table of layer name = ratio, got {self.layer_ratios!r}")
        for name, ratio in self.layer_ratios.items():
            number_value(ratio, f"prune.layer_ratios.{name}", lo=0.0, hi=1.0, hi_open=True)
        number_value(self.round_to, "prune.round_to", lo=1, integer=True)
        if isinstance(self.ignore, str) or not all(isinstance(n, str) for n in self.ignore):
            raise ConfigError(f"prune.ignore must be a list of layer names, got {self.ignore!r}")
        object.__setattr__(self, "ignore", tuple(self.ignore))
        number_value(self.finetune_epochs, "prune.finetune_epochs", lo=0, integer=True)
        number_value(self.finetune_lr, "prune.finetune_lr", lo=0.0)

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
        number_value(self.threads, "profile.threads", lo=1, integer=True)
        number_value(self.warmup, "profile.warmup", lo=0, integer=True)
        number_value(self.runs, "profile.runs", lo=1, integer=True)
        number_value(self.min_seconds, "profile.min_seconds", lo=0.0)


@dataclass(frozen=True)
class BudgetConfig:
    """Limits a build or profile must respect; a missing key means no limit."""

    max_size_mb: float | None = None
    max_p50_ms: float | None = None
    max_peak_rss_mb: float | None = None
    max_accuracy_drop: float | None = None
    min_sqnr_db: float | None = None  # output SQNR against the user's model (verify's), checked by build and tune
    max_ppl_increase_pct: float | None = None  # generation: the program's perplexity over the model's, in percent
    max_kld: float | None = None  # generation: mean KL(your model ‖ program) in nats, llama.cpp's protocol
    min_top1_pct: float | None = None  # generation: same top-1 as your model, percent of scored positions

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            number_value(
                getattr(self, f.name),
                f"budget.{f.name}",
                lo=None if f.name == "min_sqnr_db" else 0.0,
                hi=100.0 if f.name == "min_top1_pct" else None,
                optional=True,
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
        number_value(self.active_watts_per_core, "power.active_watts_per_core", lo=0.0)
        number_value(self.idle_watts, "power.idle_watts", lo=0.0)
