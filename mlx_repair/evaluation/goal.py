"""Did the adapter do what it is for? The goal of training, stated whichever way it falls.

An adapter is worth loading when its repair turn solves more than the base's does (not
by chance), it does not make the first draft worse, and one repair turn with it reaches
what the base gets by simply sampling again with the same number of model calls. A loss
curve or a rate a few points up on a few dozen problems says none of this: each part is
judged on the problems that moved between base (A) and adapter (B), from
`compare.compare_results`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mlx_repair.evaluation.compare import REPAIR_BASELINE, Comparison

SIGNIFICANCE = 0.05  # the p a repair gain must stay under to count as more than chance


@dataclass
class GoalPart:
    claim: str
    met: bool | None  # None: the run did not measure it
    evidence: str

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        status = {True: "met", False: "NOT met", None: "not measured"}[self.met]
        return f"{self.claim}: {status}" + (f" ({self.evidence})" if self.evidence else "")


def adapter_goal(comparisons: list[Comparison]) -> list[GoalPart]:
    """The three parts, from the comparisons of base (A) and base + adapter (B)."""
    by_metrics = {(c.metric_a, c.metric_b): c for c in comparisons}
    return [
        _part(
            f"1. its repair pass@1 beats the base's (p < {SIGNIFICANCE})",
            by_metrics.get(("repair_pass@1", "repair_pass@1")),
            lambda c: c.b > c.a and c.p_value < SIGNIFICANCE,
        ),
        _part(
            "2. its cold pass@1 is not lower (broken <= fixed)",
            by_metrics.get(("cold_pass@1", "cold_pass@1")),
            lambda c: len(c.broken) <= len(c.fixed),
        ),
        _part(
            "3. with one repair turn it reaches the base's resampling at the same budget",
            by_metrics.get((REPAIR_BASELINE, "repair_pass@1")),
            lambda c: c.b >= c.a,
        ),
    ]


def _part(claim: str, comparison: Comparison | None, rule) -> GoalPart:
    if comparison is None:
        return GoalPart(claim, None, "")
    c = comparison
    evidence = f"{100 * c.a:.1f}% -> {100 * c.b:.1f}%, n={c.n}, fixed {len(c.fixed)}, broken {len(c.broken)}, p={c.p_value:.3g}"
    return GoalPart(claim, rule(c), evidence)


def goal_dict(parts: list[GoalPart]) -> dict:
    """The parts and the verdict, as report.json (and the model card reading it) keep them."""
    return {"parts": [part.to_dict() for part in parts], "verdict": verdict(parts)}


def verdict(parts: list[GoalPart]) -> str:
    """One sentence a user can act on."""
    repair, cold, budget = parts
    if all(part.met for part in parts):
        return "The adapter met the goal: its repair turn measurably beats the base's. Use it."
    if cold.met is False:
        return ("The adapter broke more first drafts than it fixed: keep the base model "
                "(with n this small, more problems would tell whether the loss is real).")
    if None in (repair.met, cold.met, budget.met):
        return "The goal was not fully measured: evaluate base and adapter with a repair turn and resampling."
    if repair.met:
        return ("Its repair turn beats the base's, but the base sampling again with the same calls "
                "does as well: the adapter saves nothing over resampling.")
    return ("No measurable gain over the base model on these problems: the base, sampling again "
            "when a draft fails, does as well.")
