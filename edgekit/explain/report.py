"""``edgekit explain PKG``: where a program's time goes and where it stops being faithful, in the user's own module
names (``layer3.1.conv2 (Conv2d)``, with the source line), plus its memory plan.

Time comes from an ETDump of the program in the native runner: XNNPACK logs each of its operators by name only
(executorch 1.5.1: no debug handle), so each delegate call's logged operators are aligned, in order, with the nodes of
its serialized XNNPACK graph (which do carry debug handles) recorded at build time in ``explain.json``; a node XNNPACK
fused away at run time is skipped, and an operator that matches nothing is shown without a module rather than
guessed. Fused work (a conv with its BatchNorm and ReLU) is charged to the module of the node it was fused into.
Fidelity is each module's output SQNR in PT2E's simulation of the quantized model against fp32 (recorded at build
time; the program cannot expose intermediates). Both are joined by module path.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import ProgramError
from .align import align, etdump_events, p50, precision
from .model import Explanation, MemoryPlanSummary, ModuleRow, spread_note

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..pipeline.package import ExplainDoc
    from ..profile.result import ProfileResult


@dataclass
class _Time:
    """One module's time as the ETDump's events are charged to it."""

    cls: str | None
    source: str | None
    order: int  # when it was first charged (execution order)
    ms: float = 0.0
    where: list[str] = field(default_factory=list)
    prec: list[str] = field(default_factory=list)
    fused: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)


def read_explain(package: Path, manifest: Manifest) -> ExplainDoc | None:
    """A package's ``explain.json`` (None for packages from before it).

    Raises:
        ProgramError: it does not match the manifest's sha256, or cannot be read.
    """
    if manifest.explain is None:
        return None
    path = package / manifest.explain.file
    try:
        data = path.read_bytes()
    except OSError:
        raise ProgramError(f"{path} is missing", "rebuild the package") from None
    if hashlib.sha256(data).hexdigest() != manifest.explain.sha256:
        raise ProgramError(
            f"{path} does not match its manifest (sha256): it changed after the build", "rebuild the package"
        )
    try:
        return json.loads(data)
    except ValueError:
        raise ProgramError(f"{path} is not valid JSON", "rebuild the package") from None


def explain(
    package: str | Path,
    *,
    runs: int = 50,
    threads: int | None = None,
    timeout: float = 300.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> Explanation:
    """Profile ``package`` once with an ETDump (native runner, here) and explain it by module.

    Raises:
        ProgramError: not a package, or a damaged explain.json. ProfileError: the profile failed.
    """
    from ..manifest import read_manifest
    from ..profile import profile

    package = Path(package)
    read_explain(package, read_manifest(package))  # a damaged explain.json fails before the profile
    with tempfile.TemporaryDirectory(prefix="edgekit-explain-") as tmp:
        etdump = Path(tmp) / "run.etdp"
        prof = profile(
            package,
            runs=max(20, runs),
            threads=threads,
            ops=True,
            ops_runs=runs,
            etdump_out=str(etdump),
            engine="native",
            timeout=timeout,
            progress=progress,
            warmup_seconds=0.2,
        )
        return explain_etdump(package, etdump, prof)


def explain_etdump(package: str | Path, etdump: Path, prof: ProfileResult) -> Explanation:
    """Join an ETDump of ``package`` (a profile with ``ops=True`` and ``etdump_out``) with its ``explain.json``:
    what ``explain`` does after profiling, for callers that profile anyway (``bench run``).

    Raises:
        ProgramError: not a package, or a damaged explain.json.
    """
    from ..manifest import read_manifest

    package = Path(package)
    manifest = read_manifest(package)
    doc = read_explain(package, manifest)
    notes = []
    if doc is None:
        notes.append(
            "this package has no explain.json (built before edgekit explain, or with --no-explain): operators "
            "are shown by XNNPACK's names without module names, fidelity or memory plan; rebuild it for them"
        )
    per_instr, method = etdump_events(etdump)
    instructions = (doc or {}).get("instructions") or {}
    reasons = (doc or {}).get("portable_reasons") or manifest.program.delegation.portable_reasons
    agg: dict[str, _Time] = {}
    unattributed = 0.0

    def charge(
        module: str | None,
        cls: str | None,
        source: str | None,
        ms: float,
        where: str,
        prec: str,
        fused: list[str],
        operator: str = "",
    ) -> None:
        key = module if module is not None else "(XNNPACK layout)"
        row = agg.setdefault(key, _Time(cls, source, len(agg)))
        row.ms += ms
        if operator:
            row.ops.append(operator)
        row.cls = row.cls or cls
        row.source = row.source or source
        if where not in row.where:
            row.where.append(where)
        if prec and prec not in row.prec:
            row.prec.append(prec)
        row.fused += [f for f in fused if f not in row.fused]

    for iid in sorted(per_instr):
        events, meta = per_instr[iid], instructions.get(str(iid), {})
        call = next((e for e in events if e[0] == "DELEGATE_CALL"), None)
        if call is None:  # a portable kernel
            name, raw, _ = events[0]
            op = name.removeprefix("native_call_").removesuffix(".out")
            why = "; ".join(reasons.get(next((k for k in reasons if op in k), ""), [])) or ""
            charge(
                meta.get("module") or ("(model)" if meta else None),
                meta.get("class"),
                meta.get("source"),
                p50(raw),
                f"portable: {op}" + (f" — {why}" if why else ""),
                "/".join(meta.get("dtypes", [])),
                [],
            )
            continue
        inner = [e for e in events if e[2]]
        xnodes = meta.get("xnodes", [])
        match = align([e[0] for e in inner], xnodes) if xnodes else [None] * len(inner)
        for (name, raw, _), j in zip(inner, match):
            label, ms = "XNNPACK: " + re.sub(r" #\d+$", "", name), p50(raw)
            if j is None:  # nothing in the recorded graph matches it: never guessed
                if instructions:
                    unattributed += ms
                else:  # a package from before explain.json: by XNNPACK's own operator name
                    charge(label, None, None, ms, label, precision(name), [])
                continue
            x = xnodes[j]
            quantized = "int8" if x.get("quantized") else "fp32"
            module = None if x.get("module") is None else (x["module"] or "(model)")  # None: inserted by XNNPACK
            charge(
                module,
                x.get("class"),
                x.get("source"),
                ms,
                label,
                precision(name) or quantized,
                x.get("fused", []),
                name,
            )
        unattributed += max(0.0, p50(call[1]) - sum(p50(e[1]) for e in inner))  # the delegate call's own overhead
    total = p50(method) or sum(r.ms for r in agg.values()) or 1.0
    fidelity_rows = {r["module"]: r for r in (((doc or {}).get("modules") or {}).get("rows") or [])}
    modules_doc = (doc or {}).get("modules")
    rows = []
    for name, r in agg.items():
        fid = fidelity_rows.get(name, {})
        note = "folded into the layer before it (PT2E)" if fid.get("folded") else None
        rows.append(
            ModuleRow(
                module=name,
                cls=r.cls,
                source=r.source,
                order=r.order,
                p50_ms=round(r.ms, 6),
                share=round(r.ms / total, 4),
                where="; ".join(r.where),
                precision="/".join(r.prec),
                sqnr_db=fid.get("sqnr_db"),
                local_sqnr_db=fid.get("local_sqnr_db"),
                impact_sqnr_db=fid.get("impact_sqnr_db"),
                leaf=fid.get("leaf", True),
                sqnr_note=note,
                fused=r.fused,
                operators=r.ops,
            )
        )
    seen = set(agg)  # modules with fidelity but no time of their own (fused into another one's operator)
    for name, fid in fidelity_rows.items():
        if name not in seen and fid.get("sqnr_db") is not None:
            rows.append(
                ModuleRow(
                    module=name,
                    cls=fid.get("class"),
                    source=fid.get("source"),
                    order=len(rows),
                    p50_ms=0.0,
                    share=0.0,
                    where="fused into another module's operator",
                    precision="",
                    sqnr_db=fid["sqnr_db"],
                    local_sqnr_db=fid.get("local_sqnr_db"),
                    impact_sqnr_db=fid.get("impact_sqnr_db"),
                    leaf=fid.get("leaf", True),
                )
            )
    if modules_doc:
        fidelity = (
            f"output SQNR per module, {modules_doc['kind']}, on {modules_doc['samples']} sample(s) of "
            f"{modules_doc['data']}"
        )
    elif manifest.quantize.applied and manifest.quantize.scheme != "fp16":
        fidelity = "not recorded for this package (rebuild it for per-module fidelity)"
    else:
        fidelity = f"not applicable: the program is {manifest.quantize.scheme if manifest.quantize.applied else 'fp32'}"
    mem = (doc or {}).get("memory")
    memory = None
    if mem:
        memory = MemoryPlanSummary(
            arenas_bytes=mem["arenas_bytes"],
            planned_bytes=mem["planned_bytes"],
            peak_live_bytes=mem["peak"]["bytes"],
            peak_step=mem["peak"]["step"],
            peak_modules=mem["peak"]["modules"],
            steps=mem["steps"],
            tensors=len(mem["tensors"]),
            measured_peak_rss_mb=prof.memory.peak_rss_mb,
            note=mem["note"],
        )
    ex = Explanation(
        package=str(package),
        model=manifest.model.spec,
        target=manifest.target.get("name", "?"),
        runs=len(method),
        threads=prof.threads["effective"],
        method_p50_ms=round(total, 6),
        untraced_p50_ms=prof.latency_ms.p50,
        rows=rows,
        unattributed_ms=round(unattributed, 6),
        fidelity=fidelity,
        memory=memory,
        notes=notes,
        plan=mem,
    )
    spread = spread_note(ex, manifest.verify.sqnr_db if manifest.verify else None)
    if spread:
        ex.notes.append(spread)
    return ex
