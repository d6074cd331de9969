"""The program of a generation build: the decoder wrapped in the text-runner convention (:mod:`edgekit.pipeline.decoder`),
quantized in place (int8/int4 tables, 8da8w/8da4w linears, a GGUF's own 4-bit grid kept: :mod:`edgekit.pipeline.grid`),
exported with T dynamic from 1 to ``max_seq_len``, lowered through XNNPACK with the text runner's constant methods and,
for a tied table, its weights once in ``model.ptd``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...targets import Backend, EmbeddingQuant, QuantScheme, Target
from ..stages import Stage, StageRunner

if TYPE_CHECKING:
    import torch
    from torch.export import ExportedProgram
    from transformers import PreTrainedModel

    from ..lower import LowerResult


@dataclass(frozen=True)
class DecoderQuantPlan:
    """How the decoder was quantized: what the manifest says of it, and whether lowering keeps a tied table once."""

    linears: str  # fp32 | 8da8w | 8da4w (group g, how its scales were chosen), output layer 8da8w
    embeddings: str  # the table: none | int8 | int4
    shared_table: bool = False  # one table for the lookup and the output layer, stored once in model.ptd
    table_rows: bytes | None = None  # its first rows as stored: what check_stored_once looks for after lowering


def quantize_decoder(
    model: PreTrainedModel, tgt: Target, max_seq_len: int, stages: StageRunner
) -> tuple[torch.nn.Module, DecoderQuantPlan]:
    """The wrapper around ``model`` with its linears and embedding table quantized in place (after the references)."""
    import torch
    from torch import nn

    from ..decoder import make_decoder

    q = tgt.quantize
    decoder = make_decoder(model, max_seq_len)
    decoder.n_layers = len(decoder.layers)
    embeddings = q.embeddings.value
    if q.scheme is QuantScheme.NONE and q.embeddings is EmbeddingQuant.NONE:
        stages.skip(Stage.QUANTIZE, "target asks for fp32")
        # a tied fp32 table is one parameter for the lookup and the output layer: kept once in model.ptd too, where
        # XNNPACK's copy of the output layer's weights and the embedding's table are the same bytes
        if decoder.lm_head.weight is decoder.embed_tokens.weight:
            rows = decoder.embed_tokens.weight[:4].detach().contiguous().numpy().tobytes()
            return decoder, DecoderQuantPlan("fp32", embeddings, shared_table=True, table_rows=rows)
        return decoder, DecoderQuantPlan("fp32", embeddings)

    def run() -> DecoderQuantPlan:
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerAxis, PerGroup

        from ..grid import carry_int4_grids

        with torch.no_grad():
            head, table = decoder.lm_head, decoder.embed_tokens
            tied = head.weight is table.weight
            if tied:  # quantize_ replaces weights per module, so each gets its own copy
                head.weight = nn.Parameter(table.weight.detach().clone(), requires_grad=False)
            # a tied table with an int8 output layer and an int8 embedding table: both quantized alike (symmetric per
            # row, min-max), so the bytes are equal and the program keeps them once, outside the .pte
            # (edgekit.pipeline.lower external_weights): on SmolLM2-135M 21 MB less than an int4 table beside the
            # int8 output layer, and the lookups read int8 rows instead of int4 ones
            shared = tied and q.embeddings is EmbeddingQuant.INT8 and q.scheme is not QuantScheme.NONE
            linears, rows = "fp32", None
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
                if shared:  # the bytes check_stored_once looks for after lowering
                    rows = head.weight.qdata[:4].contiguous().numpy().tobytes()
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
                    linears = "8da8w"
                else:
                    how = (
                        "HQQ scales"
                        if not grids
                        else f"the weights' own 4-bit grid in {len(grids)} of {len(body)} linears"
                        + (", HQQ scales in the rest" if len(grids) < len(body) else "")
                    )
                    linears = f"8da4w (group {q.group_size}, {how}), output layer 8da8w"
        return DecoderQuantPlan(linears, embeddings, shared_table=shared, table_rows=rows)

    detail = f"{q.scheme.value}" + (f", {q.embeddings.value} embedding table" if q.embeddings.value != "none" else "")
    return decoder, stages.run(Stage.QUANTIZE, run, detail)


def export_decoder(decoder: torch.nn.Module, max_seq_len: int) -> ExportedProgram:
    """``torch.export`` of the decoder wrapper, one to ``max_seq_len`` tokens a call, or ExportError."""
    import torch

    from ...errors import ExportError
    from ..grid import forget_inputs

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


def lower_decoder(
    exported: ExportedProgram, tgt: Target, methods: dict[str, int | bool | list[int]], quant: DecoderQuantPlan
) -> LowerResult:
    """The exported decoder lowered to XNNPACK, its constant methods attached, the tied table in model.ptd when shared."""
    import warnings

    from ..lower import lower_program

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
            external_weights=SHARED_TABLE if quant.shared_table else (),
        )


def check_stored_once(lowered: LowerResult, rows: bytes) -> None:
    """The tied table's first int8 rows (``rows``) must be in model.ptd exactly once and not in the program: else
    ExecuTorch kept a second copy (a tag that did not reach one of the two sides), and the build says so.

    Raises:
        LowerError: the table is stored twice, or not in the data file.
    """
    from ...errors import LowerError

    inside, outside = lowered.pte.count(rows), (lowered.data or b"").count(rows)
    if inside or outside != 1:
        raise LowerError(
            f"the tied embedding table was not stored once (in the program {inside}×, in model.ptd {outside}×)",
            'set [quantize] embeddings = "int4" in a target file to keep a separate table, and report the model',
        )
