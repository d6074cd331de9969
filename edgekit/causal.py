"""Decoder-only language models for generation programs: ``hf:DIR`` (a local ``save_pretrained`` folder) and
``gguf:FILE`` (the weights a user runs in llama.cpp).

A GGUF file is dequantized to float32 by transformers (its ``gguf_file=`` loader; the ``gguf`` and ``accelerate``
packages, the ``gguf`` extra) and written once as a Hugging Face folder under ``$EDGEKIT_CACHE/gguf/<sha256>``
(atomically: a temp folder renamed into place), so later builds of the same file load that folder. The GGUF's
own header (architecture, quantization type) is read with the ``gguf`` package; the file is never executed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import ModelLoadError, UsageError
from .fileops import exclusive, temp_name
from .paths import user_cache
from .program import sha256_file
from .stack_check import check_torchvision, torchvision_failure

if TYPE_CHECKING:
    import types

    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

#: HF ``model_type`` → the attention layout :mod:`edgekit.pipeline.decoder` knows
FAMILIES = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "phi3": "phi3",
    "gpt2": "gpt2",
}


def supported_families() -> str:
    return ", ".join(sorted(FAMILIES))


def is_causal_lm(spec: str) -> bool:
    """``gguf:FILE``, or ``hf:DIR`` whose config.json names a decoder-only causal LM (reads JSON only, no torch)."""
    import json

    if spec.startswith("gguf:"):
        return True
    if not spec.startswith("hf:"):
        return False
    try:
        config = json.loads((Path(spec[3:]).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = (config.get("architectures") or []) if isinstance(config, dict) else []
    return any(isinstance(a, str) and (a.endswith("ForCausalLM") or a == "GPT2LMHeadModel") for a in archs)


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF file's header says: its architecture, its quantization type and its tensors' types."""

    architecture: str | None  # general.architecture
    file_type: str | None  # general.file_type by name (Q4_0, Q8_0 …); None when the file does not say
    tensor_types: list[str]
    tensors: int


@dataclass(frozen=True)
class GgufSource:
    """The GGUF file a decoder came from: the manifest's ``generation.source`` (:meth:`to_dict`)."""

    file: str  # its name
    sha256: str
    size_bytes: int
    header: GgufHeader

    def to_dict(self) -> dict[str, str | int | list[str] | None]:
        h = self.header
        return {
            "file": self.file,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "architecture": h.architecture,
            "file_type": h.file_type,
            "tensor_types": list(h.tensor_types),
            "tensors": h.tensors,
        }


@dataclass
class CausalLM:
    """A loaded decoder: the transformers model (eval, fp32), its tokenizer, and where it came from."""

    spec: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    folder: Path  # the Hugging Face folder it was loaded from (for a GGUF: the converted one in the cache)
    source: GgufSource | None = None  # gguf: the file, its sha256, quantization type and architecture


def gguf_header(path: Path) -> GgufHeader:
    """Architecture and quantization type from a GGUF file's header (``general.architecture``/``file_type``).

    Raises:
        ModelLoadError: not a GGUF file, or a truncated or corrupt one.
    """
    try:
        import gguf
    except ImportError:
        raise ModelLoadError("gguf: models need the gguf package", "pip install 'edgekit[gguf]'") from None
    try:
        reader = gguf.GGUFReader(str(path))

        def value(key: str) -> str | int | None:  # the two keys read: a string and an integer
            f = reader.fields.get(key)
            return None if f is None else f.contents()

        arch = value("general.architecture")
        ftype = value("general.file_type")
        types = sorted({t.tensor_type.name for t in reader.tensors})
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on damaged files
        raise ModelLoadError(
            f"{path} is not a readable GGUF file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
            "pass a complete .gguf file (a download that finished; llama.cpp's convert or quantize output)",
        ) from None
    try:
        ftype_name = gguf.LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_") if ftype is not None else None
    except ValueError:
        ftype_name = str(ftype)
    return GgufHeader(None if arch is None else str(arch), ftype_name, types, len(reader.tensors))


def gguf_to_hf(path: Path, progress: Callable[[str], None] | None = None) -> tuple[Path, GgufSource]:
    """The Hugging Face folder for a GGUF file (converted once, cached by the file's sha256) and the file's facts.

    Raises:
        ModelLoadError: missing, unreadable or unsupported file, or the conversion failed.
    """
    if not path.is_file():
        raise ModelLoadError(f"gguf: file {path} does not exist", "pass the path of a .gguf file")
    header = gguf_header(path)
    sha = sha256_file(path)
    facts = GgufSource(path.name, sha, path.stat().st_size, header)
    root = user_cache() / "gguf"
    folder = root / sha[:32]
    if (folder / "config.json").is_file():
        return folder, facts
    try:
        import transformers
    except ImportError:
        raise ModelLoadError("gguf: models need transformers", "pip install 'edgekit[gguf]'") from None
    check_torchvision()
    transformers.utils.logging.disable_progress_bar()
    with exclusive(root / f".{folder.name}.lock"):  # two builds of one file at once (tune's pool): one converts
        if not (folder / "config.json").is_file():
            _convert_gguf(path, header, folder, progress, transformers)
    return folder, facts


def _convert_gguf(
    path: Path,
    header: GgufHeader,
    folder: Path,
    progress: Callable[[str], None] | None,
    transformers: types.ModuleType,
) -> None:
    tmp = folder.parent / temp_name(folder.name)
    try:
        if progress:
            progress(f"dequantizing {path.name} ({header.file_type}) to float32 with transformers")
        tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        import torch

        model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        model.hf_quantizer = None  # the weights are dequantized: what is saved is a plain float32 model
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, folder)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelLoadError(
            f"cannot convert {path.name} (architecture {header.architecture}) to a float32 model: "
            f"{str(exc).splitlines()[0][:200]}",
            "transformers reads GGUF files of the llama, mistral, qwen2, phi3 and gpt2 families",
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decoder_config(
    spec: str, progress: Callable[[str], None] | None = None
) -> tuple[PretrainedConfig, Path, GgufSource | None]:
    """``hf:DIR`` or ``gguf:FILE`` → its transformers config (a supported decoder's), its folder and, for a GGUF,
    the file's facts. Reads config.json only (a GGUF is converted once, then cached); no weights are loaded.

    Raises:
        ModelLoadError: not found, not a causal LM, an unsupported architecture, or transformers missing.
        UsageError: a spec that is neither ``hf:`` nor ``gguf:``.
    """
    source: GgufSource | None = None
    if spec.startswith("gguf:"):
        folder, source = gguf_to_hf(Path(spec[5:]).expanduser(), progress)
    elif spec.startswith("hf:"):
        folder = Path(spec[3:]).expanduser()
    else:
        raise UsageError(
            f"--task text-generation needs a decoder language model: hf:DIR or gguf:FILE, not {spec!r}",
            "pass hf:path/to/save_pretrained/folder or gguf:model.gguf",
        )
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} is not a Hugging Face model folder (no config.json)", "pass the folder save_pretrained wrote"
        )
    try:
        import transformers
    except ImportError:
        raise ModelLoadError("hf: models need the transformers package", "pip install 'edgekit[hf]'") from None
    check_torchvision()
    transformers.utils.logging.disable_progress_bar()  # the build shows its own stages
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ImportError, RuntimeError) as exc:  # a broken torchvision beside torch: named, else as it was
        named = torchvision_failure(exc)
        if named is None:
            raise
        raise named from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot read {folder}/config.json: {str(exc).splitlines()[0][:200]}") from None
    archs = config.architectures or []
    if config.model_type not in FAMILIES or not any(a.endswith("ForCausalLM") or a == "GPT2LMHeadModel" for a in archs):
        what = f"{config.model_type} ({', '.join(archs) or 'no architecture'})"
        raise ModelLoadError(
            f"{folder} holds a {what}: --task text-generation builds decoder-only causal language models of the "
            f"{supported_families()} families",
            "an encoder or a classifier builds without --task text-generation (hf: wraps it as an encoder)",
        )
    return config, folder, source


def layer_widths(config: PretrainedConfig) -> set[int]:
    """The input widths of a decoder's linear layers and its embedding width (what an int4 group must divide)."""
    names = ("hidden_size", "intermediate_size", "n_embd", "n_inner")
    widths = {getattr(config, n, None) for n in names}
    if getattr(config, "model_type", "") == "gpt2" and getattr(config, "n_embd", None):
        widths.add(4 * config.n_embd)  # GPT-2's MLP is 4 × wide unless n_inner says otherwise
    head_dim, heads = getattr(config, "head_dim", None), getattr(config, "num_attention_heads", None)
    if isinstance(head_dim, int) and isinstance(heads, int):
        widths.add(head_dim * heads)  # the output projection's input (Qwen3: not the hidden size)
    return {int(w) for w in widths if isinstance(w, int) and w > 0}


def load_causal_lm(spec: str, progress: Callable[[str], None] | None = None) -> CausalLM:
    """``hf:DIR`` or ``gguf:FILE`` → the decoder in float32 with its tokenizer.

    Raises:
        ModelLoadError: not found, not a causal LM, an unsupported architecture, or transformers missing.
        UsageError: a spec that is neither ``hf:`` nor ``gguf:``.
    """
    _, folder, source = decoder_config(spec, progress)
    import transformers

    try:
        import torch

        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, attn_implementation="eager"
        ).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (ImportError, RuntimeError) as exc:  # a broken torchvision beside torch: named, else as it was
        named = torchvision_failure(exc)
        if named is None:
            raise
        raise named from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot load the causal language model in {folder}: {str(exc).splitlines()[0][:200]}",
            "check the folder holds the model and its tokenizer (save_pretrained for both)",
        ) from None
    return CausalLM(spec, model, tokenizer, folder, source)
