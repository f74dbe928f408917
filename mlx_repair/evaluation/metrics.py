"""Turn a run's stored attempts into the numbers we report, problem by problem.

Per problem and per draft chain s (draft s, its repairs, its resample):
- cold: draft s passed;
- repair@1: draft s passed, or its first repair passed (on all cases, hidden included);
- resample@2: draft s passed, or one independent fresh sample passed: the same number of
  model calls as repair@1, so the honest baseline (Olausson et al.);
- pass@k: the unbiased estimator over the n drafts (only for k with n >= 2k);
- oracle: any attempt of any kind passed.
Averaging over chains gives each problem a score in [0, 1]; the metric is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlx_repair.problems import Problem
from mlx_repair.evaluation.stats import mean_pass_at_k
from mlx_repair.mining.store import Attempt, Store

METRIC_LABELS = {
    "cold_pass@1": "cold pass@1",
    "repair_pass@1": "pass@1 after one repair turn",
    "resample_pass@2": "resampling, same budget (pass@2)",
    "oracle": "oracle (any attempt passed)",
    "first_pass@1": "first sample (cold, same N)",
}
SELECTED = "_pass@1"  # after a selection strategy's name


@dataclass
class ProblemResult:
    task_id: str
    drafts: int
    drafts_passed: int
    cold: float
    repair: float | None
    resample: float | None
    oracle: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def problem_result(task_id: str, attempts: list[Attempt]) -> ProblemResult:
    drafts = sorted((a for a in attempts if a.kind == "draft"), key=lambda a: a.sample_index)
    if not drafts:
        raise ValueError(f"{task_id}: no drafts stored")
    passed = {(a.kind, a.sample_index, a.round) for a in attempts if a.passed}
    has = {(a.kind, a.sample_index, a.round) for a in attempts}

    def chain_score(kind: str) -> float | None:
        if not any(k == kind for k, _, _ in has) and not all(d.passed for d in drafts):
            return None
        wins = [d.passed or (kind, d.sample_index, 1) in passed for d in drafts]
        return sum(wins) / len(wins)

    return ProblemResult(
        task_id=task_id,
        drafts=len(drafts),
        drafts_passed=sum(d.passed for d in drafts),
        cold=sum(d.passed for d in drafts) / len(drafts),
        repair=chain_score("repair"),
        resample=chain_score("resample"),
        oracle=bool(passed),
    )


def summarize(store: Store, problems: list[Problem]) -> tuple[dict, list[ProblemResult]]:
    """Metrics over `problems` (every one must have drafts) and the per-problem table."""
    rows = [problem_result(p.task_id, store.attempts(p.task_id)) for p in problems]
    n = len(rows)
    metrics: dict[str, float] = {"cold_pass@1": sum(r.cold for r in rows) / n}
    for key, attr in (("repair_pass@1", "repair"), ("resample_pass@2", "resample")):
        scores = [getattr(r, attr) for r in rows]
        if all(s is not None for s in scores):
            metrics[key] = sum(scores) / n
    samples = min(r.drafts for r in rows)
    for k in (2, 5, 10, 20, 50, 100):
        if samples >= 2 * k:
            metrics[f"pass@{k}"] = mean_pass_at_k([(r.drafts, r.drafts_passed) for r in rows], k)
    metrics["oracle"] = sum(r.oracle for r in rows) / n
    return metrics, rows


def gains_over_cold(rows: list[ProblemResult], attr: str) -> list[str]:
    """Problems whose `attr` score beats the cold score: what repair or resampling bought."""
    return [r.task_id for r in rows if getattr(r, attr) is not None and getattr(r, attr) > r.cold]


def format_metric(key: str, value: float, n: int) -> str:
    return f"{metric_label(key):<36} {format_value(value, n)}"


def metric_label(key: str) -> str:
    """The words for a metric: its label, "selected by S" for a selection strategy's
    pass@1 (evaluation/selection.py), or the key itself (pass@k)."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    if key.endswith(SELECTED):
        return f"selected by {key.removesuffix(SELECTED)} (pass@1)"
    return key


def format_value(value: float, n: int) -> str:
    """A rate with the n it is measured on: 3 of 10 and 30 of 100 are not the same news."""
    count = problem_count(value, n)
    return f"{100 * value:5.1f}%  (n={n}, {problems(count)})"


def problems(count) -> str:
    """'1 problem', '14 problems': a count of problems as the reports print it."""
    return f"{count} problem{'' if str(count) == '1' else 's'}"


def format_rate(value: float | None, n: int) -> str:
    """A table cell: the rate and its problems out of n ("-" when not measured)."""
    return "-" if value is None else f"{100 * value:.1f}% ({problem_count(value, n)}/{n})"


def problem_count(value: float, n: int) -> str:
    """How many problems a rate over n is: whole, or with one decimal when it is a mean
    over several samples per problem (pass@k)."""
    count = value * n
    return f"{count:.0f}" if abs(count - round(count)) < 1e-6 else f"{count:.1f}"
