"""``hf:PATH`` model specs: a local Hugging Face model folder (``save_pretrained``), never a download.

The model is wrapped so that export sees tensors in and tensors out: ``forward(input_ids, attention_mask)`` returns

* ``pooled`` (the default for base models): the attention-masked mean of the last hidden state, ``N x hidden``
  (what sentence encoders such as all-MiniLM-L6-v2 use);
* ``last_hidden_state``: ``N x tokens x hidden``;
* ``logits``: a classification head's ``N x classes`` (the default for ``*ForSequenceClassification`` models).

The example inputs are a placeholder sentence padded to ``--input``'s length (default 1 x 32 tokens). A text file
(one sentence per line) is accepted as ``--calibration`` / ``--eval`` data: it is tokenised with the model's own
tokenizer to the exported length. ``transformers`` is an optional extra (``pip install 'edgekit[hf]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .data import Dataset
from .errors import DataError, ModelLoadError, UsageError
from .specs import InputSpec, LoadedModel
from .stack_check import check_torchvision, torchvision_failure

HF_OUTPUTS = ("pooled", "last_hidden_state", "logits")
DEFAULT_TOKENS = 32


def _wrapper(model: PreTrainedModel, output: str) -> torch.nn.Module:
    import torch

    class HfModel(torch.nn.Module):
        """input_ids, attention_mask → one tensor (edgekit's wrapper around a Hugging Face model)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            # The 4-D additive mask is built here, so transformers' own mask construction (index arithmetic that
            # PT2E's prepare turns into float indices) is skipped: same attention, quantizable graph.
            additive = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
            out = self.model(input_ids=input_ids, attention_mask=additive)
            if output == "logits":
                return out.logits
            hidden = out.last_hidden_state
            if output == "last_hidden_state":
                return hidden
            # the masked mean as a batched matmul (XNNPACK runs it; a sum over tokens would stay on portable kernels)
            mask = attention_mask.to(hidden.dtype)
            total = torch.bmm(mask.unsqueeze(1), hidden).squeeze(1)
            return total / mask.sum(1, keepdim=True).clamp(min=1e-9)

    return HfModel().eval()


# Below _wrapper on purpose: the explain.json of an hf: package records source lines of HfModel.forward (the mask and
# the pooling are its own operators), so the lines above it stay where they were and its packages stay the same bytes.
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_hf(spec: str, inputs: Sequence[InputSpec], output: str | None = None) -> LoadedModel:
    """``hf:PATH`` → a LoadedModel (with the tokenizer, and the kind of output for verification).

    Raises:
        ModelLoadError: no such folder, not a model folder, or transformers is not installed.
        UsageError: an unknown ``output`` or more than one ``--input``.
    """
    folder = Path(spec[3:]).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(
            f"hf: model folder {folder} does not exist",
            "pass a folder written by save_pretrained (edgekit never downloads models)",
        )
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} is not a Hugging Face model folder (no config.json)",
            "pass the folder that save_pretrained wrote",
        )
    try:
        import transformers
    except ImportError:
        raise ModelLoadError("hf: models need the transformers package", "pip install 'edgekit[hf]'") from None
    check_torchvision()
    if output is not None and output not in HF_OUTPUTS:
        raise UsageError(f"--hf-output {output!r} is not one of {', '.join(HF_OUTPUTS)}")
    if len(inputs) > 1:
        raise UsageError("an hf: model takes one --input: its token shape, e.g. 1x128", "drop the other --input")
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        auto = transformers.AutoModelForSequenceClassification if classifier else transformers.AutoModel
        model = auto.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (ImportError, RuntimeError) as exc:  # a broken torchvision beside torch: named, else as it was
        named = torchvision_failure(exc)
        if named is None:
            raise
        raise named from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot load the Hugging Face model in {folder}: {str(exc).splitlines()[0][:200]}",
            "check the folder holds a model and its tokenizer (save_pretrained for both)",
        ) from None
    output = output or ("logits" if classifier else "pooled")
    if output == "logits" and not classifier:
        raise UsageError(
            f"{folder} has no classification head: --hf-output logits does not apply", "use pooled or last_hidden_state"
        )
    if inputs and len(inputs[0].shape) != 2:
        raise UsageError(f"--input {inputs[0]} for an hf: model must be BATCHxTOKENS", "e.g. --input 1x128")
    batch, tokens = tuple(inputs[0].shape) if inputs else (1, DEFAULT_TOKENS)
    enc = tokenize(tokenizer, ["an example sentence"] * batch, tokens)
    return LoadedModel(
        spec,
        _wrapper(model, output),
        (enc[0].contiguous(), enc[1].contiguous()),
        tokenizer=TextTokenizer(tokenizer),
        task="classify" if output == "logits" else "embed",
    )


def tokenize(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences → (input_ids, attention_mask), int64, padded or truncated to ``tokens``."""
    enc = tokenizer(list(sentences), padding="max_length", truncation=True, max_length=tokens, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


class TextTokenizer:
    """An hf: model's tokenizer as data loading uses it (``LoadedModel.tokenizer``): text files and random sentences
    to token ids and masks at the exported length. ``hf`` is the Hugging Face tokenizer itself."""

    def __init__(self, hf: PreTrainedTokenizerBase):
        self.hf = hf

    def text_dataset(self, path: Path, tokens: int) -> Dataset:
        return text_dataset(path, self.hf, tokens)

    def random_sentences(self, examples: Sequence[torch.Tensor], n: int, *, seed: int, source: str) -> Dataset:
        return random_sentences(self.hf, examples, n, seed=seed, source=source)


def text_dataset(path: Path, tokenizer: PreTrainedTokenizerBase, tokens: int) -> Dataset:
    """A text file of sentences (one a line; blank lines skipped) as a Dataset of token ids and masks.

    Raises:
        DataError: the file is empty or unreadable.
    """
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not lines:
        raise DataError(f"text file {path} holds no sentences", "put one sentence per line")
    return _sentences(tokenizer, lines, tokens, str(path))


def _sentences(tokenizer: PreTrainedTokenizerBase, lines: list[str], tokens: int, source: str) -> Dataset:
    ids, mask = tokenize(tokenizer, lines, tokens)
    return Dataset(
        (ids, mask),
        None,
        f"{source} ({len(lines)} sentences, {tokens} tokens)",
        lambda length: _sentences(tokenizer, lines, length, source),
    )


def random_sentences(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[torch.Tensor], n: int, *, seed: int, source: str
) -> Dataset:
    """``n`` random "sentences": token ids drawn from the vocabulary (special tokens aside) between the
    tokenizer's own start and end tokens, of random lengths, padded to the examples' length with a 0/1 mask.
    Random integers as ids and mask would be out of vocabulary and a mask of 2..9 overflows the additive mask."""
    import random

    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(len(tokenizer)) if i not in special] or [0]
    tokens = int(examples[0].shape[1])
    words = [
        " ".join(
            tokenizer.convert_ids_to_tokens([rng.choice(vocab) for _ in range(rng.randint(1, max(1, tokens - 2)))])
        )
        for _ in range(n)
    ]
    ds = _sentences(tokenizer, words, tokens, source)
    return Dataset(ds.inputs, None, f"{source}: {n} random sentences of the tokenizer's vocabulary", ds.retokenize)
