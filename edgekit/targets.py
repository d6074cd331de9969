"""Targets: what a build aims at (backend, quantization, pruning), how it is profiled, and its budgets.

A target is a frozen dataclass read from a TOML file: a built-in one in ``targets/`` by name, or a path.
Every field is validated in ``__post_init__``; unknown keys and values raise :class:`ConfigError` naming
the file, the key and the allowed values. ``Target.to_toml()`` writes a file that loads back equal. The tables'
classes and the enums their keys take are :mod:`edgekit.target_config` (importable from here as before).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import family
from .errors import ConfigError, TargetNotFoundError
from .target_config import (  # noqa: F401  (the tables and enums are part of this module's names, as before)
    GENERATION,
    TASKS,
    Backend,
    BudgetConfig,
    EmbeddingQuant,
    Importance,
    PowerConfig,
    ProfileConfig,
    PruneConfig,
    PruneScope,
    QuantizeConfig,
    QuantScheme,
    enum_value,
)

SCHEMA_VERSION = 1


_SECTIONS = {
    "quantize": QuantizeConfig,
    "prune": PruneConfig,
    "profile": ProfileConfig,
    "budget": BudgetConfig,
    "power": PowerConfig,
}


@dataclass(frozen=True)
class Target:
    """A build and profiling target, e.g. ``xnnpack-int8``.

    Example:
        >>> t = load_target("xnnpack-int8")
        >>> t.quantize.scheme.value
        'int8-static-per-channel'
    """

    name: str
    backend: Backend = Backend.XNNPACK
    description: str = ""
    schema_version: int = SCHEMA_VERSION
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    task: str | None = None  # "text-generation": builds a generation program (a decoder with a KV cache)
    source: str = field(default="<python>", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name must be a non-empty string")
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(
                f"schema_version {self.schema_version!r} is not supported; this edgekit reads {SCHEMA_VERSION}"
            )
        object.__setattr__(self, "backend", enum_value(Backend, self.backend, "backend"))
        if self.task not in (None, *TASKS):
            raise ConfigError(f"task = {self.task!r} is not valid; allowed: {', '.join(TASKS)} (or no task)")
        if self.quantize.scheme.for_generation_only and self.task != GENERATION:
            raise ConfigError(
                f"quantize.scheme = '{self.quantize.scheme.value}' is for generation programs: add "
                f"task = '{GENERATION}' to the target"
            )
        fam = family(self.backend)
        if self.quantize.scheme not in fam.schemes:
            runs = "fp32 only" if fam.schemes == {QuantScheme.NONE} else ", ".join(sorted(s.value for s in fam.schemes))
            raise ConfigError(
                f"backend = '{self.backend.value}' runs {runs} here, not quantize.scheme = "
                f"'{self.quantize.scheme.value}'; quantized programs need the xnnpack backend"
            )

    def replace(self, **changes: Any) -> "Target":
        """A copy with top-level fields or ``section__field`` keys changed (``prune__sparsity=0.5``)."""
        sections: dict[str, dict[str, Any]] = {}
        top = {}
        for key, value in changes.items():
            if "__" in key:
                sec, name = key.split("__", 1)
                sections.setdefault(sec, {})[name] = value
            else:
                top[key] = value
        for sec, values in sections.items():
            top[sec] = dataclasses.replace(getattr(self, sec), **values)
        return dataclasses.replace(self, **top)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (enums as strings, tuples as lists; budgets without the unset keys)."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "backend": self.backend.value,
        }
        if self.task is not None:
            out["task"] = self.task
        for sec in _SECTIONS:
            values = {}
            for f in dataclasses.fields(getattr(self, sec)):
                v = getattr(getattr(self, sec), f.name)
                if v is None:
                    continue
                values[f.name] = (
                    v.value
                    if isinstance(v, enum.Enum)
                    else list(v)
                    if isinstance(v, tuple)
                    else dict(v)
                    if isinstance(v, dict)
                    else v
                )
            out[sec] = values
        return out

    def to_toml(self) -> str:
        """TOML text that :func:`load_target` reads back into an equal Target."""
        d = self.to_dict()
        keys = ("schema_version", "name", "description", "backend", "task")
        lines = [f"{k} = {_toml_value(d[k])}" for k in keys if k in d]
        for sec in _SECTIONS:
            lines.append(f"\n[{sec}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in d[sec].items()]
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _check_keys(table: dict, cls: type, where: str, path: str) -> None:
    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            raise ConfigError(
                f"{path}: unknown key {where}{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                "allowed keys: " + ", ".join(allowed),
            )


def target_from_dict(data: dict, source: str = "<dict>") -> Target:
    """Build a validated :class:`Target` from parsed TOML.

    Raises:
        ConfigError: unknown keys or invalid values, prefixed with ``source``.
    """
    _check_keys(data, Target, "", source)
    kwargs = {k: v for k, v in data.items() if k not in _SECTIONS}
    try:
        for sec, cls in _SECTIONS.items():
            table = data.get(sec, {})
            if not isinstance(table, dict):
                raise ConfigError(f"[{sec}] must be a table")
            _check_keys(table, cls, f"[{sec}] ", source)
            for key in ("ignore", "fp32_layers"):
                if isinstance(table.get(key), list):
                    table = {**table, key: tuple(table[key])}
            kwargs[sec] = cls(**table)
        if "name" not in kwargs:
            raise ConfigError("missing key 'name'", 'add name = "my-target"')
        return Target(**kwargs, source=source)
    except ConfigError as exc:
        if exc.message.startswith(source):
            raise
        raise ConfigError(f"{source}: {exc.message}", exc.hint) from None


def builtin_targets_dir() -> Path:
    """The folder of shipped target TOML files."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "targets"
    if repo.is_dir():
        return repo
    from importlib import resources

    return Path(str(resources.files("edgekit.builtin_targets")))


def list_targets() -> list[Target]:
    """All built-in targets, sorted by name."""
    return sorted((load_target(p) for p in builtin_targets_dir().glob("*.toml")), key=lambda t: t.name)


def builtin_target_names() -> list[str]:
    return sorted(p.stem for p in builtin_targets_dir().glob("*.toml"))


def load_target(name_or_path: str | Path | Target) -> Target:
    """Load a built-in target by name (``xnnpack-int8``) or a TOML file by path.

    Raises:
        TargetNotFoundError: neither a built-in name nor an existing file (the valid names are listed).
        ConfigError: the file is not valid TOML or has unknown keys/values.
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    # A path is a .toml name or an existing file; a folder that happens to share a built-in's name is not a target.
    if not (path.suffix == ".toml" or path.is_file()):
        path = builtin_targets_dir() / f"{text}.toml"
        if not path.exists():
            names = builtin_target_names()
            close = difflib.get_close_matches(text, names, n=1)
            raise TargetNotFoundError(
                f"unknown target {text!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                "valid targets: " + ", ".join(names) + "; or pass a path to a .toml file",
            )
    if not path.is_file():
        raise TargetNotFoundError(
            f"target file {path} does not exist", "valid targets: " + ", ".join(builtin_target_names())
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the syntax at that line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return target_from_dict(data, str(path))
