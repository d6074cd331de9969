"""Write the chosen candidate as a normal package (its program and manifest, plus the ``tune`` section) with
``tune.html`` (the Pareto plot and the table) beside them, swapped into place whole."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def write_tuned(s: Any, chosen: Any, skipped: list, why: str, p: float | None, out: Path, force: bool) -> Any:
    from .._fs import staged_output, write_json
    from ..manifest import MANIFEST_NAME, TuneSection
    from .run import TuneResult
    from .report import html_page

    section = TuneSection(objective=s.opts.objective, budget=s.budget.to_dict(), threads=s.opts.threads,
                          candidates=skipped + [t.record() for t in s.tried], decision=f"{chosen.recipe.name}: {why}",
                          mann_whitney_p=p)
    manifest = chosen.manifest.replace(tune=section)
    meta = f"{len(section.candidates)} candidates; " + "; ".join(s.notes)
    with staged_output(out, force) as tmp:
        shutil.copyfile(chosen.folder / chosen.manifest.program.file, tmp / chosen.manifest.program.file)
        write_json(tmp / MANIFEST_NAME, manifest.to_dict())
        (tmp / "tune.html").write_text(html_page(s.model.spec, section, meta), encoding="utf-8")
    return TuneResult(Path(out), manifest, tuple(s.notes))
