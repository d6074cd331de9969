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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._contract import Contract
from ..errors import ProgramError

#: XNNPACK's runtime operator names (``Convolution (NHWC, QC8) IGEMM #2``) → the category of its graph nodes
RUNTIME_CATEGORY = [
    ("Convolution", "conv"), ("Deconvolution", "deconv"), ("Fully Connected", "fc"), ("Transpose", "transpose"),
    ("Static Reshape", "reshape"), ("Copy", "reshape"), ("Mean", "mean"), ("Global Average Pooling", "mean"),
    ("Convert", "convert"), ("Clamp", "clamp"), ("Add", "add"), ("Subtract", "sub"), ("Multiply", "mul"),
    ("Divide", "div"), ("Max Pooling", "maxpool"), ("Average Pooling", "avgpool"), ("Softmax", "softmax"),
    ("Sigmoid", "sigmoid"), ("HardSwish", "hardswish"), ("Slice", "slice"), ("Batch Matrix Multiply", "bmm"),
    ("Constant Pad", "pad"), ("Concatenate", "concat"), ("Leaky ReLU", "leakyrelu"), ("Tanh", "tanh"),
    ("GELU", "gelu"), ("ELU", "elu"), ("PReLU", "prelu"), ("Maximum", "max"), ("Minimum", "min"),
    ("Square Root", "sqrt"), ("Reciprocal Square Root", "rsqrt"), ("Exp", "exp"), ("Log", "log"),
    ("Negate", "neg"), ("Abs", "abs"), ("Resize Bilinear", "resize"),
]  # fmt: skip
#: a runtime operator that XNNPACK made of a graph node of another kind: a 1×1 convolution runs as a GEMM
STANDS_FOR = {("fc", "conv")}
SORTS = ("order", "time", "sqnr")


@dataclass(frozen=True)
class ModuleRow(Contract):
    """One module of the user's model, in execution order."""

    module: str  # the module path, "(model)" for the root, "(XNNPACK layout)" for what XNNPACK inserted
    cls: str | None
    source: str | None  # file:line  code, the innermost frame of the user's own code
    order: int
    p50_ms: float  # per run, summed over its operators
    share: float  # of the program's p50 run (Method::execute in the ETDump runs)
    where: str  # "XNNPACK: Convolution (NHWC, QC8) IGEMM" or "portable: native_layer_norm — reason"
    precision: str  # int8, fp32, fp16, int8 (data movement), ...
    sqnr_db: float | None = None  # simulated output SQNR against fp32 (None: exact, folded or not measured)
    local_sqnr_db: float | None = None  # SQNR of this leaf alone: its own quantization, fed the exact fp32 inputs
    impact_sqnr_db: float | None = None  # the model's output SQNR with only this leaf's own error (what it does)
    leaf: bool = True  # a module with no submodule of its own (a layer, not a block)
    sqnr_note: str | None = None
    fused: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)  # the runtime operators charged to it (``... IGEMM #7``)

    @property
    def faithfulness(self) -> float | None:
        """What ranks the least faithful: the output SQNR with only this module quantized (its own output's SQNR in an
        explain.json from before that was measured)."""
        return self.impact_sqnr_db if self.impact_sqnr_db is not None else self.local_sqnr_db


@dataclass(frozen=True)
class MemoryPlanSummary(Contract):
    arenas_bytes: list[int]
    planned_bytes: int
    peak_live_bytes: int
    peak_step: int
    peak_modules: list[str]
    steps: int
    tensors: int
    measured_peak_rss_mb: float | None
    note: str


@dataclass(frozen=True)
class Explanation(Contract):
    package: str
    model: str
    target: str
    runs: int  # ETDump runs behind the times
    threads: int
    method_p50_ms: float  # the program's p50 in the ETDump runs
    untraced_p50_ms: float  # and without tracing (the profile's timed runs)
    rows: list[ModuleRow]
    unattributed_ms: float  # delegate overhead and operators no module could be named for
    fidelity: str  # how the SQNR column was measured, or why it is missing
    memory: MemoryPlanSummary | None
    notes: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None  # the whole memory plan (every tensor's lifetime), for the HTML picture

    def slowest(self, n: int = 3) -> list[ModuleRow]:
        return sorted((r for r in self.rows if r.p50_ms > 0), key=lambda r: -r.p50_ms)[:n]

    def least_faithful(self, n: int = 3) -> list[ModuleRow]:
        """The layers that add the most noise themselves (not the last ones, where every earlier error arrives);
        modules that compute nothing in inference (Dropout, Identity, Flatten) are not candidates."""
        rows = [r for r in self.rows if r.faithfulness is not None and r.leaf and r.cls not in NO_COMPUTE]
        return sorted(rows, key=lambda r: r.faithfulness)[:n]


#: module classes that pass their input through in inference: never "the layer that makes the model wrong"
NO_COMPUTE = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity", "Flatten"})
#: a least faithful layer this far (dB) above the program's own SQNR is not what makes the program wrong
SPREAD_DB = 10.0


def spread_note(ex: Explanation, program_sqnr_db: float | None) -> str | None:
    """When no single layer explains the program's error: every layer alone is far more faithful than the whole."""
    worst = ex.least_faithful(1)
    if not worst or program_sqnr_db is None or worst[0].faithfulness - program_sqnr_db < SPREAD_DB:
        return None
    n = sum(1 for r in ex.rows if r.faithfulness is not None and r.leaf and r.cls not in NO_COMPUTE)
    return (
        f"no single layer makes this program wrong: with only the least faithful, {worst[0].module}, quantized the "
        f"output would be {worst[0].faithfulness:.1f} dB SQNR, and the program is {program_sqnr_db:.1f} dB against "
        f"your model — the error accumulates over {n} quantized modules, so keeping one in fp32 barely helps (edgekit "
        "tune's mixed precision keeps several; calibration data like the real inputs narrows every layer's ranges)"
    )


def fidelity_line(r: ModuleRow) -> str:
    """One least-faithful module, in words."""
    where = f" at {r.source.split()[0]}" if r.source else ""
    if r.impact_sqnr_db is None:  # an explain.json from before impact_sqnr_db
        return f"{r.module} ({r.cls or '?'}) alone {r.local_sqnr_db:.1f} dB SQNR at its output{where}"
    return (
        f"{r.module} ({r.cls or '?'}){where}: output {r.impact_sqnr_db:.1f} dB SQNR if only it were quantized (its own "
        f"output {r.local_sqnr_db:.1f} dB)"
    )


def db_cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def runtime_category(name: str) -> str:
    base = re.sub(r" #\d+$", "", name)
    for prefix, cat in RUNTIME_CATEGORY:
        if base.startswith(prefix):
            return cat
    return base.split(" (")[0].lower()


def precision(name: str) -> str:
    """From XNNPACK's operator name: ``(NHWC, QC8)``, ``(NC, QS8, QC8W)``, ``(NC, F32)``, ``(ND, X8)``."""
    inside = re.search(r"\(([^)]*)\)", name)
    tags = [t.strip() for t in inside.group(1).split(",")] if inside else []
    if any(t.startswith(("QS8", "QU8", "QC8", "QD8", "QC4", "QB4", "QP8")) for t in tags):
        return "int8"
    if "F16" in tags:
        return "fp16"
    if "F32" in tags:
        return "fp32"
    if "X8" in tags:
        return "int8 (data movement)"
    if "X32" in tags:
        return "fp32 (data movement)"
    return ""


def align(ops: list[str], xnodes: list[dict]) -> list[int | None]:
    """Logged operator i → XNNPACK graph node index (same category, in order). Graph nodes may be skipped (XNNPACK
    fused them at run time); an operator only when nothing matches it."""
    n, m = len(ops), len(xnodes)
    best = [[-1e9] * (m + 1) for _ in range(n + 1)]
    back: list[list[str | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    best[0] = [-0.1 * j for j in range(m + 1)]
    for i in range(1, n + 1):
        best[i][0], back[i][0] = best[i - 1][0] - 5, "op"
        cat = runtime_category(ops[i - 1])
        for j in range(1, m + 1):
            cands = [(best[i][j - 1] - 0.1, "node"), (best[i - 1][j] - 5, "op")]
            node_cat = xnodes[j - 1].get("category")
            if node_cat == cat:
                cands.append((best[i - 1][j - 1] + 2, "match"))
            elif (cat, node_cat) in STANDS_FOR:
                cands.append((best[i - 1][j - 1] + 1.5, "match"))
            best[i][j], back[i][j] = max(cands)
    out: list[int | None] = [None] * n
    i, j = n, m
    while i > 0:
        step = back[i][j]
        if step == "match":
            out[i - 1], i, j = j - 1, i - 1, j - 1
        elif step == "node":
            j -= 1
        else:
            i -= 1
    return out


def read_explain(package: Path, manifest: Any) -> dict | None:
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


def _events(etdump: Path) -> tuple[dict[int, list[tuple[str, list[float], bool]]], list[float]]:
    """Per instruction: (event name, raw ms samples, delegate-internal?); and Method::execute's samples."""
    from .._noise import quiet

    with quiet():
        from executorch.devtools import Inspector

        inspector = Inspector(etdump_path=str(etdump))
    per_instr: dict[int, list] = defaultdict(list)
    method: list[float] = []
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for ev in block.events:
            if ev.perf_data is None or not ev.perf_data.raw:
                continue
            if ev.name == "Method::execute":
                method = list(ev.perf_data.raw)
            elif ev.name != "OPERATOR_CALL":
                per_instr[ev._instruction_id].append((ev.name, list(ev.perf_data.raw), bool(ev.is_delegated_op)))
    return per_instr, method


def _p50(raw: list[float]) -> float:
    """Per run: the samples of one run summed (an operator may run more than once a run), then the median."""
    from ..profile.stats import percentile

    return percentile(sorted(raw), 50) if raw else 0.0


def explain(
    package: str | Path,
    *,
    runs: int = 50,
    threads: int | None = None,
    timeout: float = 300.0,
    progress: Any = None,
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


def explain_etdump(package: str | Path, etdump: Path, prof: Any) -> Explanation:
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
    per_instr, method = _events(etdump)
    instructions = (doc or {}).get("instructions") or {}
    reasons = (doc or {}).get("portable_reasons") or manifest.program.delegation.portable_reasons
    agg: dict[str, dict] = {}
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
        row = agg.setdefault(
            key,
            {
                "cls": cls,
                "source": source,
                "ms": 0.0,
                "where": [],
                "prec": [],
                "fused": [],
                "ops": [],
                "order": len(agg),
            },
        )
        row["ms"] += ms
        if operator:
            row["ops"].append(operator)
        row["cls"] = row["cls"] or cls
        row["source"] = row["source"] or source
        if where not in row["where"]:
            row["where"].append(where)
        if prec and prec not in row["prec"]:
            row["prec"].append(prec)
        row["fused"] += [f for f in fused if f not in row["fused"]]

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
                _p50(raw),
                f"portable: {op}" + (f" — {why}" if why else ""),
                "/".join(meta.get("dtypes", [])),
                [],
            )
            continue
        inner = [e for e in events if e[2]]
        xnodes = meta.get("xnodes", [])
        match = align([e[0] for e in inner], xnodes) if xnodes else [None] * len(inner)
        for (name, raw, _), j in zip(inner, match):
            label, ms = "XNNPACK: " + re.sub(r" #\d+$", "", name), _p50(raw)
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
        unattributed += max(0.0, _p50(call[1]) - sum(_p50(e[1]) for e in inner))  # the delegate call's own overhead
    total = _p50(method) or sum(r["ms"] for r in agg.values()) or 1.0
    fidelity_rows = {r["module"]: r for r in (((doc or {}).get("modules") or {}).get("rows") or [])}
    modules_doc = (doc or {}).get("modules")
    rows = []
    for name, r in agg.items():
        fid = fidelity_rows.get(name, {})
        note = "folded into the layer before it (PT2E)" if fid.get("folded") else None
        rows.append(
            ModuleRow(
                module=name,
                cls=r["cls"],
                source=r["source"],
                order=r["order"],
                p50_ms=round(r["ms"], 6),
                share=round(r["ms"] / total, 4),
                where="; ".join(r["where"]),
                precision="/".join(r["prec"]),
                sqnr_db=fid.get("sqnr_db"),
                local_sqnr_db=fid.get("local_sqnr_db"),
                impact_sqnr_db=fid.get("impact_sqnr_db"),
                leaf=fid.get("leaf", True),
                sqnr_note=note,
                fused=r["fused"],
                operators=r["ops"],
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


def summary(ex: Explanation, n: int = 3) -> dict:
    """The slowest and the least faithful modules, a line each (what ``bench report`` shows per item)."""

    def where(r: ModuleRow) -> str:
        return f" at {r.source.split()[0]}" if r.source else ""

    return {
        "slowest": [f"{r.module} ({r.cls or '?'}) {r.share:.1%}{where(r)}" for r in ex.slowest(n)],
        "least_faithful": [fidelity_line(r) for r in ex.least_faithful(n)],
        "note": "; ".join(ex.notes),
    }


def sort_rows(ex: Explanation, by: str) -> list[ModuleRow]:
    if by == "time":
        return sorted(ex.rows, key=lambda r: -r.p50_ms)
    if by == "sqnr":  # the layers whose own quantization loses the most first
        return sorted(
            ex.rows, key=lambda r: (r.faithfulness is None, r.faithfulness if r.faithfulness is not None else 0.0)
        )
    return sorted(ex.rows, key=lambda r: r.order)
