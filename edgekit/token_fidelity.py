"""Next-token fidelity in the terms llama.cpp's users read, and the answers check every generation program meets
wherever it runs. Reading this module needs numpy only.

**The figures** (``llama-perplexity --kl-divergence``): both sets of logits to log-probabilities in float64; per
position KL(base‖other) = Σ p_base·(log p_base − log p_other) in nats; their mean with its standard error, 99th
percentile and maximum; "same top-1", the share of positions where both put the same token first.

**The answers check.** A generation package carries ``reference.npz``: the first ``n`` (≤ 48) tokens of its eval text
and, for each of the last ``n − prompt`` positions, the logits the user's model gave there (eager fp32, teacher-forced).
Wherever the program is profiled (the Python worker, the native runner, a board over ssh) it is fed the same tokens —
the first ``prompt`` in one call (the prefill path), then one per call (the decode path) — and its logits are
compared with the model's. The program passes when

    mean KL(your model ‖ here) ≤ (1 + RATIO·√(32 / steps)) × mean KL(your model ‖ the program when built) + FLOOR

where the build's divergence was measured the same way (its prompt in one call, then a token per call, in the
ExecuTorch runtime on the build machine): at 32 steps, twice the build's. A program stays as faithful to the model as
when it was built whatever rounds differently here (another CPU, another thread count, edgekit's own attention
kernels), and a runtime that computes something else does not. Measured (docs/decisions/001): on SmolLM2-135M's
8da4w program, correct attention kernels that differ only in rounding (libm's exp, another summation order) land at
1.01-1.22× the build's divergence and the aarch64 kernels under qemu at 1.07× — a mean over 32 steps of a heavy-tailed
figure moves that much with rounding — while broken ones land at 6-133× (a kernel that skips the newest key, a wrong
scale) or give NaN, and qemu's ``-cpu max`` board 800×. The margin widens as √(32 / steps) for shorter checks (a short
eval text or cache). A fault too subtle to double the divergence is the kernel sweep's to catch
(tests/test_attention_kernels.py), not this check's.

Why not the build's top tokens (what this check compared before): a quantized program's activations are rounded to
int8 per token, so a last-bit difference anywhere (one exp() against another) can move a value across a rounding
step, and in a deep model the changes grow. On a Llama-3.2-1B-shaped decoder (random weights, a Q4_0 GGUF, 16 layers)
correct attention kernels gave the same top token as each other at only 75-84% of teacher-forced steps, each as far
from the user's model as the build was.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._contract import Contract
from .errors import ProgramError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

REFERENCE_NAME = "reference.npz"
#: the check's tokens: at most this many from the start of the eval text ...
CHECK_TOKENS = 48
#: ... the first this many fed in one call (at most a third of them)
CHECK_PROMPT = 16
#: a runtime passes while its mean KL divergence from the user's model is at most the build's plus this share of it
#: (at 32 steps; × √(32 / steps) for fewer) ...
RATIO = 1.0
#: ... the steps that share is for ...
RATIO_STEPS = 32
#: ... plus this many nats (fp32 programs are ~1e-12 from the model: another CPU's rounding must still pass)
FLOOR = 1e-4


@dataclass(frozen=True)
class TokenFidelity(Contract):
    """Logits against a base's (the user's model), position by position: llama.cpp's KL-divergence figures."""

    positions: int
    kld_mean: float  # nats, mean over positions of KL(base ‖ this)
    kld_se: float  # standard error of that mean
    kld_p99: float
    kld_max: float
    same_top1: float  # share of positions whose top token is the base's


def log_softmax(logits: ArrayLike) -> np.ndarray:
    """Rows of logits → log-probabilities, in float64."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl_divergence(base: ArrayLike, other: ArrayLike) -> np.ndarray:
    """Per row, KL(softmax(base) ‖ softmax(other)) in nats (float64; finite logits)."""
    return kl_of_log_probs(log_softmax(base), log_softmax(other))


def kl_of_log_probs(lb: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Per row, KL(base ‖ other) from both rows' log-probabilities (:func:`log_softmax`'s), in nats."""
    import numpy as np

    return np.maximum((np.exp(lb) * (lb - lo)).sum(axis=-1), 0.0)


def token_fidelity(base: ArrayLike, other: ArrayLike) -> TokenFidelity:
    """``other``'s logits against ``base``'s (both ``[positions, vocab]``)."""
    import numpy as np

    base, other = np.asarray(base), np.asarray(other)
    if base.shape != other.shape or base.ndim != 2 or not len(base):
        raise ValueError(f"logits of shapes {base.shape} and {other.shape} cannot be compared")
    if not (np.isfinite(base).all() and np.isfinite(other).all()):
        raise ValueError("logits that are not finite (NaN or inf) have no KL divergence")
    kld = kl_divergence(base, other)
    n = len(kld)
    return TokenFidelity(
        positions=n,
        kld_mean=float(kld.mean()),
        kld_se=float(kld.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        kld_p99=float(np.percentile(kld, 99)),
        kld_max=float(kld.max()),
        same_top1=float((base.argmax(-1) == other.argmax(-1)).mean()),
    )


# ------------------------------------------------------------------------------------------------ the answers check
@dataclass(frozen=True)
class TokenReference(Contract):
    """``manifest.generation.reference``: the check's tokens and the user's model's logits for them, beside the
    program, and how far the program was from them when built."""

    file: str
    sha256: str
    size_bytes: int
    tokens: int  # fed to the program: the first ``prompt_tokens`` in one call, the rest one per call
    prompt_tokens: int
    build: TokenFidelity  # the program when built (ExecuTorch's runtime on the build machine) against the model
    max_kld: float  # what a runtime must stay within: (1 + RATIO·√(32 / steps)) × build.kld_mean + FLOOR
    rule: str = f"mean KL(your model ‖ here) ≤ (1 + {RATIO:g}·√(32 / steps)) × at build time + {FLOOR:g} nats"

    @property
    def steps(self) -> int:
        return self.tokens - self.prompt_tokens


def check_sequence(tokens: list[int], max_context: int) -> tuple[list[int], int]:
    """The check's tokens (from the start of the eval text) and how many of them form its prompt."""
    n = min(CHECK_TOKENS, len(tokens), max_context)
    return list(tokens[:n]), max(1, min(CHECK_PROMPT, n // 3))


def allowed_kld(build_kld: float, steps: int) -> float:
    """What a runtime may reach: (1 + RATIO·√(RATIO_STEPS / steps)) × the build's divergence + FLOOR."""
    return (1 + RATIO * math.sqrt(RATIO_STEPS / max(1, steps))) * build_kld + FLOOR


def make_token_reference(
    tokens: list[int], prompt_tokens: int, expected: ArrayLike, program: ArrayLike
) -> tuple[bytes, TokenReference]:
    """The ``reference.npz`` bytes and its manifest section: ``expected`` the user's model's logits and ``program``
    the program's (the ExecuTorch runtime at build time), ``[len(tokens) − prompt_tokens, vocab]`` each."""
    import numpy as np

    expected = np.ascontiguousarray(expected, dtype=np.float32)
    buf = io.BytesIO()
    np.savez(buf, tokens=np.asarray(tokens, np.int64), prompt_tokens=np.int64(prompt_tokens), expected=expected)
    data = buf.getvalue()
    build = token_fidelity(expected, program)
    section = TokenReference(
        file=REFERENCE_NAME,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        tokens=len(tokens),
        prompt_tokens=prompt_tokens,
        build=build,
        max_kld=allowed_kld(build.kld_mean, build.positions),
    )
    return data, section


@dataclass
class TokenReferenceData:
    """A package's check tokens and the user's model's logits for them, read and checked against the manifest."""

    section: TokenReference
    tokens: list[int]
    expected: np.ndarray  # float32 [steps, vocab]

    @property
    def prompt(self) -> list[int]:
        return self.tokens[: self.section.prompt_tokens]

    @property
    def fed(self) -> list[int]:
        """The tokens fed one per call after the prompt (the runner's --check-tokens)."""
        return self.tokens[self.section.prompt_tokens :]


def load_token_reference(package: Path, section: TokenReference) -> TokenReferenceData:
    """Read a generation package's ``reference.npz``.

    Raises:
        ProgramError: missing, altered (sha256), unreadable, or not shaped as the manifest says.
    """
    import numpy as np

    path = Path(package) / section.file
    hint = "rebuild the package (`edgekit build`), or profile with --no-check"
    try:
        data = path.read_bytes()
    except OSError:
        raise ProgramError(f"the package's reference logits {path} are missing", hint) from None
    if hashlib.sha256(data).hexdigest() != section.sha256:
        raise ProgramError(f"{path} is not the file the manifest names (sha256 differs)", hint)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            tokens = [int(t) for t in z["tokens"]]
            prompt, expected = int(z["prompt_tokens"]), z["expected"]
    except (OSError, KeyError, ValueError) as exc:
        raise ProgramError(f"cannot read {path}: {exc}", hint) from None
    if len(tokens) != section.tokens or prompt != section.prompt_tokens or expected.shape[0] != section.steps:
        raise ProgramError(f"{path} does not hold what the manifest says", hint)
    return TokenReferenceData(section, tokens, expected)


@dataclass(frozen=True)
class AnswersCheck(Contract):
    """A runtime's answers to the check's tokens against the user's model."""

    passed: bool
    here: TokenFidelity | None  # None: the runtime's logits were not finite
    build_kld: float
    max_kld: float  # allowed_kld(build, steps)


def check_answers(ref: TokenReferenceData, logits: ArrayLike | bytes | bytearray) -> AnswersCheck:
    """``logits`` (what the runtime here gave, ``[steps, vocab]``, or its raw float32 bytes) against the reference.

    Raises:
        ValueError: not as many logits as the reference has.
    """
    import numpy as np

    if isinstance(logits, (bytes, bytearray)):
        logits = np.frombuffer(logits, np.float32)
    got = np.asarray(logits, np.float32)
    if got.size != ref.expected.size:
        raise ValueError(f"{got.size} logits where the check needs {ref.expected.size}")
    s = ref.section
    allowed = allowed_kld(s.build.kld_mean, s.steps)  # this edgekit's rule (the manifest's max_kld: the builder's)
    if not np.isfinite(got).all():
        return AnswersCheck(False, None, s.build.kld_mean, allowed)
    here = token_fidelity(ref.expected, got.reshape(ref.expected.shape))
    return AnswersCheck(here.kld_mean <= allowed, here, s.build.kld_mean, allowed)
