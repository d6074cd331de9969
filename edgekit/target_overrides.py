"""A target with the build command's overrides applied (``--prune-channels``, ``--prune-layer``, ...)."""

from __future__ import annotations

import math
from typing import Iterable

from .targets import Target


def parse_layer_ratios(items: Iterable[str]) -> dict[str, float]:
    """``["layer1.0.conv1=0.3", ...]`` → {layer: ratio}; UsageError unless each is LAYER=RATIO, finite, in [0, 1)."""
    from .errors import UsageError

    ratios = {}
    for item in items:
        name, sep, value = str(item).rpartition("=")
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not sep or not name or not math.isfinite(ratio) or not 0 <= ratio < 1:
            raise UsageError(
                f"--prune-layer {item!r} is not LAYER=RATIO with 0 <= RATIO < 1",
                "e.g. --prune-layer layer1.0.conv1=0.3",
            )
        ratios[name] = ratio
    return ratios


def with_build_options(
    target: Target,
    *,
    has_eval: bool,
    prune_layer: Iterable[str] = (),
    prune_ignore: Iterable[str] = (),
    max_accuracy_drop: float | None = None,
    quantize_embeddings: str | None = None,
    group_size: int | None = None,
    max_ppl_increase: float | None = None,
    max_kld: float | None = None,
    min_top1: float | None = None,
    **prune: float | str | None,
) -> Target:
    """The target with the build command's overrides applied (``prune`` keys are ``[prune]`` fields; None = unset).

    Raises:
        UsageError: malformed per-layer ratios, or an accuracy budget without labelled data to check it.
        ConfigError: an override outside its valid range.
    """
    from .errors import UsageError

    changes: dict[str, object] = {f"prune__{k}": v for k, v in prune.items() if v is not None}
    if quantize_embeddings is not None:
        changes["quantize__embeddings"] = quantize_embeddings
    if group_size is not None:
        changes["quantize__group_size"] = group_size
    if max_ppl_increase is not None:
        changes["budget__max_ppl_increase_pct"] = max_ppl_increase
    if max_kld is not None:
        changes["budget__max_kld"] = max_kld
    if min_top1 is not None:
        changes["budget__min_top1_pct"] = min_top1
    if prune_ignore:
        changes["prune__ignore"] = tuple(prune_ignore)
    if prune_layer:
        changes["prune__layer_ratios"] = parse_layer_ratios(prune_layer)
    if max_accuracy_drop is not None:
        if not has_eval:
            raise UsageError(
                "--max-accuracy-drop needs --eval with labelled data to measure accuracy",
                "add --eval test.npz (inputs 'x', labels 'y')",
            )
        changes["budget__max_accuracy_drop"] = max_accuracy_drop
    return target.replace(**changes) if changes else target
