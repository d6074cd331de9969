"""The verify stage of a tensor build, run: the program against the model handed in at each dynamic size (the
comparisons themselves are :mod:`.verify`'s), the reference vectors stored beside it, and the per-module fidelity
``edgekit explain`` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data import VERIFY_SEED, Dataset, random_dataset
from .stages import Stage
from .state import BuildState

if TYPE_CHECKING:
    import torch

    from ..manifest import VerifySection
    from ..program import InProcessProgram


def verify_tensor_program(st: BuildState, verify_samples: int, task: str | None) -> None:
    """Run held-out data through the program (from memory) and the eager reference, and compare; a program with
    dynamic dimensions beyond the batch is checked again at each one's bounds."""
    from ..program import InProcessProgram
    from .verify import verify_at_sizes, verify_program

    examples = st.exported.example_inputs
    batch_range = next((d for d in st.dims if d.dim == 0), None)
    if st.eval_ds is not None:
        data = st.eval_ds
    else:  # random samples with their own seed, in whole batches for a static batch size
        static_batch = 1 if batch_range else int(examples[0].shape[0])
        n = -(-verify_samples // static_batch) * static_batch
        data = random_dataset(
            examples, n, seed=VERIFY_SEED, source="random (held-out seed)", tokenizer=st.loaded.tokenizer
        )
    # chunks within the exported batch range, else the program's static batch
    batch = max(batch_range.min, min(32, batch_range.max, len(data))) if batch_range else int(examples[0].shape[0])
    reason = "given with --task" if task else f"the {st.loaded.spec} wrapper returns it"
    kind = task or st.loaded.task

    # Every figure is against the model the user handed in; a pruned build is compared with the pruned model too
    # (``verify.lowering``), which says whether lowering worked and nothing about the user's model.
    original = st.loaded.module
    exported_model = st.eager.module if st.prune.applied else None

    def run() -> VerifySection:
        program = InProcessProgram(st.lowered.pte)  # loaded once: the held-out data, then each dynamic size
        verify = verify_program(
            program,
            original,
            data,
            batch=batch,
            labelled=st.eval_ds is not None,
            task=kind,
            task_reason=reason,
            exported_model=exported_model,
        )
        others = [d for d in st.dims if d.dim != 0]
        if others:
            verify = verify.replace(at_sizes=verify_at_sizes(program, original, data, others, batch=batch))
        if st.reference_samples > 0:
            store_reference_vectors(st, program, original, data)
        if st.explain and st.simulated is not None:
            record_module_fidelity(st, data)
        return verify

    st.verify = st.stages.run(Stage.VERIFY, run, data.source)


def store_reference_vectors(
    st: BuildState, program: InProcessProgram, original: torch.nn.Module, verify_data: Dataset
) -> None:
    """A few input sets (held-out data, else calibration data, else the random verify samples) with the user's model's
    outputs and this program's, for ``reference.npz``: whatever runs the program later is checked against them."""
    import torch
    from torch.utils._pytree import tree_leaves

    from ..reference import make_reference

    source = st.eval_ds or st.calib_ds or verify_data
    batch = int(st.exported.example_inputs[0].shape[0])  # one set = one run at the traced shapes
    sets = [s for _, s in zip(range(st.reference_samples), source.batches(batch))]
    if not sets:
        st.warnings.append(f"no reference vectors: {source.source} holds fewer samples than one run of the program")
        return
    with torch.no_grad():
        expected = [[t for t in tree_leaves(original(*s)) if isinstance(t, torch.Tensor)] for s in sets]
    produced = [list(program.run(s)) for s in sets]
    data, section = make_reference(sets, expected, produced, source.source, st.reference_max_mb)
    if data is None:
        st.warnings.append(section)
        return
    st.reference = (data, section)


#: input sets behind explain's "only it" figure: a replay of the rest of the model per module each (a ranking)
IMPACT_SETS = 2


def record_module_fidelity(st: BuildState, data: Dataset, samples: int = 4) -> None:
    """Each module's output SQNR between the fp32 model that was exported and PT2E's simulation of the quantized one
    (the program cannot expose its intermediates), for ``edgekit explain``'s least faithful layers."""
    from .explain_fidelity import ModuleFidelityResult, module_sqnr

    batch = int(st.exported.example_inputs[0].shape[0])
    sets = [s for _, s in zip(range(max(1, samples // batch)), data.batches(batch))]
    try:
        st.module_fidelity = ModuleFidelityResult(
            rows=module_sqnr(st.exported.program.module(), st.simulated, sets, impact_samples=IMPACT_SETS),
            samples=len(sets) * batch,
            data=data.source,
            kind="simulated: PT2E's quantized graph in PyTorch against the fp32 export ('only it' on the first "
            f"{min(IMPACT_SETS, len(sets)) * batch} sample(s))",
        )
    except Exception as exc:  # an explanation that cannot be made must not fail the build
        from ..errors import first_line

        st.warnings.append(
            f"edgekit explain will lack per-module fidelity: {type(exc).__name__}: {first_line(exc)[:120]}"
        )
