"""Stage 2: pruning that pays (structured channel removal) and pruning that shrinks downloads (sparsity).

* Structured: torch-pruning's DependencyGraph and ``BasePruner`` remove whole channels and fix every coupled
  layer (residual adds, concatenations, batch norms, linear heads). The result is a smaller *dense* model:
  it exports, quantizes and lowers as usual and runs faster on XNNPACK's dense kernels.
* Magnitude sparsity: the smallest weights of conv/linear layers are zeroed (``torch.nn.utils.prune``) and
  made permanent (no ``weight_orig`` or masks remain). Zeros do **not** speed up dense kernels; they make
  the program compress better (a smaller download).
* Recovery fine-tuning on the user's labelled data, with sparsity masks held during training so it does
  not re-densify. Pruning without it can wreck accuracy.

The input module is never modified: the stage works on a deep copy.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..data import Dataset
from ..errors import PruneError, first_line
from ..manifest import FinetuneInfo, PruneSection
from ..targets import Importance, PruneConfig, PruneScope
from .training import check_finetune_data, finetune_

if TYPE_CHECKING:
    import torch
    from torch import nn

#: a row of the manifest's ``prune.layers`` or ``prune.sparsity_by_layer``
LayerRow = dict[str, "str | int | float"]

PRUNABLE = ("Conv1d", "Conv2d", "Conv3d", "Linear")


@dataclass(frozen=True)
class PruneResult:
    """The pruned (and fine-tuned) module, its dense twin before sparsity (for size comparisons), and the report."""

    module: nn.Module
    info: PruneSection  # the manifest's prune section
    dense_module: nn.Module | None = None


def _prunable(module: nn.Module) -> bool:
    return type(module).__name__ in PRUNABLE


def _channels(module: nn.Module) -> tuple[int, int]:
    if hasattr(module, "out_channels"):
        return module.in_channels, module.out_channels
    return module.in_features, module.out_features


def _forward(
    model: nn.Module, example_inputs: tuple[torch.Tensor, ...], produced: dict[int, str] | None = None
) -> list[torch.Tensor]:
    """One forward pass: the output tensors (pytree leaves, as export flattens them). With ``produced``,
    also records which conv/linear layer produced each tensor (by identity)."""
    import torch
    from torch.utils._pytree import tree_leaves

    hooks = []
    if produced is not None:
        for name, m in model.named_modules():
            if _prunable(m):
                hooks.append(
                    m.register_forward_hook(lambda mod, inp, out, name=name: produced.__setitem__(id(out), name))
                )
    try:
        with torch.no_grad():
            out = model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    return [leaf for leaf in tree_leaves(out) if isinstance(leaf, torch.Tensor)]


def _output_layers(model: nn.Module, outs: list[torch.Tensor], produced: dict[int, str]) -> list[str]:
    """Names of conv/linear layers whose output *is* a model output (pruning them would change the outputs)."""
    import torch

    names = [produced[id(o)] for o in outs if id(o) in produced]
    if not names:  # outputs post-processed after the last layer: protect layers producing the class dimension
        dims = {o.shape[-1] for o in outs if o.dim() >= 1}
        names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m.out_features in dims][-1:]
    return names


def _resolve_ignore(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    found = []
    for name in names:
        if name not in modules:
            candidates = [n for n in modules if n]
            close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.4)
            raise PruneError(
                f"prune.ignore names {name!r}, which matches no layer of the model",
                (f"close matches: {', '.join(close)}" if close else "layer names: " + ", ".join(candidates[:12])),
            )
        found.append(modules[name])
    return found


def count_macs_params(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(MACs, parameters) for one forward pass, by torch-pruning's counter."""
    import torch
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(
            model, example_inputs[0] if len(example_inputs) == 1 else example_inputs
        )
    return int(macs), int(params)


def _layer_table(before: dict[str, tuple[int, int]], model: nn.Module) -> list[LayerRow]:
    rows: list[LayerRow] = []
    for name, m in model.named_modules():
        if name in before and _prunable(m):
            (in0, out0), (in1, out1) = before[name], _channels(m)
            rows.append(
                {
                    "layer": name,
                    "type": type(m).__name__,
                    "out_before": out0,
                    "out_after": out1,
                    "in_before": in0,
                    "in_after": in1,
                    "kept": round(out1 / out0, 4) if out0 else 1.0,
                }
            )
    return rows


def unwrapped_conv_weights(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """Conv-like weights (3-D or more, several output channels) registered outside torch.nn layers.

    torch-pruning prunes such "unwrapped" parameters along their last dimension, which for a weight used
    through ``F.conv2d`` is the kernel, not the channel. Positional embeddings (``1 x T x D``) are fine.
    """
    out = []
    for mod_name, mod in model.named_modules():
        if type(mod).__module__.startswith("torch.nn"):
            continue
        for p_name, p in mod.named_parameters(recurse=False):
            if p.dim() >= 3 and p.shape[0] > 1:
                out.append((f"{mod_name}.{p_name}" if mod_name else p_name, tuple(p.shape)))
    return out


def structured_prune_(
    model: nn.Module, example_inputs: tuple[torch.Tensor, ...], cfg: PruneConfig, ignored: list[nn.Module]
) -> None:
    """Remove channels in place with torch-pruning (dependency-aware)."""
    import torch_pruning as tp

    importance = tp.importance.GroupMagnitudeImportance(p=1 if cfg.importance is Importance.L1 else 2)
    modules = dict(model.named_modules())
    ratio_dict = None
    if cfg.layer_ratios:
        unknown = [n for n in cfg.layer_ratios if n not in modules]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(modules), n=3, cutoff=0.4)
            raise PruneError(
                f"prune.layer_ratios names {unknown[0]!r}, which matches no layer",
                f"close matches: {', '.join(close)}" if close else "use names from model.named_modules()",
            )
        ratio_dict = {modules[n]: r for n, r in cfg.layer_ratios.items()}
    try:
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs[0] if len(example_inputs) == 1 else example_inputs,
            importance=importance,
            global_pruning=cfg.scope is PruneScope.GLOBAL,
            pruning_ratio=cfg.structured_ratio,
            pruning_ratio_dict=ratio_dict,
            ignored_layers=ignored,
            round_to=cfg.round_to if cfg.round_to > 1 else None,
        )
        pruner.step()
    except Exception as exc:
        msg = first_line(exc)
        raise PruneError(
            f"torch-pruning cannot prune this model: {type(exc).__name__}: {msg[:240]}",
            "add the layer it names to --prune-ignore, or use --sparsity (unstructured) instead",
        ) from exc


def _sparsity_targets(model: nn.Module, ignored_names: set[str]) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if _prunable(m) and n not in ignored_names]


def apply_sparsity_masks_(model: nn.Module, cfg: PruneConfig, ignored_names: set[str]) -> list[tuple[str, nn.Module]]:
    """Zero the smallest-magnitude weights (global or per layer) with masks that stay live until made permanent."""
    import torch.nn.utils.prune as tprune

    targets = _sparsity_targets(model, ignored_names)
    if not targets:
        raise PruneError("no conv or linear layer is left to sparsify", "remove names from --prune-ignore")
    if cfg.scope is PruneScope.GLOBAL:
        tprune.global_unstructured(
            [(m, "weight") for _, m in targets], pruning_method=tprune.L1Unstructured, amount=cfg.sparsity
        )
    else:
        for _, m in targets:
            tprune.l1_unstructured(m, "weight", amount=cfg.sparsity)
    return targets


def make_sparsity_permanent_(targets: list[tuple[str, nn.Module]]) -> list[LayerRow]:
    import torch.nn.utils.prune as tprune

    rows: list[LayerRow] = []
    for name, m in targets:
        tprune.remove(m, "weight")  # weight = weight_orig * mask, baked in; no weight_orig/mask left
        w = m.weight.detach()
        rows.append(
            {
                "layer": name,
                "weights": int(w.numel()),
                "zeros": int((w == 0).sum()),
                "sparsity": round(float((w == 0).double().mean()), 4),
            }
        )
    return rows


def prune_model(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    cfg: PruneConfig,
    *,
    finetune: Dataset | None = None,
    finetune_epochs: int = 0,
    finetune_lr: float = 1e-3,
    seed: int = 0,
) -> PruneResult:
    """Prune a copy of ``module`` as ``cfg`` says, optionally fine-tune it, and report what changed.

    Returns:
        A :class:`PruneResult` with the new module and the manifest's ``prune`` section.

    Raises:
        PruneError: an ``ignore`` name matches no layer, or torch-pruning cannot handle the model.
        DataError: fine-tune data without labels, or labels that do not fit the model.
    """
    model = copy.deepcopy(module).eval()
    produced: dict[int, str] = {}
    outputs = _forward(model, example_inputs, produced)
    auto_ignored = _output_layers(model, outputs, produced)
    ignore_names = tuple(dict.fromkeys((*cfg.ignore, *auto_ignored)))
    ignored = _resolve_ignore(model, ignore_names)
    if finetune is not None:
        check_finetune_data(finetune, outputs)
    macs0, params0 = count_macs_params(model, example_inputs)
    before = {n: _channels(m) for n, m in model.named_modules() if _prunable(m)}
    library = "torch-pruning " + __import__("torch_pruning").__version__
    if cfg.structured_ratio > 0 or cfg.layer_ratios:
        unwrapped = unwrapped_conv_weights(model)
        if unwrapped:
            name, shape = unwrapped[0]
            raise PruneError(
                f"structured pruning cannot handle parameter {name!r} ({'x'.join(map(str, shape))}): it is used "
                "outside an nn layer (e.g. through F.conv2d), so its channel dimension is unknown",
                "wrap it in nn.Conv2d/nn.Linear, or use --sparsity (unstructured) for this model",
            )
        shapes = [tuple(o.shape) for o in outputs]
        structured_prune_(model, example_inputs, cfg, ignored)
        try:
            after = [tuple(o.shape) for o in _forward(model, example_inputs)]
        except Exception as exc:
            raise PruneError(
                f"the pruned model no longer runs: {type(exc).__name__}: {first_line(exc, 200)}",
                "add the layer named there to --prune-ignore",
            ) from exc
        if after != shapes:
            raise PruneError(
                f"pruning changed the model's output shapes {shapes} → {after}",
                "add the output layer to --prune-ignore",
            )
    dense = copy.deepcopy(model) if cfg.sparsity > 0 else None
    targets = apply_sparsity_masks_(model, cfg, set(ignore_names)) if cfg.sparsity > 0 else []
    if finetune is not None and finetune_epochs > 0:
        try:
            losses = finetune_(model, finetune, epochs=finetune_epochs, lr=finetune_lr, seed=seed)
        except Exception as exc:  # a model that cannot train on batches (fixed batch size, no grad...) lands here
            msg = first_line(exc)
            raise PruneError(
                f"fine-tuning failed: {type(exc).__name__}: {msg[:200]}",
                "check the model trains on batches of the fine-tune data",
            ) from exc
        tuned = FinetuneInfo(
            data=finetune.source,
            samples=len(finetune),
            epochs=finetune_epochs,
            lr=finetune_lr,
            loss="cross-entropy",
            optimizer="Adam",
            epoch_losses=losses,
        )
    else:
        tuned = None
    by_layer, achieved, note = None, None, None
    if targets:
        by_layer = make_sparsity_permanent_(targets)
        zeros = sum(int(r["zeros"]) for r in by_layer)
        total = sum(int(r["weights"]) for r in by_layer)
        achieved = round(zeros / total, 4) if total else 0.0
        note = (
            "zeroed weights do not speed up XNNPACK's dense kernels; they make the program "
            "compress better (see program.compressed_size_bytes)"
        )
    leftovers = [n for n, _ in model.named_buffers() if n.endswith("_mask")] + [
        n for n, _ in model.named_parameters() if n.endswith("_orig")
    ]
    if leftovers:  # pragma: no cover - make_sparsity_permanent_ removes them all
        raise PruneError(f"pruning left temporary tensors behind: {leftovers[:3]}")
    macs1, params1 = count_macs_params(model, example_inputs)
    parts = []
    if cfg.structured_ratio > 0:
        parts.append(
            f"channels {cfg.structured_ratio:.0%}: params {params0:,} → {params1:,}, MACs {macs0:,} → {macs1:,}"
        )
    if targets:
        parts.append(f"sparsity {achieved:.1%}")
    if tuned:
        parts.append(f"fine-tuned {finetune_epochs} epoch(s)")
    info = PruneSection(
        applied=True,
        summary="; ".join(parts),
        structured_ratio=cfg.structured_ratio,
        sparsity=cfg.sparsity,
        importance=cfg.importance.value,
        scope=cfg.scope.value,
        round_to=cfg.round_to,
        ignore=list(cfg.ignore),
        auto_ignored=auto_ignored,
        library=library,
        finetune=tuned,
        params_before=params0,
        params_after=params1,
        macs_before=macs0,
        macs_after=macs1,
        params_ratio=round(params1 / params0, 4) if params0 else 1.0,
        macs_ratio=round(macs1 / macs0, 4) if macs0 else 1.0,
        layers=_layer_table(before, model),
        sparsity_by_layer=by_layer,
        sparsity_achieved=achieved,
        sparsity_note=note,
    )
    return PruneResult(model.eval(), info, None if dense is None else dense.eval())


def prune_detail(cfg: PruneConfig) -> str:
    """One line for the progress display: what this pruning config asks for."""
    parts = []
    if cfg.structured_ratio > 0 or cfg.layer_ratios:
        parts.append(f"channels {cfg.structured_ratio:.0%}" + (" + per-layer" if cfg.layer_ratios else ""))
    if cfg.sparsity > 0:
        parts.append(f"sparsity {cfg.sparsity:.0%}")
    return ", ".join(parts)
