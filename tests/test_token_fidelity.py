"""The KL-divergence figures and the answers check's rule (edgekit.token_fidelity), on logits made here."""

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy

from edgekit.token_fidelity import (
    FLOOR,
    RATIO,
    TokenReferenceData,
    allowed_kld,
    check_answers,
    check_sequence,
    kl_divergence,
    make_token_reference,
    token_fidelity,
)


def _logits(seed: int, rows: int = 32, vocab: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (rows, vocab)).astype(np.float32)


def test_kl_divergence_is_scipys_in_nats_and_zero_for_the_same_logits():
    base, other = _logits(0), _logits(1)
    want = [entropy(softmax(b.astype(np.float64)), softmax(o.astype(np.float64))) for b, o in zip(base, other)]
    assert np.allclose(kl_divergence(base, other), want, rtol=1e-9)
    f = token_fidelity(base, base + 7.0)  # a constant shift is the same distribution
    assert f.kld_mean < 1e-12 and f.same_top1 == 1.0 and f.positions == 32
    g = token_fidelity(base, other)
    assert g.kld_mean == pytest.approx(np.mean(want)) and g.kld_se > 0 and g.kld_max >= g.kld_p99 >= g.kld_mean
    assert 0 <= g.same_top1 < 0.2


def _reference(build_noise: float):
    expected = _logits(0)
    program = expected + np.random.default_rng(2).normal(0, build_noise, expected.shape).astype(np.float32)
    tokens = list(range(3, 51))
    data, section = make_token_reference(tokens, 16, expected, program)
    assert section.tokens == 48 and section.steps == 32 and section.size_bytes == len(data)
    return TokenReferenceData(section, tokens, expected), program


def test_the_answers_check_passes_rounding_and_refuses_what_is_further_from_the_model():
    ref, program = _reference(0.3)
    build = ref.section.build.kld_mean
    assert ref.section.max_kld == pytest.approx((1 + RATIO) * build + FLOOR) == allowed_kld(build, 32)
    assert allowed_kld(build, 8) == pytest.approx((1 + 2 * RATIO) * build + FLOOR)  # shorter checks: wider
    # the build's own answers, and the same answers rounded differently (float32 last bits)
    assert check_answers(ref, program).passed and check_answers(ref, program.tobytes()).passed
    assert check_answers(ref, program * np.float32(1 + 1e-6)).passed
    # answers as close to the model, but otherwise (another sample of the same noise): still passes
    again = ref.expected + np.random.default_rng(3).normal(0, 0.3, program.shape).astype(np.float32)
    assert check_answers(ref, again).passed
    # much further from the model than at build time: refused
    worse = ref.expected + np.random.default_rng(3).normal(0, 0.9, program.shape).astype(np.float32)
    c = check_answers(ref, worse)
    assert not c.passed and c.here.kld_mean > 3 * build
    nan = program.copy()
    nan[3, 7] = np.nan
    assert not check_answers(ref, nan).passed and check_answers(ref, nan).here is None
    with pytest.raises(ValueError, match="not finite"):
        token_fidelity(ref.expected, nan)
    with pytest.raises(ValueError, match="logits where the check needs"):
        check_answers(ref, program[:-1])


def test_an_exact_program_passes_only_within_the_floor():
    ref, program = _reference(0.0)
    assert ref.section.build.kld_mean == 0 and ref.section.max_kld == FLOOR
    assert check_answers(ref, program).passed
    assert not check_answers(ref, program + np.random.default_rng(4).normal(0, 0.1, program.shape)).passed


def test_the_check_sequence_fits_short_texts_and_short_caches():
    assert check_sequence(list(range(500)), 512) == (list(range(48)), 16)
    assert check_sequence(list(range(500)), 8) == (list(range(8)), 2)
    assert check_sequence([5, 6], 512) == ([5, 6], 1)
