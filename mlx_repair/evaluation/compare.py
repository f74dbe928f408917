"""Compare two evaluation results problem by problem (base vs adapter, or any two runs).

A difference in pass rate on a small set is mostly noise, so the comparison says which
problems moved, how likely that many moves are by chance (exact McNemar; with several
samples per problem, the exact sign test of their shares that passed), and a paired
bootstrap interval for the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlx_repair.errors import UserError
from mlx_repair.evaluation.stats import bootstrap_interval, moved_problems

SCORES = {"cold_pass@1": "cold", "repair_pass@1": "repair", "resample_pass@2": "resample"}
REPAIR_BASELINE = "resample_pass@2"  # what a repair turn must beat: a fresh sample, same calls


@dataclass
class Comparison:
    metric_a: str  # A's metric
    metric_b: str  # B's: the same one, or the repair turn set against A's resampling
    n: int
    a: float
    b: float
    fixed: list[str]
    broken: list[str]
    p_value: float
    interval: tuple[float, float]
    fractional: bool  # several samples per problem: a score is the share that passed

    @property
    def metric(self) -> str:
        """The metric compared, or "A's (A) -> B's (B)" when they differ."""
        return self.metric_a if self.metric_a == self.metric_b else f"{self.metric_a} (A) -> {self.metric_b} (B)"

    def to_dict(self) -> dict:
        return {"metric": self.metric, **self.__dict__}

    def describe(self) -> str:
        low, high = self.interval
        test = "sign test (a problem moved when its share of passing samples did)" if self.fractional else "McNemar"
        return (
            f"{self.metric}: {100 * self.a:.1f}% -> {100 * self.b:.1f}% (n={self.n}); "
            f"fixed {len(self.fixed)}, broken {len(self.broken)}, exact {test} p={self.p_value:.3g}; "
            f"95% bootstrap interval of the difference [{100 * low:+.1f}, {100 * high:+.1f}] points"
        )


def compare_results(a: dict, b: dict) -> list[Comparison]:
    """One comparison per metric present in both results, over the same problems; then,
    when both have them, B's repair turn against A's resampling at the same budget (does
    the adapter's repair reach what the base gets by simply sampling again?)."""
    rows_a = {row["task_id"]: row for row in a["per_problem"]}
    rows_b = {row["task_id"]: row for row in b["per_problem"]}
    if rows_a.keys() != rows_b.keys():
        raise UserError(
            f"the two results cover different problems ({len(rows_a)} vs {len(rows_b)}); "
            "compare runs on the same problem set, side and limit"
        )
    pairs = [(metric, metric) for metric in SCORES] + [(REPAIR_BASELINE, "repair_pass@1")]
    return [
        _compare(metric_a, metric_b, a["metrics"][metric_a], b["metrics"][metric_b], rows_a, rows_b)
        for metric_a, metric_b in pairs
        if metric_a in a["metrics"] and metric_b in b["metrics"]
    ]


def _compare(metric_a: str, metric_b: str, rate_a: float, rate_b: float, rows_a: dict, rows_b: dict) -> Comparison:
    tasks = sorted(rows_a)
    scores_a = [rows_a[t][SCORES[metric_a]] for t in tasks]
    scores_b = [rows_b[t][SCORES[metric_b]] for t in tasks]
    moved = moved_problems(dict(zip(tasks, scores_a)), dict(zip(tasks, scores_b)))
    return Comparison(
        metric_a=metric_a,
        metric_b=metric_b,
        n=len(tasks),
        a=rate_a,
        b=rate_b,
        fixed=moved.fixed,
        broken=moved.broken,
        p_value=moved.p_value,
        interval=bootstrap_interval(scores_a, scores_b),
        fractional=any(s not in (0, 1) for s in scores_a + scores_b),
    )
