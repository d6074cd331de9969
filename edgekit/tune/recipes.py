"""What `edgekit tune` tries: recipes (precision × fp32 layers × prune ratio) as targets, whether the CPU has native
fp16, and the per-layer sensitivity that drives accuracy-driven mixed precision.

Mixed precision: each quantizable layer (conv, linear) is quantized *alone* (every other one stays fp32) in PT2E's
simulation, and the SQNR of the model's output against fp32 ranks the layers; the most sensitive ones are then kept
in fp32 one more at a time, in simulation, until the budget holds. Only that recipe is built and verified for real.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..targets import QuantScheme, Target

if TYPE_CHECKING:
    import torch
    from torch.fx import GraphModule

    from ..data import Dataset
    from ..pipeline.calibration import CalibrationStore
    from ..pipeline.export import ExportResult

PRUNE_RATIOS = (0.25, 0.5, 0.7)
#: how many of the most sensitive layers mixed precision may keep in fp32 before it gives up
MAX_FP32_LAYERS = 8

_SHORT = {
    QuantScheme.NONE: "fp32",
    QuantScheme.INT8_STATIC_PER_CHANNEL: "int8 per-channel",
    QuantScheme.INT8_STATIC_PER_TENSOR: "int8 per-tensor",
    QuantScheme.INT8_DYNAMIC_PER_CHANNEL: "int8 dynamic (qd8)",
    QuantScheme.FP16: "fp16",
}


@dataclass(frozen=True)
class Recipe:
    scheme: QuantScheme
    fp32_layers: tuple[str, ...] = ()
    prune: float = 0.0
    embeddings: str | None = None  # None: as the base target says; "none": embedding tables stay fp32

    @property
    def name(self) -> str:
        parts = [_SHORT.get(self.scheme, self.scheme.value)]
        if self.embeddings == "none" and self.scheme.is_int8:
            parts.append("fp32 embeddings")
        if self.fp32_layers:
            parts.append(f"{len(self.fp32_layers)} layer(s) fp32")
        if self.prune:
            parts.insert(0, f"prune {self.prune:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, str | list[str] | float | None]:
        return {
            "scheme": self.scheme.value,
            "fp32_layers": list(self.fp32_layers),
            "prune": self.prune,
            "embeddings": self.embeddings,
        }

    def target(self, base: Target, finetune_epochs: int = 0) -> Target:
        """The base target with this recipe's quantization and pruning (its budget, threads and power kept)."""
        slug = self.name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
        # fp32 (fp16) means fp32 (fp16) throughout: embedding tables too (the base target may quantize them)
        embeddings = {} if self.scheme.is_int8 else {"quantize__embeddings": "none"}
        if self.embeddings is not None and self.scheme.is_int8:
            embeddings = {"quantize__embeddings": self.embeddings}
        # tune judges accuracy against its own budget (a candidate over it is shown as "over", with its figures), so
        # the base target's accuracy guard must not turn a candidate into a failed build; size budgets still apply
        return base.replace(
            name=f"tune-{slug}",
            quantize__scheme=self.scheme,
            quantize__fp32_layers=self.fp32_layers,
            prune__structured_ratio=self.prune,
            prune__sparsity=0.0,
            prune__finetune_epochs=finetune_epochs if self.prune else 0,
            budget__max_accuracy_drop=None,
            budget__min_sqnr_db=None,
            **embeddings,
        )


def base_recipes() -> list[Recipe]:
    return [
        Recipe(QuantScheme.NONE),
        Recipe(QuantScheme.INT8_STATIC_PER_CHANNEL),
        Recipe(QuantScheme.INT8_STATIC_PER_TENSOR),
        Recipe(QuantScheme.INT8_DYNAMIC_PER_CHANNEL),
    ]


def native_fp16(cpuinfo: Path = Path("/proc/cpuinfo"), arch: str | None = None) -> tuple[bool, str]:
    """(does this CPU do fp16 arithmetic natively, why we think so). Without it XNNPACK emulates fp16 in fp32 and
    an fp16 program is slower than fp32, so tune does not try one."""
    try:
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        return False, f"cannot read {cpuinfo} to detect fp16 arithmetic"
    arch = arch or platform.machine()
    if arch == "x86_64":
        return ("avx512fp16" in flags, "x86-64 " + ("with" if "avx512fp16" in flags else "without") + " AVX512-FP16")
    if arch in ("aarch64", "arm64"):
        ok = bool({"asimdhp", "fphp"} & flags)
        return ok, "Arm " + ("with" if ok else "without") + " FP16 arithmetic (asimdhp)"
    return False, f"{arch}: fp16 arithmetic unknown"


# ------------------------------------------------------------------------------------------------ sensitivity
def simulate(
    exported: ExportResult,
    scheme: QuantScheme,
    calib: Dataset,
    fp32_layers: tuple[str, ...],
    records: CalibrationStore | None = None,
) -> GraphModule:
    """PT2E prepare → calibrate → convert in PyTorch (no lowering): a module that computes what the quantized
    program would, to rank layers and try recipes in seconds. ``records``: calibration records
    (:mod:`edgekit.pipeline.calibration`) to load the observers' states from, and to add this calibration to."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from ..pipeline.quantize import prepare_calibrated

    return convert_pt2e(prepare_calibrated(exported, scheme, calib, fp32_layers, records=records)[0])


def _first(out: object) -> torch.Tensor:
    from torch.utils._pytree import tree_leaves

    return tree_leaves(out)[0]


@dataclass(frozen=True)
class FidelityResult:
    """A simulated program against the model handed in (:func:`fidelity`)."""

    sqnr_db: float  # of the first output (inf: identical)
    accuracy: float | None  # top-1, with labels


def fidelity(
    module: torch.nn.Module, reference: list[torch.Tensor], data: Dataset, batch: int, labels: torch.Tensor | None
) -> FidelityResult:
    """SQNR (dB) of ``module``'s first output against ``reference`` (eager outputs), and top-1 accuracy with labels."""
    import torch

    with torch.no_grad():
        got = torch.cat([_first(module(*s)).float() for s in data.batches(batch)])
    ref = torch.cat(reference).float()
    noise = float(((got - ref) ** 2).sum())
    sqnr = math.inf if noise == 0 else 10 * math.log10(max(float((ref**2).sum()), 1e-30) / noise)
    acc = None
    if labels is not None:
        acc = float((got.argmax(1) == labels[: len(got)]).double().mean())
    return FidelityResult(sqnr, acc)


@dataclass(frozen=True)
class Sensitivity:
    layers: list[tuple[str, float]]  # (layer, SQNR in dB with only that layer quantized), most sensitive first
    keep: tuple[str, ...] | None  # the smallest most-sensitive set that meets the budget in simulation
    tried: list[tuple[int, FidelityResult]]  # (layers kept, simulated fidelity)


def mixed_precision(
    exported: ExportResult,
    scheme: QuantScheme,
    calib: Dataset,
    data: Dataset,
    meets: Callable[[FidelityResult], bool],
    step: Callable[[str], None] = lambda s: None,
    reference: torch.nn.Module | None = None,
    records: CalibrationStore | None = None,
) -> Sensitivity:
    """Rank the layers by sensitivity, then keep the most sensitive ones in fp32 one at a time until ``meets``
    (``reference``: the fp32 model to compare with, when ``exported`` already holds quantized embedding tables).

    Every simulation's calibration goes into ``records`` (the build cache's, in ``edgekit tune``) and is loaded from
    there when its observers all watch what an earlier one's did: a re-run after Ctrl-C scans without calibrating, and
    simulations that observe like the full model (or a build of it) load that. The others (an observer shared
    differently at a layer boundary) calibrate afresh."""
    import torch

    from ..pipeline.calibration import MemoryRecords
    from ..pipeline.quantize import layer_names

    names = layer_names(exported.program)
    batch = int(exported.example_inputs[0].shape[0])
    eager = reference if reference is not None else exported.program.module()
    with torch.no_grad():
        reference = [_first(eager(*s)).float() for s in data.batches(batch)]
    records = records if records is not None else MemoryRecords()
    ranked = []
    for i, name in enumerate(names, start=1):
        step(f"sensitivity {i}/{len(names)}: {name}")
        alone = simulate(exported, scheme, calib, tuple(n for n in names if n != name), records)
        ranked.append((name, fidelity(alone, reference, data, batch, None).sqnr_db))
    ranked.sort(key=lambda r: r[1])
    tried = []
    for k in range(1, min(MAX_FP32_LAYERS, len(names) - 1) + 1):
        keep = tuple(n for n, _ in ranked[:k])
        step(f"mixed precision: {k} layer(s) in fp32")
        fid = fidelity(simulate(exported, scheme, calib, keep, records), reference, data, batch, data.labels)
        tried.append((k, fid))
        if meets(fid):
            return Sensitivity(ranked, keep, tried)
    return Sensitivity(ranked, None, tried)
