"""Verify a generation program against the user's model, in the ExecuTorch runtime and through its own KV cache, token by
token as it will run: perplexity, next-token agreement, the logits' SQNR and cosine, greedy tokens, and the answers
check's logits on the protocol every runtime will use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import VerifyError
from .references import ReferenceResult, windows

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class DecoderVerifyResult:
    """The program against the user's model (:class:`ReferenceResult`) over the eval text, as verify measured it."""

    ppl_eager: float  # the user's model's perplexity, teacher-forced
    ppl_program: float  # the program's, on the same positions
    agreement: float  # share of positions whose top token is the model's
    sqnr_db: float | None  # the logits' SQNR; None: identical
    max_abs_error: float
    mean_abs_error: float
    cosine: float  # the logits' cosine similarity, mean over positions
    cosine_min: float  # ... and the worst position's
    scored: int  # next-token predictions scored
    greedy: list[int]  # the program's greedy tokens from the reference's prompt
    check_logits: np.ndarray  # the program's logits at the answers check's steps, float32 [steps, vocab]


def verify_decoder(
    pte: bytes, tokens: list[int], ref: ReferenceResult, max_seq_len: int, data: bytes | None = None
) -> DecoderVerifyResult:
    """The program in the ExecuTorch runtime, token by token through its KV cache, against the references.

    Raises:
        VerifyError: the answers check's logits are not finite (nothing to keep as the package's reference).
    """
    import torch

    from ...program import InProcessProgram
    from ..decoder import load_custom_ops

    load_custom_ops()
    prog = InProcessProgram(pte, data=data)
    got = []
    for w in windows(tokens, max_seq_len):
        for pos, t in enumerate(w[:-1]):
            got.append(prog.run((torch.tensor([[t]]), torch.tensor([pos])))[0][0].float())
    logits = torch.stack(got)
    expected = ref.logits
    targets = torch.tensor([t for w in windows(tokens, max_seq_len) for t in w[1:]])
    nll = lambda lg: float(torch.nn.functional.cross_entropy(lg.double(), targets))  # noqa: E731
    prompt = ref.prompt
    out = prog.run((torch.tensor([prompt]), torch.tensor([0])))[0][0]
    seq = [int(out.argmax())]
    for i in range(1, len(ref.greedy)):
        out = prog.run((torch.tensor([[seq[-1]]]), torch.tensor([len(prompt) + i - 1])))[0][0]
        seq.append(int(out.argmax()))
    # the answers check's protocol, as every runtime will run it: its prompt in one call, then a token per call
    fed, n = ref.check_tokens, ref.check_prompt
    check = [prog.run((torch.tensor([fed[:n]]), torch.tensor([0])))[0][0].float()]
    check += [prog.run((torch.tensor([[t]]), torch.tensor([n + i])))[0][0].float() for i, t in enumerate(fed[n:-1])]
    check_logits = torch.stack(check)
    if not bool(torch.isfinite(check_logits).all()):
        raise VerifyError(
            "the program's logits are not finite (NaN or inf) in the ExecuTorch runtime",
            "build with xnnpack-llm-fp32 to see whether quantization causes it, and report the model",
        )
    noise = float(((logits.double() - expected.double()) ** 2).sum())
    signal = float((expected.double() ** 2).sum())
    cos = torch.nn.functional.cosine_similarity(logits.double(), expected.double(), dim=1)
    return DecoderVerifyResult(
        ppl_eager=math.exp(nll(expected)),
        ppl_program=math.exp(nll(logits)),
        agreement=float((logits.argmax(1) == expected.argmax(1)).double().mean()),
        sqnr_db=None if noise == 0 else round(10 * math.log10(signal / noise), 3),
        max_abs_error=float((logits - expected).abs().max()),
        mean_abs_error=float((logits - expected).abs().mean()),
        cosine=float(cos.mean()),
        cosine_min=float(cos.min()),
        scored=len(targets),
        greedy=seq,
        check_logits=check_logits.numpy(),
    )
