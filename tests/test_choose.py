"""Choosing tokens from logits: numpy (the CPU's) against mlx-lm's own ops, greedy and
sampled, with top-p, and the inverse-CDF search at block edges."""

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.sample_utils import apply_top_p

from mlx_repair.generation.choose import BLOCK, inverse_cdf, make_chooser, nucleus_floor

VOCAB = 3 * BLOCK + 17  # not a whole number of blocks


def logits(rows: int = 6, seed: int = 0) -> mx.array:
    return mx.array(np.random.default_rng(seed).normal(scale=4.0, size=(rows, VOCAB)).astype(np.float32))


def log_softmax(x: mx.array) -> np.ndarray:
    return np.array(x - mx.logsumexp(x, axis=-1, keepdims=True))


@pytest.mark.parametrize("device", [mx.cpu, mx.gpu])  # numpy, and mlx-lm's sampler (run here on the CPU)
def test_greedy_takes_the_argmax_with_its_log_probability(device):
    x = logits()
    with mx.stream(mx.cpu):
        tokens, logprobs = make_chooser(0.0, device=device)(x)
    expected = log_softmax(x)
    assert tokens == np.argmax(expected, axis=-1).tolist()
    assert logprobs == pytest.approx(expected[np.arange(len(tokens)), tokens].tolist(), abs=1e-5)


def test_samples_follow_the_tempered_distribution_and_carry_the_untempered_log_probability():
    x = mx.array(np.log(np.array([[0.5, 0.3, 0.15, 0.05] + [1e-12] * (VOCAB - 4)], dtype=np.float32)))
    choose = make_chooser(0.5, device=mx.cpu)
    counts = np.zeros(VOCAB)
    for _ in range(4000):
        (token,), (logprob,) = choose(x)
        counts[token] += 1
        assert logprob == pytest.approx(log_softmax(x)[0, token], abs=1e-5)
    tempered = np.array([0.5, 0.3, 0.15, 0.05]) ** 2
    assert counts[:4] / 4000 == pytest.approx(tempered / tempered.sum(), abs=0.03)
    assert counts[4:].sum() == 0


def test_the_same_seed_draws_the_same_tokens():
    x = logits()
    first, second = (make_chooser(1.0, seed=3, device=mx.cpu)(x) for _ in range(2))
    assert first == second != make_chooser(1.0, seed=4, device=mx.cpu)(x)


def test_top_p_keeps_mlx_lms_nucleus():
    x = logits(rows=8, seed=1)
    shifted = np.array(x) - np.array(x).max(axis=-1, keepdims=True)
    for top_p in (0.1, 0.5, 0.9):
        kept = np.array(apply_top_p(mx.array(log_softmax(x)), top_p)) > -np.inf
        assert ((shifted >= nucleus_floor(shifted, top_p)[:, None]) == kept).all()
        tokens, _ = make_chooser(1.0, top_p, device=mx.cpu)(x)
        assert kept[np.arange(len(tokens)), tokens].all()


def test_inverse_cdf_finds_the_token_at_every_block_edge_and_skips_zero_weights():
    weights = np.zeros((1, VOCAB), dtype=np.float32)
    chosen = [0, BLOCK - 1, BLOCK, 2 * BLOCK + 5, VOCAB - 1]
    weights[0, chosen] = 1.0
    for k, token in enumerate(chosen):
        assert inverse_cdf(weights, np.array([(k + 0.5) / len(chosen)])).tolist() == [token]
    assert inverse_cdf(weights, np.array([np.nextafter(1.0, 0.0)])).tolist() == [VOCAB - 1]
