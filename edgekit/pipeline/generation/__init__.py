"""``build(..., task="text-generation")``: a decoder language model → a generation program with a static KV cache.

load (``hf:DIR`` / ``gguf:FILE``) → the user's model's references (its logits at the scored positions of llama.cpp's
chunks of the eval text, greedy tokens from its first prompt) → wrap (:mod:`edgekit.pipeline.decoder`: text-runner convention, in-place cache) →
quantize (torchao ``quantize_`` on the module: int8/int4 embedding tables first, then every linear as 8da8w or 8da4w;
linears already on a 4-bit grid, a GGUF's Q4_1/Q4_0/Q4_K, keep it: :mod:`edgekit.pipeline.grid`)
→ export (T dynamic from 1 to ``max_seq_len``) → lower (XNNPACK, plus the constant methods ExecuTorch's text runner
reads) → verify (the program in the ExecuTorch runtime against the references on llama.cpp's KL-divergence protocol:
mean KLD, same top-1, perplexity ratio; logits SQNR, greedy tokens, and the answers check's tokens as every runtime
will feed them) → package (``model.pte``, the tokenizer files, ``reference.npz`` with the user's model's logits for
the answers check (:mod:`edgekit.token_fidelity`), ``manifest.json`` with a ``generation`` section).

Weight-only int8/int4 linears are not offered: with executorch 1.5.1 XNNPACK takes them and computes wrong results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..._noise import import_stack
from ...data import check_data_paths
from ...errors import DataError, UsageError
from ...fileops import check_output
from ...targets import GENERATION, Backend, QuantScheme, Target
from ..stages import Stage, StageRunner, build_scope
from ..state import BuildResult
from .package import write_generation_package
from .program import check_stored_once, export_decoder, lower_decoder, quantize_decoder
from .references import (
    check_shapes,
    model_context_len,
    model_references,
    read_eval_text,
    special_ids,
)
from .verify import verify_decoder

if TYPE_CHECKING:
    from ..request import BuildRequest

DEFAULT_MAX_SEQ_LEN = 512


# ------------------------------------------------------------------------------------------------ build
def build_generation(request: BuildRequest) -> BuildResult:
    """The generation kind's build (:mod:`edgekit.kinds`): see the module docstring; the package is written at
    ``request.out``.

    Raises:
        UsageError: a target or option that does not fit a generation build.
        ModelLoadError: not a decoder of a supported family; a corrupt GGUF.
        DataError: an empty or unreadable ``--eval`` text.
        BudgetError: the program misses the target's budget (perplexity increase, size); nothing is written.
    """
    t_start = time.perf_counter()
    model, eval, force, progress = request.model, request.eval, request.force, request.progress  # noqa: A001
    if not isinstance(model, str):
        raise UsageError(
            "a text-generation build takes a model spec, hf:DIR or gguf:FILE", "pass the decoder's folder or GGUF file"
        )
    tgt = request.resolved_target
    tgt = tgt if tgt.task == GENERATION else tgt.replace(task=GENERATION)
    _check_target(tgt)
    max_seq_len = request.max_seq_len
    given = max_seq_len is not None
    max_seq_len = DEFAULT_MAX_SEQ_LEN if max_seq_len is None else max_seq_len
    if not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool) or not 8 <= max_seq_len <= 32768:
        raise UsageError(f"--max-seq-len must be an integer in [8, 32768], got {max_seq_len!r}", "e.g. 512")
    check_data_paths(eval=eval)
    if eval is not None and not Path(eval).is_file():  # before the model loads: a typo should cost no minutes
        raise DataError(f"the eval text {eval} does not exist", "pass a UTF-8 .txt file of held-out text")
    out = Path(request.out)
    check_output(out, force)
    stages = StageRunner(progress)
    import_stack()
    warnings: list[str] = []
    with build_scope():
        from ...causal import load_causal_lm

        lm = stages.run(Stage.LOAD, lambda: load_causal_lm(model), model)
        limit = model_context_len(lm.model.config)
        if not given and limit and limit < max_seq_len:
            # the default, not a request: the model's own context (or its sliding window, within which full
            # attention is the model's attention) is the limit
            max_seq_len = max(8, limit)
        check_shapes(lm.model, tgt, max_seq_len)
        text = read_eval_text(eval, lm.tokenizer, max_seq_len, request.eval_chunks)
        data_source = text.source
        ref = model_references(lm.model, text, max_seq_len)
        ids = special_ids(lm)
        decoder, quant = quantize_decoder(lm.model, tgt, max_seq_len, stages)
        exported = stages.run(Stage.EXPORT, lambda: export_decoder(decoder, max_seq_len), f"T = 1..{max_seq_len}")
        methods = {
            "get_max_seq_len": max_seq_len,
            "get_max_context_len": max_seq_len,
            "get_vocab_size": int(lm.model.config.vocab_size),
            "get_n_layers": int(decoder.n_layers),
            "use_kv_cache": True,
            "use_sdpa_with_kv_cache": True,
            "enable_dynamic_shape": True,
            "get_eos_ids": ids.eos_ids,
            **({"get_bos_id": ids.bos_id} if ids.bos_id is not None else {}),
        }
        lowered = stages.run(Stage.LOWER, lambda: lower_decoder(exported, tgt, methods, quant), "XNNPACK")
        if quant.shared_table and quant.table_rows is not None:
            check_stored_once(lowered, quant.table_rows)
        fid = stages.run(
            Stage.VERIFY, lambda: verify_decoder(lowered.pte, text, ref, max_seq_len, lowered.data), data_source
        )
    greedy_text = [lm.tokenizer.decode(t) for t in (ref.greedy, fid.greedy)]
    return stages.run(
        Stage.PACKAGE,
        lambda: write_generation_package(
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
