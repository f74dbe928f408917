"""Selection: one of a problem's N samples, chosen without looking at its hidden cases.

A user who has tests wants the sample that passes them, and at 0.5-1.5B choosing among
samples is the cheapest honest gain (a generator, an executor and a chooser). The
strategies (`PICKERS`; `config.SELECT_STRATEGIES` names them):
- first: the first sample, the cold baseline at the same number of samples;
- visible: among the samples that pass every visible case, the most likely (highest
  mean token log-probability);
- agreement: the samples that pass the visible cases, grouped by what they return on
  extra inputs (`probes`); the largest group wins, ties going to the group holding the
  most likely sample, and within it the most likely sample is picked;
- critic: the sample a critic trained on execution labels (training/critic.py) scores
  highest, whatever its visible cases say: the critic alone is what is measured. Its
  AUROC over all the samples, against their verdicts on all cases, is reported beside,
  and its AUROC within a problem: a critic that only knows which problems are hard
  scores well over all samples and chooses no better than chance.
When no sample passes the visible cases, `visible` and `agreement` pick the most likely
sample: it fails a visible case, so it fails whichever is picked.

A selector sees a `Candidate`: the visible cases' verdict, the likelihood, the
behaviour on extra inputs and the critic's score, never a hidden case. The selected sample then counts as
passing only if it passed every case, hidden ones included, as every sample was judged.
The result reports, beside cold pass@1, each strategy's pass@1 with the problems it moved
against `first` (exact McNemar p), the oracle pass@N (any sample passed) and the share of
the oracle gap each strategy recovers. A new strategy is one function in `PICKERS` and
its name in `config.SELECT_STRATEGIES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from mlx_repair.evaluation.metrics import SELECTED, format_rate
from mlx_repair.evaluation.probes import make_probe, run_probes
from mlx_repair.evaluation.stats import auroc, moved_problems, within_group_auroc
from mlx_repair.mining.store import Attempt, Store
from mlx_repair.problems import Problem


@dataclass(frozen=True)
class Candidate:
    """One sample as a selector sees it."""

    sample_index: int
    logprob: float | None  # mean token log-probability (None: the writer did not say)
    visible_passed: bool  # passed every visible case
    behaviour: tuple[str, ...] = ()  # what it did on each extra input (probes.behaviour)
    score: float | None = None  # the critic's probability that it passes (None: no critic)

    @classmethod
    def of(cls, draft: Attempt, behaviour: tuple[str, ...] = (), score: float | None = None) -> "Candidate":
        return cls(draft.sample_index, draft.logprob, passes_visible(draft.verdict), behaviour, score)


def passes_visible(verdict: dict) -> bool:
    """Every visible case passed (and there was one): all a user's own tests can tell."""
    visible = [case for case in verdict.get("cases", []) if not case["hidden"]]
    return bool(visible) and all(case["passed"] for case in visible)


def _likelihood(candidate: Candidate) -> tuple[float, int]:
    """Sort key: more likely first, then the earlier sample (also when likelihood is unknown)."""
    logprob = -math.inf if candidate.logprob is None else candidate.logprob
    return (logprob, -candidate.sample_index)


def most_likely(candidates: list[Candidate]) -> Candidate:
    return max(candidates, key=_likelihood)


def eligible(candidates: list[Candidate]) -> list[Candidate]:
    """The samples passing the visible cases, or all when none does."""
    return [c for c in candidates if c.visible_passed] or candidates


def agreement_groups(candidates: list[Candidate]) -> list[list[Candidate]]:
    """The eligible samples grouped by identical behaviour on the extra inputs, best first:
    larger groups, then (on a tie) the group holding the more likely sample."""
    groups: dict[tuple[str, ...], list[Candidate]] = {}
    for candidate in eligible(candidates):
        groups.setdefault(candidate.behaviour, []).append(candidate)
    return sorted(groups.values(), key=lambda group: (len(group), _likelihood(most_likely(group))), reverse=True)


def pick_first(candidates: list[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: c.sample_index)


def pick_visible(candidates: list[Candidate]) -> Candidate:
    return most_likely(eligible(candidates))


def pick_agreement(candidates: list[Candidate]) -> Candidate:
    return most_likely(agreement_groups(candidates)[0])


def pick_critic(candidates: list[Candidate]) -> Candidate:
    """The critic's highest score; ties go to the more likely sample."""
    return max(candidates, key=lambda c: (-math.inf if c.score is None else c.score, *_likelihood(c)))


PICKERS: dict[str, Callable[[list[Candidate]], Candidate]] = {
    "first": pick_first,
    "visible": pick_visible,
    "agreement": pick_agreement,
    "critic": pick_critic,
}


def choose(candidates: list[Candidate], strategies: tuple[str, ...]) -> dict[str, int]:
    """{strategy: the sample index it picks}."""
    return {strategy: PICKERS[strategy](candidates).sample_index for strategy in strategies}


def gap_share(first: int, selected: int, oracle: int) -> float | None:
    """The share of the oracle gap (problems some sample solves but the first does not)
    that a strategy closes; None when there is no gap to close."""
    return (selected - first) / (oracle - first) if oracle > first else None


@dataclass
class StrategyResult:
    """One line of the side-by-side: a strategy (or the oracle) against `first`."""

    strategy: str
    n: int
    passed: int
    fixed: list[str]  # failed under `first`, passed under this strategy
    broken: list[str]
    p_value: float  # exact McNemar against `first`
    gap_share: float | None

    @property
    def rate(self) -> float:
        return self.passed / self.n

    def to_dict(self) -> dict:
        return {**self.__dict__, "pass@1": self.rate}


def strategy_results(outcomes: dict[str, dict[str, bool]], oracle: dict[str, bool]) -> list[StrategyResult]:
    """Each strategy's per-problem outcomes, then the oracle's, against the first sample's."""
    first = outcomes["first"]
    results = []
    for strategy, passed in [*outcomes.items(), ("oracle", oracle)]:
        moved = moved_problems(first, passed)
        share = gap_share(sum(first.values()), sum(passed.values()), sum(oracle.values()))
        results.append(StrategyResult(
            strategy, moved.n, sum(passed.values()), moved.fixed, moved.broken, moved.p_value, share
        ))
    return results


def candidate_rows(drafts: list[Attempt], picks: dict[str, int], scores: dict[int, float] | None = None) -> list[dict]:
    """A problem's samples as the result and the TUI list them: likelihood, the critic's
    score (by sample index, when there is a critic), the verdict on the visible cases and
    on all cases, and the strategies that picked each one."""
    rows = []
    for draft in sorted(drafts, key=lambda d: d.sample_index):
        cases = draft.verdict.get("cases", [])
        visible = [case for case in cases if not case["hidden"]]
        rows.append({
            "sample": draft.sample_index,
            "logprob": draft.logprob,
            "critic": (scores or {}).get(draft.sample_index),
            "visible": f"{sum(c['passed'] for c in visible)}/{len(visible)}",
            "visible_passed": passes_visible(draft.verdict),
            "all": f"{sum(c['passed'] for c in cases)}/{len(cases)}",
            "passed": draft.passed,
            "status": draft.status,
            "picked_by": picked_by(picks, draft.sample_index),
        })
    return rows


def picked_by(picks: dict[str, int], sample_index: int) -> list[str]:
    """The strategies whose pick ({strategy: sample index}) is this sample."""
    return [strategy for strategy, sample in picks.items() if sample == sample_index]


@dataclass
class ProblemSelection:
    task_id: str
    extra_inputs: tuple[str, ...]
    picks: dict[str, int]
    candidates: list[dict]  # candidate_rows


@dataclass
class Selection:
    """What `select_samples` found: the side-by-side and the per-problem table."""

    samples: int
    strategies: tuple[str, ...]
    results: list[StrategyResult]
    problems: list[ProblemSelection] = field(default_factory=list)
    # The critic's ranking of every sample against its verdict on all cases:
    # {"auroc", "samples", "passed"} (None: no critic, or one label only for "auroc").
    critic: dict | None = None

    def metric(self, result: StrategyResult) -> str:
        """The key of a result in the evaluation's "metrics": a strategy's pass@1, or the
        oracle's pass@N."""
        return f"pass@{self.samples}" if result.strategy == "oracle" else f"{result.strategy}{SELECTED}"

    def metrics(self) -> dict[str, float]:
        return {self.metric(r): r.rate for r in self.results}

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "strategies": list(self.strategies),
            "results": [{**r.to_dict(), "metric": self.metric(r)} for r in self.results],
            "problems": [p.__dict__ for p in self.problems],
            "critic": self.critic,
        }


def selection_markdown(selection: dict, system: str) -> list[str]:
    """A result's selection (`Selection.to_dict`) as markdown lines for a report: each
    strategy against the first sample, then every problem's candidates."""
    samples = selection["samples"]
    lines = [
        f"## Selection among {samples} samples: {system}",
        "",
        "| strategy | pass@1 | fixed / broken vs first | McNemar p | oracle gap closed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in selection["results"]:
        name = f"oracle (pass@{samples})" if r["strategy"] == "oracle" else r["strategy"]
        share = "-" if r["gap_share"] is None else f"{100 * r['gap_share']:.0f}%"
        lines.append(f"| {name} | {format_rate(r['pass@1'], r['n'])} | {len(r['fixed'])} / {len(r['broken'])} "
                     f"| {r['p_value']:.3g} | {share} |")
    if selection.get("critic"):
        lines += ["", critic_line(selection["critic"])]
    lines += [
        "",
        "| problem | sample | log p | visible cases | all cases | picked by |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for problem in selection["problems"]:
        for row in problem["candidates"]:
            logprob = "-" if row["logprob"] is None else f"{row['logprob']:.3f}"
            outcome = "pass" if row["passed"] else row["status"]
            lines.append(f"| {problem['task_id']} | {row['sample']} | {logprob} | {row['visible']} "
                         f"| {row['all']} {outcome} | {', '.join(row['picked_by'])} |")
    return lines + [""]


def critic_line(critic: dict) -> str:
    """The critic's AUROC with what it is measured on."""
    value = "- (one label only)" if critic["auroc"] is None else f"{critic['auroc']:.3f}"
    failed = critic["samples"] - critic["passed"]
    line = f"critic AUROC {value} on {critic['samples']} samples ({critic['passed']} passing, {failed} failing)"
    if "within_problem_auroc" not in critic:  # a result written before it was measured
        return line
    return line + within_clause(critic["within_problem_auroc"], critic["problems_with_both"])


def within_clause(value: float | None, problems: int) -> str:
    """A critic's AUROC within a problem, as a clause of the line that gives its AUROC."""
    if value is None:
        return "; within a problem: - (no problem has both labels)"
    return f"; within a problem {value:.3f} (mean over the {problems} problems with both labels: what selection uses)"


def select_samples(
    problems: list[Problem], store: Store, pool, strategies: tuple[str, ...],
    critic: Callable[[Problem, list[str]], list[float]] | None = None,
) -> Selection:
    """Choose among each problem's drafts by every strategy, store the picks, and measure
    them. Agreement runs the samples that pass the visible cases on extra inputs in
    `pool` (a `sandbox.Pool`); the critic strategy scores a problem's drafts with
    `critic(problem, codes)`."""
    drafts = {p.task_id: [a for a in store.attempts(p.task_id) if a.kind == "draft"] for p in problems}
    probes = {p.task_id: make_probe(p) for p in problems} if "agreement" in strategies else {}
    behaviours = _behaviours(probes, drafts, pool) if probes else {}
    scores = _scores(problems, drafts, critic) if "critic" in strategies else {}
    chosen = []
    for problem in problems:
        task_id = problem.task_id
        candidates = [
            Candidate.of(d, behaviours.get((task_id, d.sample_index), ()), scores.get((task_id, d.sample_index)))
            for d in drafts[task_id]
        ]
        picks = choose(candidates, strategies)
        store.save_picks(task_id, picks)
        inputs = probes[task_id].inputs if probes.get(task_id) else ()
        by_sample = {c.sample_index: c.score for c in candidates if c.score is not None}
        chosen.append(ProblemSelection(task_id, inputs, picks, candidate_rows(drafts[task_id], picks, by_sample)))
    results = _results(chosen, drafts, strategies)
    return Selection(min(map(len, drafts.values())), strategies, results, chosen, _critic_summary(scores, drafts))


def _scores(problems: list[Problem], drafts: dict[str, list[Attempt]], critic) -> dict[tuple[str, int], float]:
    """{(task id, sample index): the critic's score} of every draft."""
    if critic is None:
        raise ValueError("the critic strategy needs a critic")
    scores = {}
    for problem in problems:
        samples = drafts[problem.task_id]
        scores.update(zip([(problem.task_id, d.sample_index) for d in samples], critic(problem, [d.code for d in samples])))
    return scores


def _critic_summary(scores: dict[tuple[str, int], float], drafts: dict[str, list[Attempt]]) -> dict | None:
    """The critic's AUROC over every scored draft, against its verdict on all cases, and
    within each problem (what choosing among a problem's samples depends on)."""
    if not scores:
        return None
    groups = [
        ([scores[d.task_id, d.sample_index] for d in task_drafts], [d.passed for d in task_drafts])
        for task_drafts in drafts.values()
    ]
    ranked, passed = [s for g, _ in groups for s in g], [p for _, labels in groups for p in labels]
    within, problems = within_group_auroc(groups)
    return {
        "auroc": auroc(ranked, passed), "samples": len(passed), "passed": sum(passed),
        "within_problem_auroc": within, "problems_with_both": problems,
    }


def _behaviours(probes: dict, drafts: dict[str, list[Attempt]], pool) -> dict:
    """{(task id, sample index): behaviour} of every sample that passes its problem's
    visible cases, on its problem's extra inputs; run in the sandbox."""
    jobs = [
        ((task_id, draft.sample_index), probe, draft.code)
        for task_id, probe in probes.items() if probe is not None
        for draft in drafts[task_id] if passes_visible(draft.verdict)
    ]
    return run_probes(pool, jobs)


def _results(chosen: list[ProblemSelection], drafts: dict[str, list[Attempt]], strategies) -> list[StrategyResult]:
    """Whether each strategy's pick passed all cases, hidden included, problem by problem."""
    passed = {task_id: {d.sample_index: d.passed for d in task_drafts} for task_id, task_drafts in drafts.items()}
    outcomes = {
        strategy: {c.task_id: passed[c.task_id][c.picks[strategy]] for c in chosen} for strategy in strategies
    }
    oracle = {task_id: any(by_sample.values()) for task_id, by_sample in passed.items()}
    return strategy_results(outcomes, oracle)
