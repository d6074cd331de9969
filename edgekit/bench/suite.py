"""Benchmark suites: models × targets × thread counts, read from a TOML file.

```toml
schema_version = 1
name = "default"

[run]                      # profiling settings for every item (optional; defaults shown)
runs = 100
warmup = 20
warmup_seconds = 0.2
threads = [1]
engine = "auto"            # auto | native | python
timeout = 300.0
prompt_len = 128           # text-generation targets (xnnpack-llm-*): prompt tokens, decode steps, rounds
gen_len = 128
generation_rounds = 3

[[model]]
name = "digits_cnn"                      # unique; how results are keyed
spec = "models.py:digits_cnn"            # a model spec; file paths are relative to the suite file
inputs = ["1x1x8x8"]                     # optional: input specs (else the factory's example inputs)
targets = ["xnnpack-fp32", "xnnpack-int8"]
threads = [1, 2]                         # optional: overrides [run].threads
calibration = "models.py:digits_calib"   # optional: a data file, or a module:function returning {"x": ..., "y": ...}
eval = "models.py:digits_test"           # optional: labelled data -> accuracy
```
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BenchError
from ..models import InputSpec, parse_input_spec
from ..runner.protocol import SELECTABLE_ENGINES

if TYPE_CHECKING:
    from ..builds import ModelEntry

SCHEMA_VERSION = 1
_TOP_KEYS = ("schema_version", "name", "description", "run", "model")
_RUN_KEYS = (
    "runs",
    "warmup",
    "warmup_seconds",
    "threads",
    "engine",
    "timeout",
    "max_seconds",
    "prompt_len",
    "gen_len",
    "generation_rounds",
)
_MODEL_KEYS = ("name", "spec", "inputs", "targets", "threads", "calibration", "eval", "description")


@dataclass(frozen=True)
class RunSettings:
    runs: int = 100
    warmup: int = 20
    warmup_seconds: float = 0.2
    threads: tuple[int, ...] = (1,)
    engine: str = "auto"
    timeout: float = 300.0
    max_seconds: float = 60.0
    prompt_len: int = 128  # text-generation items: prompt tokens prefilled in one call
    gen_len: int = 128  # text-generation items: greedy decode steps after it
    generation_rounds: int = 3  # text-generation items: rounds of prefill + decode

    def to_dict(self) -> dict[str, int | float | str | list[int]]:
        return {
            "prompt_len": self.prompt_len,
            "gen_len": self.gen_len,
            "generation_rounds": self.generation_rounds,
            "runs": self.runs,
            "warmup": self.warmup,
            "warmup_seconds": self.warmup_seconds,
            "threads": list(self.threads),
            "engine": self.engine,
            "timeout": self.timeout,
            "max_seconds": self.max_seconds,
        }


@dataclass(frozen=True)
class SuiteModel:
    name: str
    spec: str
    targets: tuple[str, ...]
    inputs: tuple[InputSpec, ...] = ()
    threads: tuple[int, ...] | None = None
    calibration: str | None = None
    eval: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, str | list[str] | list[int] | None]:
        return {
            "name": self.name,
            "spec": self.spec,
            "targets": list(self.targets),
            "inputs": [str(i) for i in self.inputs],
            "threads": None if self.threads is None else list(self.threads),
            "calibration": self.calibration,
            "eval": self.eval,
        }

    def entry(self) -> ModelEntry:
        """What a build of this model depends on (:class:`edgekit.builds.ModelEntry`): not its targets or threads."""
        from ..builds import ModelEntry

        return ModelEntry(self.spec, self.inputs, self.calibration, self.eval, self.name)


@dataclass(frozen=True)
class Suite:
    """A parsed suite; ``items()`` yields every (model, target, threads) to measure."""

    name: str
    path: Path
    run: RunSettings
    models: tuple[SuiteModel, ...]
    digest: str = ""
    description: str = ""

    def items(self) -> list[tuple[SuiteModel, str, int]]:
        return [(m, t, th) for m in self.models for t in m.targets for th in (m.threads or self.run.threads)]

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.digest,
            "run": self.run.to_dict(),
            "models": [m.to_dict() for m in self.models],
        }


def _line_of(text: str, key: str, after: int = 0) -> int | None:
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=", re.M)
    for m in pat.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if line > after:
            return line
    return None


def _model_lines(text: str) -> list[int]:
    return [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"^\s*\[\[model\]\]", text, re.M)]


def _err(path: Path, line: int | None, msg: str, hint: str | None = None) -> BenchError:
    where = f"{path}:{line}" if line else str(path)
    return BenchError(f"{where}: {msg}", hint)


def _threads(value: object, path: Path, line: int | None) -> tuple[int, ...]:
    vals = value if isinstance(value, list) else [value]
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise _err(
            path, line, f"threads must be a positive integer or a list of them, got {value!r}", "e.g. threads = [1, 2]"
        )
    return tuple(vals)


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file.

    Raises:
        BenchError: missing file, invalid TOML, unknown keys (with their line), missing models or fields,
            unknown targets, malformed input specs.
    """
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"suite file {p} does not exist", "see benchmarks/suite.toml for the format")
    text = p.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{p}: invalid TOML: {exc}", "fix the syntax at that line") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise _err(
                p,
                _line_of(text, key) or _line_of(text, f"[{key}"),
                f"unknown key {key!r}",
                "allowed top-level keys: " + ", ".join(_TOP_KEYS),
            )
    if data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise _err(
            p,
            _line_of(text, "schema_version"),
            f"schema_version {data['schema_version']!r} is not supported",
            f"this edgekit reads schema_version = {SCHEMA_VERSION}",
        )
    run_table = data.get("run", {})
    run_line = next((i + 1 for i, ln in enumerate(text.splitlines()) if ln.strip() == "[run]"), 0)
    for key in run_table:
        if key not in _RUN_KEYS:
            raise _err(
                p, _line_of(text, key, run_line), f"unknown key {key!r} in [run]", "allowed: " + ", ".join(_RUN_KEYS)
            )
    try:
        run = RunSettings(
            runs=int(run_table.get("runs", 100)),
            warmup=int(run_table.get("warmup", 20)),
            warmup_seconds=float(run_table.get("warmup_seconds", 0.2)),
            threads=_threads(run_table.get("threads", [1]), p, _line_of(text, "threads", run_line)),
            engine=str(run_table.get("engine", "auto")),
            timeout=float(run_table.get("timeout", 300.0)),
            max_seconds=float(run_table.get("max_seconds", 60.0)),
            prompt_len=int(run_table.get("prompt_len", 128)),
            gen_len=int(run_table.get("gen_len", 128)),
            generation_rounds=int(run_table.get("generation_rounds", 3)),
        )
    except (TypeError, ValueError) as exc:
        raise _err(p, run_line, f"[run] has a value of the wrong type: {exc}") from None
    if run.engine not in SELECTABLE_ENGINES:
        raise _err(
            p,
            _line_of(text, "engine", run_line),
            f"engine {run.engine!r} is not valid",
            "valid: " + ", ".join(SELECTABLE_ENGINES),
        )
    if run.runs < 1 or run.warmup < 0:
        raise _err(p, run_line, "runs must be >= 1 and warmup >= 0")
    if run.prompt_len < 1 or run.gen_len < 2 or run.generation_rounds < 1:
        raise _err(p, run_line, "prompt_len must be >= 1, gen_len >= 2 and generation_rounds >= 1")
    for key in ("warmup_seconds", "timeout", "max_seconds"):
        value = getattr(run, key)
        if not math.isfinite(value) or value < 0 or (key == "timeout" and value == 0):
            raise _err(
                p,
                _line_of(text, key, run_line),
                f"[run] {key} must be a finite number {'> 0' if key == 'timeout' else '>= 0'}, got {value}",
            )

    from ..targets import builtin_target_names, load_target

    models_raw = data.get("model", [])
    if not isinstance(models_raw, list) or not models_raw:
        raise _err(
            p, None, "the suite has no [[model]] entries", "add at least one [[model]] with name, spec and targets"
        )
    lines = _model_lines(text)
    models = []
    seen = set()
    for i, raw in enumerate(models_raw):
        line = lines[i] if i < len(lines) else None
        for key in raw:
            if key not in _MODEL_KEYS:
                raise _err(
                    p,
                    _line_of(text, key, line or 0),
                    f"unknown key {key!r} in [[model]] #{i + 1}",
                    "allowed: " + ", ".join(_MODEL_KEYS),
                )
        for key in ("name", "spec", "targets"):
            if key not in raw:
                raise _err(p, line, f"[[model]] #{i + 1} has no {key!r}", "each model needs name, spec and targets")
        name = str(raw["name"])
        if name in seen:
            raise _err(p, line, f"model name {name!r} appears twice", "give every [[model]] a unique name")
        seen.add(name)
        targets = raw["targets"] if isinstance(raw["targets"], list) else [raw["targets"]]
        for t in targets:
            try:
                load_target(_relative(p, t) if str(t).endswith(".toml") else t)
            except Exception as exc:
                raise _err(
                    p,
                    _line_of(text, "targets", line or 0),
                    f"model {name!r}: {exc}",
                    "valid targets: " + ", ".join(builtin_target_names()),
                ) from None
        try:
            inputs = tuple(parse_input_spec(s) for s in raw.get("inputs", []))
        except Exception as exc:
            raise _err(p, _line_of(text, "inputs", line or 0), f"model {name!r}: {exc}") from None
        models.append(
            SuiteModel(
                name=name,
                spec=_relative(p, str(raw["spec"])),
                targets=tuple(_relative(p, t) if str(t).endswith(".toml") else str(t) for t in targets),
                inputs=inputs,
                threads=_threads(raw["threads"], p, _line_of(text, "threads", line or 0)) if "threads" in raw else None,
                calibration=_relative(p, raw["calibration"]) if raw.get("calibration") else None,
                eval=_relative(p, raw["eval"]) if raw.get("eval") else None,
                description=str(raw.get("description", "")),
            )
        )
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Suite(
        str(data.get("name", p.stem)), p.resolve(), run, tuple(models), digest, str(data.get("description", ""))
    )


def _relative(suite_path: Path, spec: str) -> str:
    """Resolve file paths in specs relative to the suite file (``models.py:fn``, ``data/calib.npz``)."""
    left, sep, right = str(spec).rpartition(":") if ":" in str(spec) else (str(spec), "", "")
    if not sep:
        left = str(spec)
    candidate = suite_path.parent / left
    looks_like_file = left.endswith((".py", ".pt2", ".npz", ".npy", ".pt", ".toml")) or "/" in left
    if looks_like_file and not Path(left).is_absolute() and candidate.exists():
        left = str(candidate.resolve())
    return f"{left}{sep}{right}" if sep else left
