"""The answers check of a generation profile: what the worker's logits say about the program here.

A package with reference logits (:mod:`edgekit.token_fidelity`) passes while its mean KL divergence from the user's
model stays within the rule; an older package (greedy tokens only) while its top token is the build's at each step,
or a near tie (``NEAR_TIE``), at enough steps (``MIN_CHECK_AGREEMENT``). Either way a program that answers otherwise
raises before any figure is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._contract import Contract
from ..errors import ProfileError, ReferenceMismatchError
from ..token_fidelity import TokenReferenceData

if TYPE_CHECKING:
    from ..runner.protocol import GenerationCheckResult

#: a step of the answers check whose top token is not the build's passes when the build's token is at most this far
#: below it, in units of the logits' spread (max − mean); and at least this share of steps must agree outright
NEAR_TIE = 0.05
MIN_CHECK_AGREEMENT = 7 / 8


@dataclass(frozen=True)
class GenerationCheck(Contract):
    """The answers check, here: the program fed its reference tokens, its logits against the user's model's
    (:mod:`edgekit.token_fidelity`); for a package from before reference logits, fed its build-time greedy tokens (its
    top token must be the build's, or a near tie, see ``NEAR_TIE``)."""

    status: str  # passed | failed | skipped
    tokens: int  # steps checked
    matching: int  # steps whose top token is the user's model's (older packages: the build's)
    note: str = ""
    kld: float | None = None  # mean KL(your model ‖ program) here, nats
    build_kld: float | None = None  # the same when built
    max_kld: float | None = None  # what the rule allows


def answers_check(
    c: GenerationCheckResult | None, reference: TokenReferenceData | None, logits: bytes | None, where: str, check: bool
) -> GenerationCheck:
    """The worker's check result ``c`` (``runner.protocol.GenerationCheckResult``, None when none ran) judged: by the
    package's reference logits when it has them (``logits``: what the worker wrote), else by its build's greedy tokens.

    Raises:
        ReferenceMismatchError: the program answers otherwise here than when it was built.
        ProfileError: the worker wrote no logits, or not as many as the check needs.
    """
    if c is None:
        return GenerationCheck("skipped", 0, 0, "--no-check" if not check else "a package from before this check")
    if reference is not None:
        return _answers_checked(reference, logits, where)
    # another thread count or CPU may round differently: a near tie can flip (SmolLM2's 4-bit program at 1 thread
    # against its 2-thread build has flipped two of 32 steps, the build's token 1.4% of the logits' spread below the
    # top). A broken kernel is not near: far down, or most steps differ.
    ties = [math.inf if g is None else g for g in c.gaps if g is None or g > 0]  # None: not finite
    ok = c.matching == c.tokens or (all(g <= NEAR_TIE for g in ties) and c.matching >= c.tokens * MIN_CHECK_AGREEMENT)
    note = f"fed the greedy tokens of the {c.prompt_tokens}-token build-time prompt"
    if ties and ok:
        note += f"; {len(ties)} near tie(s), the build's token at most {max(ties):.1%} of the logits' spread below"
    if not ok:
        raise ReferenceMismatchError(
            f"the program answers differently {where} than when it was built: its top token is the build's at "
            f"{c.matching} of {c.tokens} steps from its {c.prompt_tokens}-token check prompt, the "
            f"build's token up to {max(ties, default=0.0):.0%} of the logits' spread below it",
            "check the runtime and the machine (a broken kernel, a wrong library), or rebuild the package with this "
            "edgekit (its check compares logits with your model's); --no-check measures anyway",
        )
    return GenerationCheck("passed", c.tokens, c.matching, note)


def _answers_checked(reference: TokenReferenceData, logits: bytes | None, where: str) -> GenerationCheck:
    """The answers check of a package with reference logits (:mod:`edgekit.token_fidelity`): passed, or raises.

    Raises:
        ReferenceMismatchError: the program is further from the user's model here than the rule allows, or gave
            logits that are not finite.
        ProfileError: the worker wrote no logits, or not as many as the check needs.
    """
    from ..token_fidelity import check_answers

    s = reference.section
    if logits is None:
        raise ProfileError(f"the worker {where} wrote no logits for the answers check", "report this")
    try:
        c = check_answers(reference, logits)
    except ValueError as exc:
        raise ProfileError(f"the answers check {where}: {exc}", "report this") from None
    hint = "check the runtime and the machine (a broken kernel, a wrong library); --no-check measures anyway"
    h = c.here
    if h is None:
        raise ReferenceMismatchError(
            f"the program answers differently {where} than when it was built: its logits are not finite (NaN or inf)",
            hint,
        )
    figures = (
        f"mean KL(your model ‖ program) {h.kld_mean:.4g} nats {where} (allowed {c.max_kld:.4g}; {c.build_kld:.4g} when "
        f"built), the model's top token at {h.same_top1:.0%} of {h.positions} steps"
    )
    if not c.passed:
        raise ReferenceMismatchError(f"the program answers differently {where} than when it was built: {figures}", hint)
    note = f"fed the first {s.tokens} tokens of the eval text ({s.prompt_tokens} in one call, then one per call): "
    return GenerationCheck(
        "passed",
        h.positions,
        round(h.same_top1 * h.positions),
        note + figures,
        kld=_figure(h.kld_mean),
        build_kld=_figure(c.build_kld),
        max_kld=_figure(c.max_kld),
    )


def _figure(x: float) -> float:
    """Four significant figures (an fp32 program's divergence is ~1e-12, not 0)."""
    return float(f"{x:.4g}")
