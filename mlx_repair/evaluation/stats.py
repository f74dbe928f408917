"""The statistics behind every number mlx-repair prints; pure functions, no I/O.

Small evaluation sets mislead easily ("+3 points" on 30 problems is one problem), so
results are compared problem by problem: which ones moved, an exact McNemar test on the
discordant pairs, and a paired bootstrap interval for the difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import comb

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al. 2021):
    1 - C(n-c, k) / C(n, k), the chance that k of the n samples include a pass."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(counts: list[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (n samples, c passed)."""
    if not counts:
        raise ValueError("no problems to average over")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: under 'no difference' each of the fixed + broken
    discordant problems is a fair coin flip, so p is a binomial tail, doubled."""
    if fixed < 0 or broken < 0:
        raise ValueError("counts must be non-negative")
    discordant = fixed + broken
    if discordant == 0:
        return 1.0
    tail = sum(comb(discordant, i) for i in range(min(fixed, broken) + 1)) / 2**discordant
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Moved:
    """How two systems differ on the same problems. With one sample per problem a score is
    pass or fail and p is McNemar's exact test; with several it is the share that passed,
    a problem moves when its share rose or fell, and the same binomial is the exact sign
    test of the paired differences."""

    fixed: list[str]  # scored higher under B than under A
    broken: list[str]  # scored lower under B than under A
    n: int

    @property
    def p_value(self) -> float:
        return mcnemar_exact(len(self.fixed), len(self.broken))


def moved_problems(a: dict[str, float], b: dict[str, float]) -> Moved:
    """Compare per-problem scores (pass/fail, or a share of samples that passed); both
    must cover the same task ids."""
    if a.keys() != b.keys():
        only = sorted(set(a) ^ set(b))[:3]
        raise ValueError(f"results cover different problems (e.g. {', '.join(only)})")
    fixed = sorted(t for t in a if b[t] > a[t])
    broken = sorted(t for t in a if b[t] < a[t])
    return Moved(fixed=fixed, broken=broken, n=len(a))


def bootstrap_interval(
    a: list[float], b: list[float], rounds: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of mean(b) - mean(a), resampling problems with replacement
    (paired: one draw picks the same problem for both systems)."""
    if len(a) != len(b) or not a:
        raise ValueError("need two equally long, non-empty lists of per-problem scores")
    diffs = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, len(diffs), size=(rounds, len(diffs)))
    means = diffs[draws].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve: the chance that a random passing sample scores above a
    random failing one, ties counting half (the Mann-Whitney U over both counts). It
    judges a critic's ranking whatever its calibration. None with one label only: there
    is nothing to rank."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    positive = np.asarray(labels, dtype=bool)
    passed, failed = int(positive.sum()), int((~positive).sum())
    if not passed or not failed:
        return None
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based, ties sharing their mean rank
    rank_sum = mean_rank[inverse][positive].sum()
    return float((rank_sum - passed * (passed + 1) / 2) / (passed * failed))


def within_group_auroc(groups: Iterable[tuple[list[float], list[bool]]]) -> tuple[float | None, int]:
    """The mean AUROC within each group (a problem's samples) that holds both labels, and
    how many groups did. Selection ranks one problem's samples only, so this is the
    critic's measure for it: a score that knows which problems are hard, and nothing
    about which sample of a problem passes, ranks well over all samples and at chance
    here. (None, 0) when no group has both labels."""
    values = [value for scores, labels in groups if (value := auroc(scores, labels)) is not None]
    return (float(np.mean(values)), len(values)) if values else (None, 0)
