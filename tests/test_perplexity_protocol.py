"""llama.cpp's KL-divergence protocol (edgekit.perplexity_protocol), on numbers small enough to check by hand: which
tokens form each chunk, which positions are scored, and the statistics llama-perplexity prints."""

import math

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr, softmax

from edgekit.perplexity_protocol import (
    MIN_CHUNKS,
    ProtocolMeter,
    chunks,
    first_scored,
    protocol_ctx,
    scored_targets,
    tokens_needed,
)


def test_chunks_and_scored_positions_are_llama_perplexitys():
    # whole chunks only (the 20th token is left out), each from an empty cache; with add_bos its first token is the BOS
    assert chunks(list(range(20)), 8) == [list(range(8)), list(range(8, 16))]
    assert chunks(list(range(20)), 8, bos_id=99) == [[99, *range(1, 8)], [99, *range(9, 16)]]
    # first = n_ctx/2: the logits at positions 4, 5, 6 are scored, predicting tokens 5, 6, 7 (n_ctx − 1 − n_ctx/2)
    assert first_scored(8) == 4 and scored_targets(list(range(8))) == [5, 6, 7]
    assert len(scored_targets(list(range(512)))) == 255  # `-c 512`: 255 predictions per chunk
    assert protocol_ctx(2048) == 512 and protocol_ctx(64) == 64 and tokens_needed(512) == 512 * MIN_CHUNKS


def test_a_program_equal_to_its_base_scores_zero_and_a_perturbed_one_does_not():
    rng = np.random.default_rng(0)
    base = [rng.normal(0, 3, (3, 50)) for _ in range(4)]
    targets = [list(rng.integers(0, 50, 3)) for _ in range(4)]
    same = ProtocolMeter(8)
    for b, t in zip(base, targets):
        same.add(b, b.copy(), t)
    r = same.result()
    assert (r.chunks, r.positions) == (4, 12)
    assert r.kld_mean == 0 and r.kld_max == 0 and r.same_top1 == 1.0 and r.ppl_ratio == 1.0 and r.delta_p_mean == 0
    noisy = ProtocolMeter(8)
    others = [b + rng.normal(0, 1, b.shape) for b in base]
    for b, o, t in zip(base, others, targets):
        noisy.add(b, o, t)
    r = noisy.result()
    # against a direct computation: KL(p_base ‖ p_other) per position, its mean and llama.cpp's standard errors
    b, o, t = np.concatenate(base), np.concatenate(others), np.concatenate(targets)
    kl = rel_entr(softmax(b, axis=1), softmax(o, axis=1)).sum(axis=1)
    n = len(kl)
    assert r.kld_mean == pytest.approx(kl.mean(), rel=1e-9) and r.kld_mean > 0.05
    assert r.kld_se == pytest.approx(math.sqrt(kl.var() / (n - 1)), rel=1e-9)
    assert r.kld_max == pytest.approx(kl.max()) and r.kld_median == pytest.approx(np.median(kl))
    p = float((b.argmax(1) == o.argmax(1)).mean())
    assert r.same_top1 == p and r.same_top1_se == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    nll_b = -log_softmax(b, axis=1)[np.arange(n), t]
    nll_o = -log_softmax(o, axis=1)[np.arange(n), t]
    assert r.ppl_base == pytest.approx(math.exp(nll_b.mean())) and r.ppl == pytest.approx(math.exp(nll_o.mean()))
    assert r.ppl_ratio == pytest.approx(r.ppl / r.ppl_base)
    # llama.cpp's form, literally: √(se(ln PPL_Q)² + se(ln PPL_base)² − 2·cov), cov = (Σab/n − ā·b̄)/(n − 1)
    se_q, se_b = math.sqrt(nll_o.var() / (n - 1)), math.sqrt(nll_b.var() / (n - 1))
    cov = ((nll_o * nll_b).mean() - nll_o.mean() * nll_b.mean()) / (n - 1)
    assert r.ppl_ratio_se == pytest.approx(r.ppl_ratio * math.sqrt(se_q**2 + se_b**2 - 2 * cov), rel=1e-9)
    assert r.kld_p99 == pytest.approx(np.percentile(kl, 99))  # linear interpolation, as llama.cpp's percentile
    dp = np.exp(-nll_o) - np.exp(-nll_b)
    assert r.delta_p_mean == pytest.approx(dp.mean()) and r.delta_p_rms == pytest.approx(math.sqrt((dp**2).mean()))
    assert r.delta_p_se == pytest.approx(math.sqrt(dp.var() / (n - 1)))
    assert "mean KLD" in r.summary() and "4 × 8 tokens" in r.summary()


def test_logits_that_cannot_be_compared_are_refused():
    m = ProtocolMeter(8)
    with pytest.raises(ValueError, match="shapes"):
        m.add(np.zeros((3, 5)), np.zeros((3, 6)), [0, 1, 2])
    with pytest.raises(ValueError, match="not finite"):
        m.add(np.zeros((1, 5)), np.full((1, 5), np.nan), [0])
    with pytest.raises(ValueError, match="no chunk"):
        m.result()


def test_the_eval_text_is_cut_as_llama_perplexity_cuts_it(tmp_path):
    """A real tokenizer (a byte-level BPE trained here, with a BOS it adds by itself): the BOS once before the text,
    over each later chunk's first token; whole chunks only; 4 at least, more for a short cache as the text allows."""
    import torch
    from toy_models import tiny_tokenizer

    from edgekit.errors import DataError, UsageError, VerifyError
    from edgekit.pipeline.generation.references import SAMPLE_TEXT_FILE, read_eval_text
    from edgekit.pipeline.generation.verify import check_finite_logits

    tok = tiny_tokenizer(add_bos=True)
    ids = tok(SAMPLE_TEXT_FILE.read_text(), add_special_tokens=False)["input_ids"]
    t = read_eval_text(None, tok, 64)  # a 64-token cache: 31 scored per chunk, 33 chunks for 1,020 predictions
    bos = tok.bos_token_id
    assert t.n_ctx == 64 and len(t.chunks) == 33 and all(len(c) == 64 and c[0] == bos for c in t.chunks)
    assert t.chunks[0] == [bos, *ids[:63]] and t.chunks[1] == [bos, *ids[64:127]]  # ids[63]: under the 2nd BOS
    assert t.ids == ids and "its first 2112 of" in t.source
    assert len(read_eval_text(None, tok, 4096, eval_chunks=4).chunks) == 4  # -c 512: 4 chunks of 512
    short = tmp_path / "short.txt"
    short.write_text(SAMPLE_TEXT_FILE.read_text()[:2000])
    with pytest.raises(DataError, match="scores 4 chunks of 512 tokens"):
        read_eval_text(short, tok, 512)
    with pytest.raises(UsageError, match="--eval-chunks must be an integer ≥ 4"):
        read_eval_text(None, tok, 512, eval_chunks=3)
    # logits that are not finite: named on the side they come from, never a bare ValueError
    good, bad = torch.zeros(2, 5), torch.full((2, 5), float("nan"))
    with pytest.raises(VerifyError, match="program's logits are not finite"):
        check_finite_logits(good, bad)
    with pytest.raises(VerifyError, match="your model's own logits"):
        check_finite_logits(bad, good)
