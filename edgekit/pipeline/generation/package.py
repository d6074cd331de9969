"""Write a generation package: the manifest's generation section and verify figures from what the build measured, the
budget checked, and ``model.pte``, ``model.ptd``, the tokenizer files and ``reference.npz`` written in one atomic step."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ...fileops import staged_output, write_json
from ...manifest_generation import GenerationSection, GreedyCheck
from ...targets import GENERATION, QuantScheme, Target
from ..stages import StageRunner
from ..state import BuildResult
from .references import model_context_len

if TYPE_CHECKING:
    from torch.export import ExportedProgram
    from transformers import PreTrainedModel

    from ...causal import CausalLM
    from ..lower import LowerResult
    from .program import DecoderQuantPlan
    from .references import ReferenceResult, SpecialIds
    from .verify import DecoderVerifyResult


def write_generation_package(
    out: Path,
    force: bool,
    tgt: Target,
    lm: CausalLM,
    lowered: LowerResult,
    exported: ExportedProgram,
    quant: DecoderQuantPlan,
    fid: DecoderVerifyResult,
    ref: ReferenceResult,
    ids: SpecialIds,
    greedy_text: list[str],
    data_source: str,
    max_seq_len: int,
    warnings: list[str],
    stages: StageRunner,
    t_start: float,
) -> BuildResult:
    """The package of a verified generation program, written atomically (staged, then renamed into ``out``)."""
    import tempfile

    from ...manifest import (
        MANIFEST_NAME,
        PTD_NAME,
        PTE_NAME,
        ModelSection,
        OutputFidelity,
        ProgramData,
        ProgramSection,
        TensorEntry,
        VerifySection,
    )
    from ...program import inspect_program
    from ...token_fidelity import make_token_reference
    from ..lower import deflate_size
    from ..package import check_budget, manifest_for, raise_for_budget

    info = inspect_program(out / PTE_NAME, lowered.pte)
    method = info.method("forward")
    reference, ref_section = make_token_reference(
        ref.check_tokens, ref.check_prompt, ref.check_logits, fid.check_logits
    )
    greedy = ref.greedy
    matching = sum(a == b for a, b in zip(greedy, fid.greedy))
    prefix = next((i for i, (a, b) in enumerate(zip(greedy, fid.greedy)) if a != b), len(greedy))
    pf = fid.protocol
    increase = pf.ppl_increase_pct
    with tempfile.TemporaryDirectory() as d:  # the tokenizer files as the package will hold them
        lm.tokenizer.save_pretrained(d)
        tok_files = {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}
    gen = GenerationSection(
        family=decoder_family(lm.model),
        architecture=type(lm.model).__name__,
        max_seq_len=max_seq_len,
        max_context_len=max_seq_len,
        vocab_size=int(lm.model.config.vocab_size),
        bos_id=ids.bos_id,
        eos_ids=ids.eos_ids,
        cache="static, in place: ExecuTorch's llama::update_cache and llama::custom_sdpa",
        tokenizer_files={n: hashlib.sha256(b).hexdigest() for n, b in tok_files.items()},
        linears=quant.linears,
        embeddings=quant.embeddings,
        eval_data=data_source,
        eval_tokens=pf.positions,
        perplexity_eager=round(pf.ppl_base, 4),
        perplexity_program=round(pf.ppl, 4),
        ppl_increase_pct=round(increase, 3),
        next_token_agreement=round(pf.same_top1, 4),
        fidelity=pf,
        model_context_len=model_context_len(lm.model.config),
        greedy=GreedyCheck(
            len(ref.prompt),
            len(greedy),
            matching,
            prefix,
            greedy_text[0],
            greedy_text[1],
            list(ref.prompt),
            list(fid.greedy),
        ),
        source=None if lm.source is None else lm.source.to_dict(),
        reference=ref_section,
    )
    logits = OutputFidelity(
        index=0,
        max_abs_error=round(fid.max_abs_error, 6),
        mean_abs_error=round(fid.mean_abs_error, 6),
        sqnr_db=fid.sqnr_db,
        exact=fid.sqnr_db is None,
        cosine_similarity=round(fid.cosine, 6),
        top1_agreement=round(pf.same_top1, 4),
        cosine_min=round(fid.cosine_min, 6),
    )
    verify = VerifySection(
        samples=pf.positions,
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
        task_reason="a generation build: next-token logits on llama.cpp's KL-divergence protocol over the eval text",
        cosine_min=logits.cosine_min,
    )
    manifest = manifest_for(
        tgt,
        stages,
        t_start,
        warnings,
        model=ModelSection(
            lm.spec,
            [
                TensorEntry("tokens", [1, max_seq_len], "int64", True),
                TensorEntry("input_pos", [1], "int64", False),
            ],
            [TensorEntry("logits", list(method.outputs[0].shape), method.outputs[0].dtype, False)],
        ),
        export={"mode": "non-strict"},
        prune={"applied": False, "reason": "generation builds do not prune"},
        quantize={
            "scheme": tgt.quantize.scheme.value,
            "applied": quant.linears != "fp32" or quant.embeddings != "none",
            "quantizer": "torchao quantize_ (before export)",
            "dynamic": tgt.quantize.scheme is not QuantScheme.NONE,
            "embeddings": quant.embeddings,
        },
        program=ProgramSection(
            file=PTE_NAME,
            sha256=info.sha256,
            size_bytes=info.size_bytes,
            compressed_size_bytes=deflate_size(lowered.pte) + (deflate_size(lowered.data) if lowered.data else 0),
            methods=sorted(info.methods),
            backend=tgt.backend.value,
            delegation=lowered.delegation,
            planned_memory=info.planned_memory("forward"),
            data=None
            if lowered.data is None
            else ProgramData(
                file=PTD_NAME,
                sha256=hashlib.sha256(lowered.data).hexdigest(),
                size_bytes=len(lowered.data),
                holds="the tied embedding table, stored once for the embedding lookup and the output layer",
            ),
        ),
        verify=verify,
        # what an app ships: model.ptd too
        budget=check_budget(tgt, info.size_bytes + len(lowered.data or b""), protocol=pf),
        generation=gen,
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


def decoder_family(model: PreTrainedModel) -> str:
    """The manifest's family name for the model's type (``llama`` for Llama, Mistral and Qwen, ``phi3``, ``gpt2``)."""
    from ...causal import FAMILIES

    return FAMILIES[model.config.model_type]
