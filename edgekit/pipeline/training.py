"""Training helpers shared by recovery fine-tuning (after pruning) and the demo: cross-entropy with Adam, accuracy.

They work on a :class:`~edgekit.data.Dataset` of labelled samples and a classifier whose single output is
``N x classes``. ``finetune_`` changes the model in place (the trailing underscore says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data import Dataset
from ..errors import DataError

if TYPE_CHECKING:
    import torch


def check_finetune_data(ds: Dataset, outputs: list[torch.Tensor]) -> int:
    """Labels present and within the classes of the model's (single) output; returns the number of classes."""
    if ds.labels is None:
        raise DataError(f"fine-tune data {ds.source} has no labels", "store labels under 'y' beside the inputs 'x'")
    out = outputs[0] if len(outputs) == 1 else None
    if out is None or out.dim() != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if out is not None else f"{len(outputs)} tensors"
        raise DataError(
            f"fine-tuning uses cross-entropy on class scores, but the model outputs {shape}",
            "fine-tune the model yourself before building, or skip --finetune",
        )
    classes = int(out.shape[1])
    lo, hi = int(ds.labels.min()), int(ds.labels.max())
    if lo < 0 or hi >= classes:
        raise DataError(
            f"fine-tune labels in {ds.source} range over {lo}..{hi} but the model has {classes} classes",
            f"labels must be integers in 0..{classes - 1}",
        )
    return classes


def finetune_(
    model: torch.nn.Module, ds: Dataset, *, epochs: int, lr: float, batch: int = 32, seed: int = 0, cosine: bool = False
) -> list[float]:
    """Train in place with Adam and cross-entropy (``cosine``: anneal the rate over the epochs).

    Returns:
        The mean loss of each epoch.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)) if cosine else None
    n = len(ds)
    losses = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            if len(idx) < 2:  # batch norm cannot train on one sample
                continue
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(*(t[idx] for t in ds.inputs)), ds.labels[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(round(total / max(1, count), 5))
        if sched is not None:
            sched.step()
    model.eval()
    return losses


def accuracy(model: torch.nn.Module, ds: Dataset, batch: int = 256) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(ds), batch):
            logits = model(*(t[i : i + batch] for t in ds.inputs))
            correct += int((logits.argmax(1) == ds.labels[i : i + batch]).sum())
    return correct / len(ds)
