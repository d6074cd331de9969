"""Verify a generation program against the user's model, in the ExecuTorch runtime and through its own KV cache as it
will run: llama.cpp's KL-divergence protocol (:mod:`edgekit.perplexity_protocol`: each chunk's first half prefilled
in one call, its scored half fed a token per call, the decode path users run), the logits' SQNR and cosine on the same
positions, greedy tokens (a diagnostic: where the first divergence is), and the answers check's logits on the protocol
every runtime will use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import VerifyError
from ...perplexity_protocol import ProtocolFidelity
from .references import EvalText, ReferenceResult

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class DecoderVerifyResult:
    """The program against the user's model (:class:`ReferenceResult`) over the eval text, as verify measured it."""

    protocol: ProtocolFidelity  # llama-perplexity --kl-divergence's figures against the user's model
    sqnr_db: float | None  # the logits' SQNR; None: identical
    max_abs_error: float
    mean_abs_error: float
    cosine: float  # the logits' cosine similarity, mean over positions
    cosine_min: float  # ... and the worst position's
    greedy: list[int]  # the program's greedy tokens from the reference's prompt
    check_logits: np.ndarray  # the program's logits at the answers check's steps, float32 [steps, vocab]


def verify_decoder(
    pte: bytes, text: EvalText, ref: ReferenceResult, max_seq_len: int, data: bytes | None = None
) -> DecoderVerifyResult:
    """The program in the ExecuTorch runtime, through its KV cache, against the references (llama.cpp's protocol).

    Raises:
        VerifyError: the answers check's logits are not finite (nothing to keep as the package's reference).
    """
    import torch

    from ...perplexity_protocol import ProtocolMeter, first_scored, scored_targets
    from ...program import InProcessProgram
    from ..decoder import load_custom_ops

    load_custom_ops()
    prog = InProcessProgram(pte, data=data)
    meter = ProtocolMeter(text.n_ctx)
    signal = noise = 0.0
    cos = []
    abs_max, abs_sum, count = 0.0, 0.0, 0
    for chunk, expected in zip(text.chunks, ref.scored):
        first = first_scored(len(chunk))  # ≤ max_seq_len / 2: the first half is one call, then a token per call
        prog.run((torch.tensor([chunk[:first]]), torch.tensor([0])))
        rows = [prog.run((torch.tensor([[t]]), torch.tensor([first + i])))[0][0] for i, t in enumerate(chunk[first:-1])]
        logits = torch.stack(rows).float()
        check_finite_logits(expected, logits)
        meter.add(expected.numpy(), logits.numpy(), scored_targets(chunk))
        e, g = expected.double(), logits.double()
        signal += float((e**2).sum())
        noise += float(((g - e) ** 2).sum())
        cos.append(torch.nn.functional.cosine_similarity(g, e, dim=1))
        err = (g - e).abs()
        abs_max, abs_sum, count = max(abs_max, float(err.max())), abs_sum + float(err.sum()), count + err.numel()
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
    check_finite_logits(torch.from_numpy(ref.check_logits), check_logits)
    cos_all = torch.cat(cos)
    return DecoderVerifyResult(
        protocol=meter.result(),
        sqnr_db=None if noise == 0 else round(10 * math.log10(signal / noise), 3),
        max_abs_error=abs_max,
        mean_abs_error=abs_sum / count,
        cosine=float(cos_all.mean()),
        cosine_min=float(cos_all.min()),
        greedy=seq,
        check_logits=check_logits.numpy(),
    )


def check_finite_logits(expected: torch.Tensor, logits: torch.Tensor) -> None:
    """NaN or inf in the model's or the program's logits: named, with the way out (no divergence can be measured).

    Raises:
        VerifyError: which side is not finite.
    """
    import torch

    if not bool(torch.isfinite(expected).all()):
        raise VerifyError(
            "your model's own logits are not finite (NaN or inf) on the eval text, before any quantization",
            "check the model loads as intended (hf: folder or GGUF) and gives finite logits in transformers",
        )
    if not bool(torch.isfinite(logits).all()):
        raise VerifyError(
            "the program's logits are not finite (NaN or inf) in the ExecuTorch runtime",
            "build with xnnpack-llm-fp32 to see whether quantization causes it, and report the model",
        )
