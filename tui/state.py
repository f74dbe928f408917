"""What the TUI knows about a run, built only from the core's events.

A live job and a replayed store feed the same `RunState.apply`, so the screen of a
finished run is the screen the live run ended on. Each loop stage of a job (StageStarted)
gets its own problems, attempts and counters, kept for the user to go back to. Pure
logic, no Textual: the status of a problem and the counters are tested without a terminal.
"""

from __future__ import annotations

import time
from dataclasses import InitVar, dataclass, field

from mlx_repair.evaluation.metrics import problem_result
from mlx_repair.evaluation.selection import candidate_rows, picked_by
from mlx_repair.events import (
    AttemptFinished,
    Generating,
    PairSaved,
    PartialText,
    Prefilling,
    Progress,
    Selected,
    StageFinished,
    StageStarted,
    TrainStep,
    event_line,
)
from mlx_repair.mining.store import PAIR_KINDS, Attempt

STATUSES = ("pending", "drafting", "passed", "failed", "repaired", "given up")
MARKS = {
    "pending": ("·", "dim"),
    "drafting": ("…", "yellow"),
    "passed": ("✓", "green"),
    "failed": ("✗", "red"),
    "repaired": ("↻", "cyan"),
    "given up": ("⊘", "magenta"),
}
CHAIN_ORDER = {"draft": 0, "repair": 1, "resample": 2}  # within one draft chain
# Loss points kept for the chart: enough to see a trend, bounded for a long training.
MAX_TRAIN_POINTS = 2000


@dataclass(frozen=True)
class Plan:
    """What the run will do, when known before its events say it: the problems in order
    (so the ones not reached yet show as pending) and the repair rounds per draft (so a
    problem whose last repair failed shows as given up, not as waiting for one)."""

    task_ids: tuple[str, ...] = ()
    rounds: int | None = None


def problem_status(attempts: list[Attempt], drafting: bool, rounds: int | None, finished: bool) -> str:
    drafts = [a for a in attempts if a.kind == "draft"]
    if not drafts:
        return "drafting" if drafting else "pending"
    if any(d.passed for d in drafts):
        return "passed"
    if any(a.passed for a in attempts if a.kind == "repair"):
        return "repaired"
    if finished or (rounds is not None and _chains_exhausted(attempts, drafts, rounds)):
        return "given up"
    return "failed"


def _chains_exhausted(attempts: list[Attempt], drafts: list[Attempt], rounds: int) -> bool:
    last_round = {d.sample_index: 0 for d in drafts}
    for a in attempts:
        if a.kind == "repair":
            last_round[a.sample_index] = max(last_round.get(a.sample_index, 0), a.round)
    return all(r >= rounds for r in last_round.values())


@dataclass
class Counters:
    drafted: int = 0
    cold: float = 0.0  # problems solved by their drafts (a share of chains per problem)
    after_repair: float = 0.0  # ... or by the first repair of a failing chain
    pairs: dict = field(default_factory=dict)


@dataclass
class StageState:
    """One loop stage of a job: its problems, their attempts and what the model is writing
    for them. `train` runs several (evaluate the base, mine, evaluate the adapter), each on
    its own problems, and the two evaluations share task ids: kept apart, each stage's list
    and counters mean what they say."""

    plan: Plan = field(default_factory=Plan)
    name: str = ""  # "" until the stage's StageStarted arrives
    order: list[str] = field(default_factory=list)
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    drafting: set[str] = field(default_factory=set)
    pairs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PAIR_KINDS, 0))
    writing: dict[tuple, PartialText] = field(default_factory=dict)  # by attempt key, until it is stored
    picks: dict[str, dict[str, int]] = field(default_factory=dict)  # {task id: {strategy: sample index}}
    done: bool = False  # no attempt is coming any more: a failed chain has given up

    def __post_init__(self) -> None:
        self._add_problems(self.plan.task_ids)

    def _add_problems(self, task_ids) -> None:
        for task_id in task_ids:
            if task_id not in self.attempts:
                self.attempts[task_id] = []
                self.order.append(task_id)

    def apply(self, event: object) -> str | None:
        """Take one of the loop's events in; returns the task id whose attempts (or text
        being written) changed, if any."""
        if isinstance(event, AttemptFinished):
            attempt = event.attempt
            self._add_problems([attempt.task_id])
            known = self.attempts[attempt.task_id]
            if all(a.id != attempt.id for a in known):
                known.append(attempt)
            self.drafting.discard(attempt.task_id)
            self.writing.pop(attempt.key, None)
            return attempt.task_id
        if isinstance(event, PartialText):
            self._add_problems([event.task_id])
            self.writing[event.key] = event
            return event.task_id
        if isinstance(event, Selected):
            self.picks[event.task_id] = dict(event.picks)
            return event.task_id
        if isinstance(event, Plan):
            self.plan = event
            self._add_problems(event.task_ids)
        elif isinstance(event, Generating):
            self._add_problems(event.task_ids)
            if event.kind == "draft":
                self.drafting.update(event.task_ids)
        elif isinstance(event, PairSaved):
            self.pairs.update(event.counts)
        return None

    def finish(self) -> None:
        self.done = True
        self.writing.clear()  # outputs a stopped job never finished

    def status(self, task_id: str) -> str:
        return problem_status(self.attempts.get(task_id, []), task_id in self.drafting, self.plan.rounds, self.done)

    def counters(self) -> Counters:
        results = [problem_result(t, self.attempts[t]) for t in self.order if _has_draft(self.attempts[t])]
        return Counters(
            drafted=len(results),
            cold=sum(r.cold for r in results),
            after_repair=sum(r.cold if r.repair is None else r.repair for r in results),
            pairs=dict(self.pairs),
        )

    def history(self, task_id: str) -> list[Attempt]:
        """A problem's attempts in the order a reader follows them: each draft chain
        (draft, its repairs, its resample) in turn."""
        return sorted(self.attempts.get(task_id, []), key=_chain_order)

    def drafts(self, task_id: str) -> list[Attempt]:
        return [a for a in self.attempts.get(task_id, []) if a.kind == "draft"]

    def candidates(self, task_id: str) -> list[dict]:
        """A problem's samples, their verdicts on visible and on all cases, and which
        strategy picked each (`selection.candidate_rows`, as `eval --json` has them)."""
        return candidate_rows(self.drafts(task_id), self.picks.get(task_id, {}))

    def picked_by(self, attempt: Attempt) -> list[str]:
        """The selection strategies that picked this attempt (a draft) of its problem."""
        if attempt.kind != "draft":
            return []
        return picked_by(self.picks.get(attempt.task_id, {}), attempt.sample_index)

    def parent(self, attempt: Attempt) -> Attempt | None:
        """The broken attempt a repair (or resample) started from."""
        return next((a for a in self.attempts.get(attempt.task_id, []) if a.id == attempt.parent_id), None)

    def partial(self, task_id: str) -> PartialText | None:
        """The text being written for a problem: its first chain's, when several are."""
        texts = [p for p in self.writing.values() if p.task_id == task_id]
        return min(texts, key=_chain_order, default=None)


def _chain_order(item: Attempt | PartialText) -> tuple:
    return (item.sample_index, CHAIN_ORDER.get(item.kind, len(CHAIN_ORDER)), item.round)


@dataclass
class RunState:
    """A whole job: its stages (a new one at each StageStarted; the panes show `view`, the
    newest unless the user went back to an earlier one), training and the status line."""

    plan: InitVar[Plan | None] = None  # the first stage's, when known before its events
    stages: list[StageState] = field(default_factory=list)
    viewed: int = 0  # index of the stage the panes show
    train: list[TrainStep] = field(default_factory=list)
    progress: Progress | None = None
    generating: str = ""  # what the model is writing right now, for the status line
    # time.monotonic() when it started (or the job did, while it loads the model)
    generating_since: float = field(default_factory=time.monotonic)
    generating_left: int = 0  # outputs of that call not reported yet
    prefilling: Prefilling | None = None  # that call's prompts read so far
    finished: bool = False

    def __post_init__(self, plan: Plan | None) -> None:
        self.stages.append(StageState(plan or Plan()))

    @property
    def current(self) -> StageState:
        """The stage the job's events go to."""
        return self.stages[-1]

    @property
    def view(self) -> StageState:
        return self.stages[self.viewed]

    @property
    def stage(self) -> str:
        """The name of the stage running now."""
        return self.current.name

    def apply(self, event: object) -> str | None:
        """Take one event in; returns the task id whose attempts (or text being written)
        changed in the current stage, if any."""
        if isinstance(event, StageStarted):
            self._start(event.stage)
        elif isinstance(event, StageFinished):
            self.current.finish()
            self.generating = ""
        elif isinstance(event, Plan) and self.current.name:  # the plan of a stage still to start
            self._open(StageState(event))
        elif isinstance(event, Progress):
            self.progress = event
        elif isinstance(event, TrainStep):
            self.train = (self.train + [event])[-MAX_TRAIN_POINTS:]
            self.generating = ""
        else:
            self._follow_generating(event)
            return self.current.apply(event)
        return None

    def _follow_generating(self, event: object) -> None:
        """The status line's "writing N drafts" lasts until the N outputs are reported."""
        if isinstance(event, Generating):
            self.generating = f"writing {event.count} {event.kind}s"
            self.generating_since = time.monotonic()
            self.generating_left = event.count
            self.prefilling = None
        elif isinstance(event, Prefilling):
            self.prefilling = event
        elif isinstance(event, AttemptFinished) and not event.resumed:
            self.generating_left -= 1
            if self.generating_left <= 0:
                self.generating = ""

    def activity(self) -> str:
        """What the running job is doing, in words ("" when no event says): loading the
        model until its first stage starts (every job loads one first), then each model
        call, and how far its prompts are read."""
        reading = self.prefilling
        if self.generating and reading and reading.done < reading.total:
            return f"{self.generating}: {reading.text()}"
        if self.generating:
            return self.generating
        started = self.current.name or self.progress or self.train
        return "" if started or self.finished else "loading the model"

    def _start(self, name: str) -> None:
        """A stage is named by its StageStarted: the stage opened by its plan, or a new one."""
        if self.current.name:
            self.current.finish()
            self._open(StageState())
        self.current.name = name

    def _open(self, stage: StageState) -> None:
        following = self.viewed == len(self.stages) - 1
        self.stages.append(stage)
        if following:
            self.viewed = len(self.stages) - 1

    def label(self, index: int) -> str:
        """A stage's name, numbered when the job ran a stage of that name before."""
        name = self.stages[index].name or "run"
        earlier = sum(s.name == self.stages[index].name for s in self.stages[:index])
        return f"{name} #{earlier + 1}" if earlier else name

    def view_title(self) -> str:
        """Which stage the panes show, and of how many."""
        label = self.label(self.viewed)
        return f"stage {self.viewed + 1}/{len(self.stages)} · {label}" if len(self.stages) > 1 else label

    def finish(self) -> None:
        """The job has ended: no stage waits for more attempts."""
        self.finished = True
        self.current.finish()


def _has_draft(attempts: list[Attempt]) -> bool:
    return any(a.kind == "draft" for a in attempts)


def log_line(event: object) -> str | None:
    """The events worth a line in the log pane, as the line."""
    if isinstance(event, TrainStep):
        return None  # the training pane draws it
    if (text := event_line(event)) is not None:
        return text
    if isinstance(event, Generating):
        return f"writing {event.count} {event.kind}s: {' '.join(event.task_ids[:6])}" + (" …" if len(event.task_ids) > 6 else "")
    if isinstance(event, AttemptFinished) and not event.resumed:
        a = event.attempt
        return f"{a.task_id} {a.kind} #{a.sample_index} r{a.round}: {a.status}"
    if isinstance(event, PairSaved):
        return f"{event.pair.task_id}: {event.pair.kind} pair saved"
    return None
