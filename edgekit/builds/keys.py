"""Content keys: what a build, and a measurement of it, depend on, hashed. Two builds with the same key make the same
program, so the cache hands back the first one; anything that would change the program changes the key."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol

from ..program import sha256_file

if TYPE_CHECKING:
    from ..machine import MachineFacts
    from ..targets import Target


class KeyedModel(Protocol):
    """What a build key reads of a model (:class:`edgekit.builds.ModelEntry`)."""

    spec: str
    calibration: str | None
    eval: str | None

    def to_dict(self) -> Mapping[str, object]: ...


#: the software a build depends on; a Dask worker whose stack differs is refused (its programs would differ)
STACK_KEYS = ("torch", "executorch", "edgekit", "edgekit_source", "python", "arch")


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes (read in blocks: a GGUF or a weights file may be gigabytes), or ``missing``.
    A large file (weights) is read once per process while its size and mtime stay the same: a suite keys every
    target of a model from it."""
    if not path.is_file():
        return "missing"
    st = path.stat()
    if st.st_size < 16 << 20:
        return sha256_file(path)
    return _digest_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def source_digest(spec: str | None) -> str:
    """Hash what a spec depends on: its file (a .py, .pt2 or data file), its module's source file, a GGUF file, or
    every file of an ``hf:`` folder (config, weights, tokenizer): new weights at the same path are a new build."""
    if not spec:
        return "none"
    if spec.startswith("gguf:"):
        return file_digest(Path(spec[5:]).expanduser())
    if spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
        if not folder.is_dir():
            return "missing"
        h = hashlib.sha256()
        for f in sorted(x for x in folder.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(folder)).encode())
            h.update(file_digest(f).encode())
        return h.hexdigest()
    left = spec.rpartition(":")[0] if ":" in spec and not Path(spec).exists() else spec
    p = Path(left)
    if p.exists():
        return file_digest(p)
    try:
        found = importlib.util.find_spec(left)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.origin and Path(found.origin).is_file():
        return file_digest(Path(found.origin))
    return "unresolved:" + left


def edgekit_source_digest() -> str:
    """Hash of edgekit's own code and built-in targets: a change to the pipeline must not re-use old builds."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(
        [*root.rglob("*.py"), *root.rglob("*.cpp"), *root.rglob("*.h"), *(root.parent / "targets").glob("*.toml")]
    ):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stack_facts() -> dict[str, str | None]:
    """The software a build depends on, as this process sees it (runs on Dask workers too)."""
    from ..machine import package_version

    return {
        "torch": package_version("torch"),
        "executorch": package_version("executorch"),
        "edgekit": package_version("edgekit"),
        "edgekit_source": edgekit_source_digest(),
        "python": platform.python_version(),
        "arch": platform.machine(),
    }


def versions(facts: MachineFacts) -> dict[str, str | None]:
    """The versions a build key holds: this machine's stack (``machine_facts``) and edgekit's own source."""
    return {
        **{k: facts[k] for k in ("torch", "executorch", "edgekit", "python")},
        "edgekit_source": edgekit_source_digest(),
    }


def build_key(model: KeyedModel, target: Target, versions: Mapping[str, str | None], extra: str = "") -> str:
    """Content hash of everything a build depends on: the model entry (a bench suite's ``SuiteModel``), the target, the
    sources and data the entry names, the versions, and ``extra`` (e.g. the digest of fine-tuning data)."""
    doc: dict[str, object] = {
        "model": model.to_dict(),
        "target": target.to_dict(),
        "versions": versions,
        "sources": {
            k: source_digest(v)
            for k, v in (("spec", model.spec), ("calibration", model.calibration), ("eval", model.eval))
        },
    }
    if extra:
        doc["extra"] = extra
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def measurement_key(build: str, settings: Mapping[str, object], machine: str) -> str:
    """The key of a measurement of build ``build`` with ``settings`` (threads, runs, ...) on machine ``machine``."""
    doc = {"build": build, **settings, "machine": machine}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]
