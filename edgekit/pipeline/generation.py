"""``build(..., task="text-generation")``: a decoder language model → a generation program with a static KV cache.

load (``hf:DIR`` / ``gguf:FILE``) → the user's model's references (teacher-forced logits over the eval text, greedy
tokens from its first prompt) → wrap (:mod:`edgekit.pipeline.decoder`: text-runner convention, in-place cache) →
quantize (torchao ``quantize_`` on the module: int8/int4 embedding tables first, then every linear as 8da8w or 8da4w;
linears already on a 4-bit grid, a GGUF's Q4_1/Q4_0/Q4_K, keep it: :mod:`edgekit.pipeline.grid`)
→ export (T dynamic from 1 to ``max_seq_len``) → lower (XNNPACK, plus the constant methods ExecuTorch's text runner
reads) → verify (the program in the ExecuTorch runtime against the references: perplexity, next-token agreement,
logits SQNR, greedy tokens, and the answers check's tokens as every runtime will feed them) → package (``model.pte``,
the tokenizer files, ``reference.npz`` with the user's model's logits for the answers check
(:mod:`edgekit.token_fidelity`), ``manifest.json`` with a ``generation`` section).

Weight-only int8/int4 linears are not offered: with executorch 1.5.1 XNNPACK takes them and computes wrong results.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

from .._noise import import_stack
from ..errors import DataError, UsageError, VerifyError
from ..fileops import check_output, staged_output, write_json
from ..machine import software_versions
from ..manifest import GenerationSection, GreedyCheck
from ..targets import GENERATION, Backend, EmbeddingQuant, QuantScheme, Target, load_target
from .stages import Stage, StageEvent, StageRunner, build_scope
from .state import BuildResult

DEFAULT_MAX_SEQ_LEN = 512
DEFAULT_EVAL_TOKENS = 512
GREEDY_PROMPT_TOKENS = 16
GREEDY_NEW_TOKENS = 32
#: what verify reads without ``--eval``: plain English prose written for edgekit (no copyright, no training set)
SAMPLE_TEXT = (
    "The harbour town woke slowly on winter mornings. Fishing boats came back before the light, and the men who "
    "sailed them carried their catch up the stone steps to the market, where the stalls opened at seven. By eight "
    "the bakery had sold most of its bread, and the children were walking to school along the sea wall, counting "
    "the gulls and arguing about which of them was the largest. The schoolmaster, a patient man with a grey beard, "
    "taught arithmetic in the morning and history after lunch. He liked to begin each lesson with a question that "
    "had no easy answer: why do tides rise twice a day, how did people cross the sea before there were maps, what "
    "makes a town decide to build a lighthouse? The children did not always answer, but they listened, and some of "
    "them went home and asked their parents the same questions over dinner. In spring the town changed. Visitors "
    "arrived on the afternoon train with suitcases and cameras, the cafes put tables outside, and the harbour filled "
    "with small boats painted in bright colours. The fishermen complained about the noise, yet they sold more fish "
    "than at any other time of year, and the market stayed open until late in the evening. When autumn came the "
    "visitors left, the tables were carried back inside, and the town returned to its own rhythm, quiet and steady, "
    "measured by the boats, the bread and the bells of the old church on the hill."
)


# ------------------------------------------------------------------------------------------------ build
def build_generation(
    model: str,
    target: str | Path | Target = "xnnpack-llm-8da4w",
    *,
    out: str | Path,
    eval: Any = None,  # noqa: A002 - the CLI's --eval
    max_seq_len: int | None = None,
    eval_tokens: int = DEFAULT_EVAL_TOKENS,
    force: bool = False,
    progress: Callable[[StageEvent], None] | None = None,
) -> BuildResult:
    """Build a generation program (see the module docstring) and its package at ``out``.

    Raises:
        UsageError: a target or option that does not fit a generation build.
        ModelLoadError: not a decoder of a supported family; a corrupt GGUF.
        DataError: an empty or unreadable ``--eval`` text.
        BudgetError: the program misses the target's budget (perplexity increase, size); nothing is written.
    """
    t_start = time.perf_counter()
    tgt = load_target(target)
    _check_target(tgt)
    given = max_seq_len is not None
    max_seq_len = DEFAULT_MAX_SEQ_LEN if max_seq_len is None else max_seq_len
    if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or not 8 <= max_seq_len <= 32768:
        raise UsageError(f"--max-seq-len must be an integer in [8, 32768], got {max_seq_len!r}", "e.g. 512")
    if eval is not None and not Path(eval).is_file():  # before the model loads: a typo should cost no minutes
        raise DataError(f"the eval text {eval} does not exist", "pass a UTF-8 .txt file of held-out text")
    out = Path(out)
    check_output(out, force)
    stages = StageRunner(progress)
    import_stack()
    warnings: list[str] = []
    with build_scope():
        from ..causal import load_causal_lm

        lm = stages.run(Stage.LOAD, lambda: load_causal_lm(model), model)
        limit = model_context_len(lm.model.config)
        if not given and limit and limit < max_seq_len:
            # the default, not a request: the model's own context (or its sliding window, within which full
            # attention is the model's attention) is the limit
            max_seq_len = max(8, limit)
        tokens, data_source = _eval_tokens(eval, lm.tokenizer, eval_tokens)
        _check_shapes(lm.model, tgt, max_seq_len)
        ref = _references(lm.model, tokens, max_seq_len)
        ref["check_tokens"], ref["check_prompt"], ref["check_logits"] = _check_references(tokens, max_seq_len, ref)
        ids = _special_ids(lm)
        decoder, quant = _quantize(lm.model, tgt, max_seq_len, stages)
        exported = stages.run(Stage.EXPORT, lambda: _export(decoder, max_seq_len), f"T = 1..{max_seq_len}")
        methods = {
            "get_max_seq_len": max_seq_len,
            "get_max_context_len": max_seq_len,
            "get_vocab_size": int(lm.model.config.vocab_size),
            "get_n_layers": int(decoder.n_layers),
            "use_kv_cache": True,
            "use_sdpa_with_kv_cache": True,
            "enable_dynamic_shape": True,
            "get_eos_ids": ids["eos_ids"],
            **({"get_bos_id": ids["bos_id"]} if ids["bos_id"] is not None else {}),
        }
        lowered = stages.run(Stage.LOWER, lambda: _lower(exported, tgt, methods, quant), "XNNPACK")
        if quant.get("shared_table"):
            _check_stored_once(lowered, quant["table_rows"])
        fid = stages.run(
            Stage.VERIFY, lambda: _verify(lowered.pte, tokens, ref, max_seq_len, lowered.data), data_source
        )
    greedy_text = [lm.tokenizer.decode(t) for t in (ref["greedy"], fid["greedy"])]
    return stages.run(
        Stage.PACKAGE,
        lambda: _package(
            out,
            force,
            tgt,
            lm,
            lowered,
            exported,
            quant,
            fid,
            ref,
            ids,
            greedy_text,
            data_source,
            max_seq_len,
            warnings,
            stages,
            t_start,
        ),
        str(out),
    )


def _check_target(tgt: Target) -> None:
    q = tgt.quantize
    ok = (QuantScheme.NONE, QuantScheme.INT8_DYNAMIC_INT4_WEIGHT, QuantScheme.INT8_DYNAMIC_INT8_WEIGHT)
    if q.scheme not in ok:
        raise UsageError(
            f"target {tgt.name} quantizes with {q.scheme.value}, which generation programs do not use",
            "use xnnpack-llm-fp32, xnnpack-llm-int8 or xnnpack-llm-8da4w (or a target with scheme none, 8da8w or "
            "8da4w)",
        )
    if tgt.backend is not Backend.XNNPACK:
        raise UsageError(f"target {tgt.name}: generation programs are built for XNNPACK", "use an xnnpack-llm-* target")
    if tgt.prune.active:
        raise UsageError(f"target {tgt.name} prunes: generation builds do not prune", "drop the target's [prune]")
    if q.fp32_layers:
        raise UsageError(
            f"target {tgt.name}: fp32_layers do not apply to generation builds", "drop quantize.fp32_layers"
        )


def _eval_tokens(source: Any, tokenizer: Any, limit: int) -> tuple[list[int], str]:
    """The eval text's token ids (at most ``limit``) and where they came from."""
    if source is None:
        text, what = SAMPLE_TEXT, "built-in sample text (pass --eval FILE.txt for your own)"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the eval text {path}: {exc}", "pass a UTF-8 .txt file") from None
        what = str(path)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        raise DataError(
            f"the eval text {what} holds {len(ids)} token(s): perplexity needs at least 2",
            "pass a .txt file with a few paragraphs of text like your users' prompts",
        )
    return ids[:limit], what + (f" (its first {limit} of {len(ids)} tokens)" if len(ids) > limit else "")


def _check_shapes(model: Any, tgt: Target, max_seq_len: int) -> None:
    from torch import nn

    g = tgt.quantize.group_size
    if tgt.quantize.scheme is QuantScheme.INT8_DYNAMIC_INT4_WEIGHT or tgt.quantize.embeddings is EmbeddingQuant.INT4:
        widths = {m.in_features for m in model.modules() if isinstance(m, nn.Linear)}
        widths |= {m.weight.shape[0] for m in model.modules() if type(m).__name__ == "Conv1D"}  # GPT-2's projections
        bad = sorted(
            {w for w in widths if w % g}
            | {m.embedding_dim for m in model.modules() if isinstance(m, nn.Embedding) and m.embedding_dim % g}
        )
        if bad:
            raise UsageError(
                f"--group-size {g} does not divide the model's layer width(s) {', '.join(map(str, bad))}",
                "pick a group size that divides them (32, 64, 128 …)",
            )
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_seq_len > limit:
        raise UsageError(
            f"--max-seq-len {max_seq_len} is longer than the model's {limit} positions", f"use at most {limit}"
        )
    window = sliding_window(model.config)
    if window and max_seq_len > window:
        raise UsageError(
            f"--max-seq-len {max_seq_len} is longer than the {window}-token sliding window this model attends within, "
            "and the program's attention (llama::custom_sdpa) sees the whole cache: past it, it would not be your "
            "model",
            f"use --max-seq-len {window} or less",
        )


def model_context_len(config: Any) -> int | None:
    """The longest KV cache that is still the model: its positions, or its sliding window if shorter."""
    limits = [getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)]
    limits.append(sliding_window(config))
    limits = [int(n) for n in limits if isinstance(n, int) and n > 0]
    return min(limits) if limits else None


def sliding_window(config: Any) -> int | None:
    """The attention window of a model that uses one in any layer (Mistral; Qwen2/3 with use_sliding_window), else
    None."""
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None:
        return window if "sliding_attention" in types else None
    return window if getattr(config, "use_sliding_window", True) else None


def _special_ids(lm: Any) -> dict:
    tok, cfg = lm.tokenizer, lm.model.config
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else tok.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
    bos = cfg.bos_token_id if cfg.bos_token_id is not None else tok.bos_token_id
    return {"bos_id": None if bos is None else int(bos), "eos_ids": eos_ids}


# ------------------------------------------------------------------------------------------------ references
def _windows(tokens: list[int], max_seq_len: int) -> list[list[int]]:
    return [
        tokens[i : i + max_seq_len] for i in range(0, len(tokens), max_seq_len) if len(tokens[i : i + max_seq_len]) > 1
    ]


def _references(model: Any, tokens: list[int], max_seq_len: int) -> dict:
    """The user's model (fp32, as handed in): teacher-forced logits at every position, and greedy tokens."""
    import torch

    logits = []
    with torch.no_grad():
        for w in _windows(tokens, max_seq_len):
            logits.append(model(torch.tensor([w]), use_cache=False).logits[0, :-1].float())
        prompt = tokens[: min(GREEDY_PROMPT_TOKENS, max_seq_len // 2)]  # a call's tokens: at most max_seq_len
        seq = list(prompt)
        for _ in range(min(GREEDY_NEW_TOKENS, max_seq_len - len(prompt))):
            seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    return {"logits": torch.cat(logits), "greedy": seq[len(prompt) :], "prompt": prompt}


def _check_references(tokens: list[int], max_seq_len: int, ref: dict) -> tuple[list[int], int, Any]:
    """The answers check's tokens (the start of the eval text), its prompt length, and the user's model's logits at
    its steps: rows of the teacher-forced references (the first window starts at token 0 and holds them all)."""
    from ..token_fidelity import check_sequence

    seq, prompt = check_sequence(tokens, max_seq_len)
    return seq, prompt, ref["logits"][prompt - 1 : len(seq) - 1].numpy()


# ------------------------------------------------------------------------------------------------ quantize, export
def _quantize(model: Any, tgt: Target, max_seq_len: int, stages: StageRunner) -> tuple[Any, dict]:
    """The wrapper around ``model`` with its linears and embedding table quantized in place (after the references)."""
    import torch
    from torch import nn

    from .decoder import make_decoder

    q = tgt.quantize
    decoder = make_decoder(model, max_seq_len)
    decoder.n_layers = len(decoder.layers)
    info = {"linears": "fp32", "embeddings": q.embeddings.value}
    if q.scheme is QuantScheme.NONE and q.embeddings is EmbeddingQuant.NONE:
        stages.skip(Stage.QUANTIZE, "target asks for fp32")
        # a tied fp32 table is one parameter for the lookup and the output layer: kept once in model.ptd too, where
        # XNNPACK's copy of the output layer's weights and the embedding's table are the same bytes
        if decoder.lm_head.weight is decoder.embed_tokens.weight:
            info["shared_table"] = True
            info["table_rows"] = decoder.embed_tokens.weight[:4].detach().contiguous().numpy().tobytes()
        return decoder, info

    def run() -> None:
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerAxis, PerGroup

        from .grid import carry_int4_grids

        with torch.no_grad():
            head, table = decoder.lm_head, decoder.embed_tokens
            tied = head.weight is table.weight
            if tied:  # quantize_ replaces weights per module, so each gets its own copy
                head.weight = nn.Parameter(table.weight.detach().clone(), requires_grad=False)
            # a tied table with an int8 output layer and an int8 embedding table: both quantized alike (symmetric per
            # row, min-max), so the bytes are equal and the program keeps them once, outside the .pte
            # (edgekit.pipeline.lower external_weights): on SmolLM2-135M 21 MB less than an int4 table beside the
            # int8 output layer, and the lookups read int8 rows instead of int4 ones
            info["shared_table"] = tied and q.embeddings is EmbeddingQuant.INT8 and q.scheme is not QuantScheme.NONE
            if q.embeddings is not EmbeddingQuant.NONE:
                bits = 8 if q.embeddings is EmbeddingQuant.INT8 else 4
                for m in decoder.modules():
                    if isinstance(m, nn.Embedding):
                        m.padding_idx = None  # a 3-argument embedding does not fuse to ExecuTorch's quantized kernel
                # int4 tables asymmetric (min/max in 15 steps, ExecuTorch's embedding_4bit takes the zero points;
                # fp32 like the scales, as the kernel needs): on SmolLM2-135M against torchao's symmetric default,
                # table 18.2 → 20.6 dB, perplexity +5.51% → +3.04%, greedy 3/32 → 16/32, +3.4 MiB
                # (benchmarks/results/llm_table_mapping.txt). int8 tables stay symmetric per row.
                from torchao.quantization.quant_primitives import MappingType

                quantize_(
                    decoder,
                    IntxWeightOnlyConfig(
                        weight_dtype=getattr(torch, f"int{bits}"),
                        granularity=PerAxis(0) if bits == 8 else PerGroup(q.group_size),
                        mapping_type=MappingType.SYMMETRIC if bits == 8 else MappingType.ASYMMETRIC,
                    ),
                    lambda m, fqn: isinstance(m, nn.Embedding) and fqn != "wpe",
                )
            if q.scheme is not QuantScheme.NONE:
                int4 = q.scheme is QuantScheme.INT8_DYNAMIC_INT4_WEIGHT
                int8 = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
                # the output layer (vocabulary × hidden) decides every token: int8 per channel even in an int4
                # program, as llama.cpp keeps output/token_embd at 6-8 bits in its 4-bit files
                quantize_(decoder, int8, lambda m, fqn: isinstance(m, nn.Linear) and fqn == "lm_head")
                if info["shared_table"]:  # the bytes _check_stored_once looks for after lowering
                    info["table_rows"] = head.weight.qdata[:4].contiguous().numpy().tobytes()
                # linears whose weights already are on a 4-bit grid (a GGUF's Q4_1/Q4_0/Q4_K tensors) keep it exactly
                # (edgekit.pipeline.grid: the file's levels and steps, the group offsets as extra int4 columns), already
                # quantized. On SmolLM2-135M's Q4_1 file: every linear; see llm_recipes.txt
                body = [fqn for fqn, m in decoder.named_modules() if type(m) is nn.Linear and fqn != "lm_head"]
                grids = carry_int4_grids(decoder, q.group_size, {"lm_head"}) if int4 else []
                done = {f"{name}.linear" for name in grids}
                # other int4 scales chosen by HQQ (scale-only, still symmetric: the same XNNPACK kernels): on
                # SmolLM2-135M requantized, held-out perplexity 16.13 → 15.80 against min-max scales (fp32 11.64).
                # Asymmetric int4 would do better still, but XNNPACK's qb4w kernels ignore the zero points: wrong
                # results once lowered.
                int4_config = Int8DynamicActivationIntxWeightConfig(
                    weight_dtype=torch.int4,
                    weight_granularity=PerGroup(q.group_size),
                    intx_choose_qparams_algorithm="hqq_scale_only",
                )
                quantize_(
                    decoder,
                    int4_config if int4 else int8,
                    lambda m, fqn: isinstance(m, nn.Linear) and fqn != "lm_head" and fqn not in done,
                )
                if not int4:
                    info["linears"] = "8da8w"
                else:
                    how = (
                        "HQQ scales"
                        if not grids
                        else f"the weights' own 4-bit grid in {len(grids)} of {len(body)} linears"
                        + (", HQQ scales in the rest" if len(grids) < len(body) else "")
                    )
                    info["linears"] = f"8da4w (group {q.group_size}, {how}), output layer 8da8w"

    detail = f"{q.scheme.value}" + (f", {q.embeddings.value} embedding table" if q.embeddings.value != "none" else "")
    stages.run(Stage.QUANTIZE, run, detail)
    return decoder, info


def _export(decoder: Any, max_seq_len: int) -> Any:
    import torch

    from ..errors import ExportError
    from .grid import forget_inputs

    example = (torch.zeros((1, 4), dtype=torch.long), torch.tensor([0], dtype=torch.long))
    dims = ({1: torch.export.Dim("T", min=1, max=max_seq_len)}, None)

    try:
        with torch.no_grad():
            return torch.export.export(decoder, example, dynamic_shapes=dims, strict=False)
    except Exception as exc:
        raise ExportError(
            f"torch.export of the generation program failed: {str(exc).splitlines()[0][:300]}",
            "the decoder may use an operation export cannot trace; report the model family",
        ) from exc
    finally:
        forget_inputs(decoder)  # the traced tensors the grid linears kept


#: the decoder wrapper's modules that hold the tied table (edgekit.pipeline.decoder)
SHARED_TABLE = ("embed_tokens", "lm_head")


def _lower(exported: Any, tgt: Target, methods: dict, quant: dict) -> Any:
    import warnings

    from .lower import lower_program

    with warnings.catch_warnings():
        # the KV cache's buffers start undefined in the program: expected, as custom_sdpa reads only the positions
        # written so far
        warnings.filterwarnings("ignore", message="Mutation on a buffer")
        return lower_program(
            exported,
            Backend.XNNPACK,
            fuse_embeddings=tgt.quantize.embeddings is not EmbeddingQuant.NONE,
            constant_methods=methods,
            prepare=False,
            check_ir=False,
            external_weights=SHARED_TABLE if quant.get("shared_table") else (),
        )


def _check_stored_once(lowered: Any, rows: bytes) -> None:
    """The tied table's first int8 rows (``rows``) must be in model.ptd exactly once and not in the program: else
    ExecuTorch kept a second copy (a tag that did not reach one of the two sides), and the build says so.

    Raises:
        LowerError: the table is stored twice, or not in the data file.
    """
    from ..errors import LowerError

    inside, outside = lowered.pte.count(rows), (lowered.data or b"").count(rows)
    if inside or outside != 1:
        raise LowerError(
            f"the tied embedding table was not stored once (in the program {inside}×, in model.ptd {outside}×)",
            'set [quantize] embeddings = "int4" in a target file to keep a separate table, and report the model',
        )


# ------------------------------------------------------------------------------------------------ verify
def _verify(pte: bytes, tokens: list[int], ref: dict, max_seq_len: int, data: bytes | None = None) -> dict:
    """The program in the ExecuTorch runtime, token by token through its KV cache, against the references."""
    import torch

    from ..program import InProcessProgram
    from .decoder import load_custom_ops

    load_custom_ops()
    prog = InProcessProgram(pte, data=data)
    got = []
    for w in _windows(tokens, max_seq_len):
        for pos, t in enumerate(w[:-1]):
            got.append(prog.run((torch.tensor([[t]]), torch.tensor([pos])))[0][0].float())
    logits = torch.stack(got)
    expected = ref["logits"]
    targets = torch.tensor([t for w in _windows(tokens, max_seq_len) for t in w[1:]])
    nll = lambda lg: float(torch.nn.functional.cross_entropy(lg.double(), targets))  # noqa: E731
    prompt = ref["prompt"]
    out = prog.run((torch.tensor([prompt]), torch.tensor([0])))[0][0]
    seq = [int(out.argmax())]
    for i in range(1, len(ref["greedy"])):
        out = prog.run((torch.tensor([[seq[-1]]]), torch.tensor([len(prompt) + i - 1])))[0][0]
        seq.append(int(out.argmax()))
    # the answers check's protocol, as every runtime will run it: its prompt in one call, then a token per call
    fed, n = ref["check_tokens"], ref["check_prompt"]
    check = [prog.run((torch.tensor([fed[:n]]), torch.tensor([0])))[0][0].float()]
    check += [prog.run((torch.tensor([[t]]), torch.tensor([n + i])))[0][0].float() for i, t in enumerate(fed[n:-1])]
    noise = float(((logits.double() - expected.double()) ** 2).sum())
    signal = float((expected.double() ** 2).sum())
    cos = torch.nn.functional.cosine_similarity(logits.double(), expected.double(), dim=1)
    return {
        "ppl_eager": math.exp(nll(expected)),
        "ppl_program": math.exp(nll(logits)),
        "agreement": float((logits.argmax(1) == expected.argmax(1)).double().mean()),
        "sqnr_db": None if noise == 0 else round(10 * math.log10(signal / noise), 3),
        "max_abs_error": float((logits - expected).abs().max()),
        "mean_abs_error": float((logits - expected).abs().mean()),
        "cosine": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "scored": len(targets),
        "greedy": seq,
        "check_logits": torch.stack(check).numpy(),
    }


# ------------------------------------------------------------------------------------------------ package
def _package(
    out: Path,
    force: bool,
    tgt: Target,
    lm: Any,
    lowered: Any,
    exported: Any,
    quant: dict,
    fid: dict,
    ref: dict,
    ids: dict,
    greedy_text: list[str],
    data_source: str,
    max_seq_len: int,
    warnings: list[str],
    stages: StageRunner,
    t_start: float,
) -> BuildResult:
    import tempfile

    from ..manifest import (
        MANIFEST_NAME,
        MANIFEST_SCHEMA_VERSION,
        PTD_NAME,
        PTE_NAME,
        BudgetCheck,
        BudgetSection,
        Manifest,
        ModelSection,
        OutputFidelity,
        PlannedMemory,
        ProgramData,
        ProgramSection,
        TensorEntry,
        VerifySection,
    )
    from ..program import inspect_program
    from ..token_fidelity import make_token_reference
    from .lower import deflate_size
    from .package import raise_for_budget

    info = inspect_program(out / PTE_NAME, lowered.pte)
    method = info.method("forward")
    import numpy as np

    if not np.isfinite(fid["check_logits"]).all():
        raise VerifyError(
            "the program's logits are not finite (NaN or inf) in the ExecuTorch runtime",
            "build with xnnpack-llm-fp32 to see whether quantization causes it, and report the model",
        )
    reference, ref_section = make_token_reference(
        ref["check_tokens"], ref["check_prompt"], ref["check_logits"], fid["check_logits"]
    )
    greedy = ref["greedy"]
    matching = sum(a == b for a, b in zip(greedy, fid["greedy"]))
    prefix = next((i for i, (a, b) in enumerate(zip(greedy, fid["greedy"])) if a != b), len(greedy))
    increase = 100.0 * (fid["ppl_program"] / fid["ppl_eager"] - 1.0)
    with tempfile.TemporaryDirectory() as d:  # the tokenizer files as the package will hold them
        lm.tokenizer.save_pretrained(d)
        tok_files = {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}
    gen = GenerationSection(
        family=decoder_family(lm.model),
        architecture=type(lm.model).__name__,
        max_seq_len=max_seq_len,
        max_context_len=max_seq_len,
        vocab_size=int(lm.model.config.vocab_size),
        bos_id=ids["bos_id"],
        eos_ids=ids["eos_ids"],
        cache="static, in place: ExecuTorch's llama::update_cache and llama::custom_sdpa",
        tokenizer_files={n: hashlib.sha256(b).hexdigest() for n, b in tok_files.items()},
        linears=quant["linears"],
        embeddings=quant["embeddings"],
        eval_data=data_source,
        eval_tokens=fid["scored"],
        perplexity_eager=round(fid["ppl_eager"], 4),
        perplexity_program=round(fid["ppl_program"], 4),
        ppl_increase_pct=round(increase, 3),
        next_token_agreement=round(fid["agreement"], 4),
        model_context_len=model_context_len(lm.model.config),
        greedy=GreedyCheck(
            len(ref["prompt"]),
            len(greedy),
            matching,
            prefix,
            greedy_text[0],
            greedy_text[1],
            list(ref["prompt"]),
            list(fid["greedy"]),
        ),
        source=lm.source or None,
        reference=ref_section,
    )
    checks = []
    b = tgt.budget
    if b.max_ppl_increase_pct is not None:
        checks.append(
            BudgetCheck(
                "ppl_increase_pct", b.max_ppl_increase_pct, round(increase, 3), increase <= b.max_ppl_increase_pct
            )
        )
    if b.max_size_mb is not None:
        mb = round((info.size_bytes + len(lowered.data or b"")) / 2**20, 3)  # what an app ships, model.ptd too
        checks.append(BudgetCheck("size_mb", b.max_size_mb, mb, mb <= b.max_size_mb))
    budget = BudgetSection(checks, [k for k in ("max_p50_ms", "max_peak_rss_mb") if getattr(b, k) is not None])
    logits = OutputFidelity(
        index=0,
        max_abs_error=round(fid["max_abs_error"], 6),
        mean_abs_error=round(fid["mean_abs_error"], 6),
        sqnr_db=fid["sqnr_db"],
        exact=fid["sqnr_db"] is None,
        cosine_similarity=round(fid["cosine"], 6),
        top1_agreement=round(fid["agreement"], 4),
        cosine_min=round(fid["cosine_min"], 6),
    )
    verify = VerifySection(
        samples=fid["scored"],
        data=data_source,
        max_abs_error=logits.max_abs_error,
        mean_abs_error=logits.mean_abs_error,
        sqnr_db=logits.sqnr_db,
        exact=logits.exact,
        cosine_similarity=logits.cosine_similarity,
        outputs=[logits],
        top1_agreement=logits.top1_agreement,
        reference="original",
        task=GENERATION,
        task_reason="a generation build: next-token logits, teacher-forced over the eval text",
        cosine_min=logits.cosine_min,
    )
    manifest = Manifest.from_dict(
        {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": software_versions(),
            "model": ModelSection(
                lm.spec,
                [
                    TensorEntry("tokens", [1, max_seq_len], "int64", True),
                    TensorEntry("input_pos", [1], "int64", False),
                ],
                [TensorEntry("logits", list(method.outputs[0].shape), method.outputs[0].dtype, False)],
            ),
            "target": tgt.to_dict(),
            "target_source": tgt.source,
            "export": {"mode": "non-strict"},
            "prune": {"applied": False, "reason": "generation builds do not prune"},
            "quantize": {
                "scheme": tgt.quantize.scheme.value,
                "applied": quant["linears"] != "fp32" or quant["embeddings"] != "none",
                "quantizer": "torchao quantize_ (before export)",
                "dynamic": tgt.quantize.scheme is not QuantScheme.NONE,
                "embeddings": quant["embeddings"],
            },
            "program": ProgramSection(
                file=PTE_NAME,
                sha256=info.sha256,
                size_bytes=info.size_bytes,
                compressed_size_bytes=deflate_size(lowered.pte) + (deflate_size(lowered.data) if lowered.data else 0),
                methods=sorted(info.methods),
                backend="xnnpack",
                delegation=lowered.delegation,
                planned_memory=PlannedMemory.from_dict(info.planned_memory("forward")),
                data=None
                if lowered.data is None
                else ProgramData(
                    file=PTD_NAME,
                    sha256=hashlib.sha256(lowered.data).hexdigest(),
                    size_bytes=len(lowered.data),
                    holds="the tied embedding table, stored once for the embedding lookup and the output layer",
                ),
            ),
            "verify": verify,
            "budget": budget,
            "warnings": list(warnings),
            "timings_s": {**stages.seconds, "total": round(time.perf_counter() - t_start, 3)},
            "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "generation": gen,
        }
    )
    raise_for_budget(manifest.budget)
    with staged_output(out, force) as tmp:
        (tmp / PTE_NAME).write_bytes(lowered.pte)
        if lowered.data is not None:
            (tmp / PTD_NAME).write_bytes(lowered.data)
        for name, data in tok_files.items():
            (tmp / name).write_bytes(data)
        (tmp / ref_section.file).write_bytes(reference)
        write_json(tmp / MANIFEST_NAME, manifest.to_dict())
    return BuildResult(out, out / PTE_NAME, manifest, tuple(manifest.warnings))


def decoder_family(model: Any) -> str:
    from ..causal import FAMILIES

    return FAMILIES[model.config.model_type]
