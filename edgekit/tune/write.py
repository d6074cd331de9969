"""Write the chosen candidate as a normal package (its program and manifest, plus the ``tune`` section) with
``tune.html`` (the Pareto plot and the table) beside them, swapped into place whole."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..builds import ModelEntry
    from ..manifest import VerifySection
    from ..manifest_tune import TuneCandidate, TuneSection
    from .search import Budget, Tried, TuneOptions, TuneResult


class TuneSession(Protocol):
    """What writing the chosen package reads of a tune (:class:`edgekit.tune.run._Session`)."""

    model: ModelEntry
    opts: TuneOptions
    budget: Budget
    tried: list[Tried]
    notes: list[str]


def write_tuned(
    s: TuneSession,
    chosen: Tried,
    skipped: list[TuneCandidate],
    why: str,
    p: float | None,
    out: Path,
    force: bool,
) -> TuneResult:
    from ..manifest_tune import TuneSection

    section = TuneSection(
        objective=s.opts.objective,
        budget=s.budget.fidelity_dict(),
        threads=s.opts.threads,
        candidates=skipped + [t.record() for t in s.tried],
        decision=f"{chosen.recipe.name}: {why}",
        mann_whitney_p=p,
        fidelity=fidelity_line(chosen.manifest.verify, s.budget),
    )
    return write_package(s.model.spec, section, chosen, s.notes, out, force)


def write_package(
    model: str, section: TuneSection, chosen: Tried, notes: list[str], out: Path, force: bool
) -> TuneResult:
    """The chosen candidate's package at ``out`` with ``section`` as its manifest's ``tune``, and ``tune.html``."""
    from ..fileops import staged_output, write_json
    from ..manifest import MANIFEST_NAME
    from .report import html_page
    from .search import TuneResult

    manifest = chosen.manifest.replace(tune=section)
    meta = f"{len(section.candidates)} candidates; " + "; ".join(notes)
    with staged_output(out, force) as tmp:
        for name in chosen.manifest.files():
            if name != MANIFEST_NAME:
                shutil.copyfile(chosen.folder / name, tmp / name)
        write_json(tmp / MANIFEST_NAME, manifest.to_dict())
        (tmp / "tune.html").write_text(html_page(model, section, meta), encoding="utf-8")
    return TuneResult(Path(out), manifest, tuple(notes))


def fidelity_line(v: VerifySection, budget: Budget) -> str:
    """The chosen program's budget figures, and what they were measured against: the model the user handed in."""
    figures = [f"SQNR {'exact' if v.sqnr_db is None else f'{v.sqnr_db:.1f} dB'}"]
    if v.accuracy is not None:
        figures.insert(
            0,
            f"top-1 accuracy drop {v.accuracy.drop * 100:.2f} pts ({v.accuracy.eager:.2%} → {v.accuracy.program:.2%})",
        )
    if v.cosine_min is not None:
        figures.append(f"cosine min {v.cosine_min:.4f}")
    lowering = ""
    if v.lowering is not None:
        lowering = f"; against the pruned model it was built from: SQNR {'exact' if v.lowering.sqnr_db is None else f'{v.lowering.sqnr_db:.1f} dB'}"
    return (
        f"{', '.join(figures)} against your model (eager fp32, as handed in) on {v.samples} samples from {v.data}, "
        f"budget {budget.describe_fidelity()}{lowering}"
    )
