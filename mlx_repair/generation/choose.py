"""Each decoding step's tokens, chosen from the model's logits, with their log-probabilities.

mlx-lm's batch generator turns every row of logits into log-probabilities (a
log-sum-exp over the whole vocabulary) and samples with Gumbel noise (a random number
and two logarithms per vocabulary entry). On a GPU that is cheap. On a CPU, MLX runs
these element-wise ops on one core, and its `exp` is about 20x slower than numpy's: at
batch 128 they took as long as the model call itself
(benchmarks/results/sampling_throughput.md). So on the CPU the same choice is made in
numpy, a few rows at a time while they are in cache: the normaliser for the
log-probability, the temperature's weights, and one random number per row found by
inverse CDF through per-block sums (numpy's cumulative sum is 10x slower than its sum,
so only the block holding the token is summed cumulatively). Top-p keeps the same
nucleus as mlx-lm's `apply_top_p`. On a GPU the choice stays on the device, made by
mlx-lm's own sampler.

Both are reproducible from the seed; their random draws differ from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mlx.core as mx
import numpy as np
from mlx_lm.sample_utils import make_sampler

# (batch, vocabulary) logits -> each row's token and its log-probability under the model.
Chooser = Callable[[mx.array], tuple[list[int], list[float]]]

BLOCK = 256  # vocabulary entries per block in the inverse-CDF search
CACHED_BYTES = 1 << 21  # logits handled at once: about what a core's cache holds


def make_chooser(temperature: float, top_p: float = 1.0, seed: int = 0, device: mx.Device | None = None) -> Chooser:
    """Greedy at temperature 0, else sampling at `temperature` from the top-p nucleus
    (1.0: the whole distribution); numpy on the CPU, MLX on other devices."""
    if (device or mx.default_device()) == mx.cpu:
        return NumpyChooser(temperature, top_p, np.random.default_rng(seed))
    return _mlx_chooser(temperature, top_p, seed)


def _mlx_chooser(temperature: float, top_p: float, seed: int) -> Chooser:
    mx.random.seed(seed)
    sampler = make_sampler(temperature, top_p)

    def choose(logits: mx.array) -> tuple[list[int], list[float]]:
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        tokens = sampler(logprobs)
        chosen = mx.take_along_axis(logprobs, tokens[:, None], axis=-1)[:, 0]
        mx.eval(tokens, chosen)
        return tokens.tolist(), chosen.tolist()

    return choose


@dataclass
class NumpyChooser:
    temperature: float
    top_p: float
    rng: np.random.Generator

    def __call__(self, logits: mx.array) -> tuple[list[int], list[float]]:
        logits = logits.astype(mx.float32)
        mx.eval(logits)
        rows = np.asarray(logits)  # a view of MLX's buffer, not a copy
        uniforms = self.rng.random(len(rows))
        step = max(1, CACHED_BYTES // rows[0].nbytes)
        tokens, logprobs = [], []
        for start in range(0, len(rows), step):
            chosen, chosen_logprobs = self._choose(rows[start : start + step], uniforms[start : start + step])
            tokens += chosen
            logprobs += chosen_logprobs
        return tokens, logprobs

    def _choose(self, logits: np.ndarray, uniforms: np.ndarray) -> tuple[list[int], list[float]]:
        shifted = logits - logits.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        log_norm = np.log(exp.sum(axis=-1))
        if self.temperature == 0:
            tokens = shifted.argmax(axis=-1)
        else:
            weights = exp if self.temperature == 1 else np.exp(shifted * (1 / self.temperature))
            if 0 < self.top_p < 1:
                weights[shifted < nucleus_floor(shifted, self.top_p)[:, None]] = 0
            tokens = inverse_cdf(weights, uniforms)
        chosen = np.take_along_axis(shifted, tokens[:, None], axis=-1)[:, 0] - log_norm
        return tokens.tolist(), chosen.tolist()


def nucleus_floor(shifted: np.ndarray, top_p: float) -> np.ndarray:
    """Per row, the smallest value mlx-lm's `apply_top_p` keeps: a token is dropped when
    the tokens more likely than it already hold `top_p` of the probability."""
    ordered = np.sort(shifted, axis=-1)
    probs = np.exp(ordered)
    total = probs.sum(axis=-1, keepdims=True)
    mass_above = total - np.cumsum(probs, axis=-1)
    dropped = (mass_above >= top_p * total).sum(axis=-1)
    return np.take_along_axis(ordered, dropped[:, None], axis=-1)[:, 0]


def inverse_cdf(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Per row, the first token whose cumulative weight exceeds uniform x the row's total:
    the block first, from the cumulative sum of per-block sums, then the token within it."""
    starts = np.arange(0, weights.shape[-1], BLOCK)
    blocks = np.cumsum(np.add.reduceat(weights, starts, axis=-1, dtype=np.float64), axis=-1)
    tokens = np.empty(len(weights), dtype=np.int64)
    for row, (cumulative, uniform) in enumerate(zip(blocks, uniforms)):
        target = uniform * cumulative[-1]
        # At most the last block holding any weight, should rounding put the target past it.
        last = np.searchsorted(cumulative, cumulative[-1], side="left")
        block = int(min(np.searchsorted(cumulative, target, side="right"), last))
        inside = weights[row, starts[block] : starts[block] + BLOCK]
        before = cumulative[block - 1] if block else 0.0
        index = int(np.searchsorted(np.cumsum(inside, dtype=np.float64), target - before, side="right"))
        if index == inside.size:  # rounding put the target at the block's very end
            index = int(np.flatnonzero(inside)[-1])
        tokens[row] = starts[block] + index
    return tokens
