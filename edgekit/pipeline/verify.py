"""The verify stage's comparisons: run the lowered program through the ExecuTorch runtime and compare it with eager
fp32 (:mod:`.tensor_verify` runs them in a build).

Metrics per output: max/mean absolute error, SQNR in dB (10·log10(Σref² / Σ(ref−out)²); ``null`` with
``exact: true`` when the outputs are identical), and cosine similarity (per sample: mean and minimum). Then the
figures that fit what the first output *is* (:class:`Task`, guessed from the output and the data, or given):

* ``classify`` (class scores): top-1 agreement between eager and program; with labels, top-1 accuracy and the drop;
* ``embed`` (embeddings, hidden states): per-sample cosine (min, mean) and nearest-neighbour agreement over the
  verification set (does each sample's closest other sample stay the same?);
* ``regress`` (anything else): SQNR and maximum error only.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..data import Dataset
from ..errors import DataError, VerifyError
from ..manifest import (
    REFERENCE_ORIGINAL,
    REFERENCE_PRUNED,
    Accuracy,
    LoweringCheck,
    OutputFidelity,
    SizeCheck,
    VerifySection,
)
from ..program import InProcessProgram

if TYPE_CHECKING:
    import torch

    from ..dynamic import ResolvedDim


class Task(str, enum.Enum):
    """What a model's first output is, so that verification reports the figures that mean something for it."""

    CLASSIFY = "classify"
    EMBED = "embed"
    REGRESS = "regress"


def guess_task(first_out: torch.Tensor, labelled: bool) -> tuple[Task, str]:
    """(task, why) from the first output's shape and values, and whether the data has labels."""
    import torch

    if labelled:
        return Task.CLASSIFY, "guessed: the data has labels"
    if first_out.dim() >= 3 and first_out.shape[-1] >= 16:
        return (
            Task.EMBED,
            f"guessed: a {first_out.dim()}-D output (N x ... x {first_out.shape[-1]}) looks like hidden states",
        )
    if first_out.dim() == 2 and first_out.shape[1] >= 2:
        norms = torch.linalg.vector_norm(first_out.double(), dim=1)
        if bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3)):
            return Task.EMBED, "guessed: rows of unit length look like normalised embeddings"
        return (
            Task.CLASSIFY,
            f"guessed: an N x {first_out.shape[1]} output looks like class scores (--task embed if not)",
        )
    return Task.REGRESS, f"guessed: an output of shape {tuple(first_out.shape)} is neither class scores nor embeddings"


def nn_agreement(ref: torch.Tensor, got: torch.Tensor) -> float | None:
    """Share of samples whose nearest other sample (by cosine) is the same for eager and program outputs."""
    import torch

    if ref.shape[0] < 3:
        return None
    a = torch.nn.functional.normalize(ref.reshape(ref.shape[0], -1).double(), dim=1)
    b = torch.nn.functional.normalize(got.reshape(got.shape[0], -1).double(), dim=1)
    sa, sb = a @ a.T, b @ b.T
    sa.fill_diagonal_(-2)
    sb.fill_diagonal_(-2)
    return round(float((sa.argmax(1) == sb.argmax(1)).double().mean()), 6)


def compare_outputs(ref: torch.Tensor, got: torch.Tensor, index: int = 0) -> OutputFidelity:
    """Error metrics between two float tensors of the same shape (``N x ...``): output ``index``'s fidelity."""
    import torch

    ref = ref.detach().double()
    got = got.detach().double()
    err = got - ref
    signal = float((ref**2).sum())
    noise = float((err**2).sum())
    flat_r = ref.reshape(ref.shape[0], -1)
    flat_g = got.reshape(got.shape[0], -1)
    cos = torch.nn.functional.cosine_similarity(flat_r, flat_g, dim=1, eps=1e-12)
    top1 = None
    if ref.dim() == 2 and ref.shape[1] > 1:
        top1 = float((ref.argmax(1) == got.argmax(1)).double().mean())
    return OutputFidelity(
        index=index,
        max_abs_error=float(err.abs().max()) if err.numel() else 0.0,
        mean_abs_error=float(err.abs().mean()) if err.numel() else 0.0,
        sqnr_db=None if noise == 0 else (round(10 * math.log10(signal / noise), 3) if signal > 0 else None),
        exact=noise == 0,
        cosine_similarity=round(float(cos.mean()), 6),
        top1_agreement=top1,
        cosine_min=round(float(cos.min()), 6),
    )


def verify_program(
    pte: bytes | str | Path | InProcessProgram,
    reference: torch.nn.Module,
    data: Dataset,
    *,
    batch: int = 1,
    labelled: bool = False,
    task: Task | str | None = None,
    task_reason: str = "given with --task",
    exported_model: torch.nn.Module | None = None,
) -> VerifySection:
    """Run ``data`` through the program and the eager ``reference`` and compare them.

    Args:
        pte: the program to verify (its bytes, or a file).
        reference: the model the user handed in, eager fp32 (not modified): every figure of the result, and so every
            budget, is measured against it.
        data: held-out samples (never the calibration ones).
        batch: samples per call (the program's static batch, or a chunk when the batch is dynamic).
        labelled: report accuracy when ``data.labels`` is set.
        task: what the first output is (``classify``, ``embed``, ``regress``); guessed when None.
        exported_model: the eager model that was exported when it is not ``reference`` (pruned): the same samples are
            compared with it too, as ``lowering`` (did export, quantization and lowering work?), and with labels its
            accuracy is reported as ``accuracy.pruned_eager``.

    Returns:
        The verify section of the manifest.

    Raises:
        DataError: ``data`` has fewer samples than one batch of the program.
    """
    import torch

    if len(data) < batch:
        raise DataError(
            f"{data.source} has {len(data)} sample(s) but the program runs batches of {batch}",
            f"give at least {batch} held-out samples, or build with --dynamic-batch",
        )
    program = pte if isinstance(pte, InProcessProgram) else InProcessProgram(pte)
    with torch.no_grad():
        pte_out = [list(program.run(sample)) for sample in data.batches(batch)]
    n = sum(int(b[0].shape[0]) for b in pte_out)
    eager_out = _eager_outputs(reference, data.take(n), batch)
    fid = _fidelity(eager_out, pte_out, data.source)
    sqnrs = [o.sqnr_db for o in fid if o.sqnr_db is not None]
    accuracy, note = None, None
    first_out = eager_out[0][0]
    kind, why = (Task(task), task_reason) if task else guess_task(first_out, labelled and data.labels is not None)
    first_ref, first_got = torch.cat([b[0] for b in eager_out]).float(), torch.cat([b[0] for b in pte_out]).float()
    if labelled and data.labels is not None and (first_out.dim() != 2 or first_out.shape[1] < 2):
        note = (
            f"labels given, but the first output has shape {tuple(first_out.shape)}, "
            "not N x classes: top-1 accuracy does not apply"
        )
    elif labelled and data.labels is not None:
        labels = data.labels[:n]
        eager_acc = float((torch.cat([b[0] for b in eager_out]).argmax(1) == labels).double().mean())
        pte_acc = float((torch.cat([b[0] for b in pte_out]).argmax(1) == labels).double().mean())
        accuracy = Accuracy(
            samples=n, eager=round(eager_acc, 6), program=round(pte_acc, 6), drop=round(eager_acc - pte_acc, 6)
        )
    lowering = None
    if exported_model is not None:
        exported_out = _eager_outputs(exported_model, data.take(n), batch)
        low = _fidelity(exported_out, pte_out, data.source)
        lowering = LoweringCheck(
            reference=REFERENCE_PRUNED,
            sqnr_db=min((o.sqnr_db for o in low if o.sqnr_db is not None), default=None),
            exact=all(o.exact for o in low),
            cosine_similarity=min(o.cosine_similarity for o in low),
            cosine_min=min(o.cosine_min for o in low),
            max_abs_error=max(o.max_abs_error for o in low),
            top1_agreement=low[0].top1_agreement if kind is Task.CLASSIFY else None,
        )
        if accuracy is not None:
            pruned = float((torch.cat([b[0] for b in exported_out]).argmax(1) == data.labels[:n]).double().mean())
            accuracy = accuracy.replace(original_eager=accuracy.eager, pruned_eager=round(pruned, 6))
    return VerifySection(
        samples=n,
        data=data.source,
        max_abs_error=max(o.max_abs_error for o in fid),
        mean_abs_error=fid[0].mean_abs_error,
        sqnr_db=min(sqnrs) if sqnrs else None,
        exact=all(o.exact for o in fid),
        cosine_similarity=min(o.cosine_similarity for o in fid),
        outputs=fid,
        top1_agreement=fid[0].top1_agreement if kind is Task.CLASSIFY else None,
        accuracy=accuracy,
        accuracy_note=note,
        task=kind.value,
        task_reason=why,
        cosine_min=min(o.cosine_min for o in fid),
        nn_agreement=nn_agreement(first_ref, first_got) if kind is Task.EMBED else None,
        reference=REFERENCE_ORIGINAL,
        lowering=lowering,
    )


def _fidelity(
    eager_out: list[list[torch.Tensor]], pte_out: list[list[torch.Tensor]], source: str
) -> list[OutputFidelity]:
    """Per output: the program's batches against the eager model's."""
    import torch

    outputs = []
    for i in range(len(eager_out[0])):
        ref = torch.cat([b[i] for b in eager_out])
        got = torch.cat([b[i] for b in pte_out])
        _check_finite(ref, got, i, source)
        outputs.append(compare_outputs(ref.float(), got.float(), i))
    return outputs


def _eager_outputs(reference: torch.nn.Module, data: Dataset, batch: int) -> list[list[torch.Tensor]]:
    """The eager model's outputs (the pytree leaves: export flattens tuples, lists and dicts), 8 samples a call for a
    batch-1 program when the model takes any batch (ResNet-18 @224 on 2 cores: 32 samples in 1.3 s, against 2.0 s
    one at a time and 1.5 s 32 at a time), else in the program's own batches."""
    import torch
    from torch.utils._pytree import tree_leaves

    def run(chunk: int) -> list[list[torch.Tensor]]:
        out = []
        with torch.no_grad():
            for start in range(0, len(data), chunk):
                part = tuple(t.contiguous() for t in data.take(chunk, start).inputs)
                out.append([leaf for leaf in tree_leaves(reference(*part)) if isinstance(leaf, torch.Tensor)])
        return out

    if batch == 1 and len(data) > 1:
        try:
            return run(8)
        except Exception:  # a model that fixes its batch size: run it as the program runs
            pass
    return run(batch)


def _check_finite(ref: torch.Tensor, got: torch.Tensor, index: int, source: str) -> None:
    """NaN or inf in the program's output where eager's is finite: the program is broken on this data."""
    import torch

    bad = ~torch.isfinite(got.float()) & torch.isfinite(ref.float())
    if bool(bad.any()):
        raise VerifyError(
            f"output {index} of the program holds {int(bad.sum())} NaN/inf value(s) on {source} where the "
            "eager model's are finite",
            "an activation overflows after quantization: try the "
            "xnnpack-fp32 target, or check the data is what the model expects",
        )


def data_at(data: Dataset, dims: Sequence[ResolvedDim], sizes: list[int]) -> Dataset:
    """``data`` with each dynamic dimension at its size: re-tokenised text where the data is sentences (the token
    dimension of every input), else cut or tiled along the dimension."""
    from ..dynamic import at_sizes

    token_dims = [(d, s) for d, s in zip(dims, sizes) if d.dim == 1 and len(d.indices) == len(data.inputs)]
    if data.retokenize is not None and len(token_dims) == len(dims):
        return data.retokenize(token_dims[0][1])
    return Dataset(at_sizes(data.inputs, dims, sizes), data.labels, data.source)


def verify_at_sizes(
    pte: bytes | str | Path | InProcessProgram,
    reference: torch.nn.Module,
    data: Dataset,
    dims: Sequence[ResolvedDim],
    *,
    batch: int,
    samples: int = 16,
) -> list[SizeCheck]:
    """The program against eager with each dynamic dimension (batch aside) at its bounds, one at a time.

    Raises:
        VerifyError: the program fails to run, or gives NaN/inf, at one of the sizes.
    """
    from ..dynamic import verify_sizes
    from ..errors import ProgramError

    checks = []
    base = [d.example for d in dims]
    program = pte if isinstance(pte, InProcessProgram) else InProcessProgram(pte)  # loaded once for every size
    for k, d in enumerate(dims):
        for size in verify_sizes(d):
            if size == d.example:
                continue
            sizes = base[:k] + [size] + base[k + 1 :]
            sub = data_at(data, dims, sizes).take(max(batch, samples))
            try:
                v = verify_program(program, reference, sub, batch=batch, task=Task.REGRESS)
            except ProgramError as exc:
                raise VerifyError(
                    f"the program does not run with {d.label()} = {size}, inside its range {d.min}..{d.max}: {exc}",
                    "narrow the --dynamic-dim range",
                ) from exc
            checks.append(
                SizeCheck(
                    sizes={dd.label(): sz for dd, sz in zip(dims, sizes)},
                    samples=v.samples,
                    max_abs_error=v.max_abs_error,
                    sqnr_db=v.sqnr_db,
                    cosine_min=v.cosine_min or 0.0,
                )
            )
    return checks
