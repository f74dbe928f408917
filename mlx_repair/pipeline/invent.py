"""The invent job: the model writes problems for itself, and only those that pass every
filter are kept, as a problem set for mining (never for evaluation).

Round by round, `invent.batch` requests go to the model at the current difficulty level.
Each output is read (`problems/invented.py`: readable, every assert split into a case,
docstring examples, not a near-copy of HumanEval, fresh, the math set or a problem already
kept); when the model wrote the function's body as well, that reference runs in the
sandbox first: only the asserts it passes are kept (at least `MIN_CASES`), and the
docstring's examples show its results (at least one left); what survives is solved
`invent.solutions` (k) times by the same model through the loop and judged in the sandbox.
A problem is kept when at least `min_passing` of its k solutions pass and at least
`min_failing` fail (neither impossible nor trivial for this model), and when every passing
solution also gives the docstring's examples.

The difficulty adapts: after a problem solved by all k samples the next request asks for a
harder one, after one solved by none an easier one. Without that, inventions drift to
what the model finds easy (published self-training work saw exactly this). It also falls
after `invent.fall_after` requests in a row whose outputs never reached the solvers: at
0.5B, high levels mostly bring back outputs no filter lets through, and without solved
problems nothing would bring the level down.

Everything is in the run's store: each request's output is stored before it is judged,
so a killed run re-judges it rather than asking again, and its outcome (kept, or the
reason, with the level and the measures) once decided. The kept problems are exported as
`invented.jsonl`, read by `--problems invented:RUN_DIR`; `report.md` gives the acceptance
rate per reason and plots acceptance and solve rate against the level.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mlx_repair.console import Console
from mlx_repair.events import Log, StageFinished, StageStarted
from mlx_repair.generation import invent_prompts
from mlx_repair.generation.invent_prompts import CODE_FORM, INVENT_CODE, INVENT_MATH, LEVELS, code_request, math_request
from mlx_repair.mining.loop import LoopConfig, Request, run_loop
from mlx_repair.mining.store import Invention, Store
from mlx_repair.pipeline.stages import load_writer, run_dir, run_lock, sandbox_pool, settings_of
from mlx_repair.problems import FRESH, HUMANEVAL, INVENTED, INVENTED_FILE, MATH, Problem, load_problems
from mlx_repair.problems.invented import (
    Rejected, agreeing_test, examples_from_reference, examples_problem, known_ngrams, nearest, problem_fields,
    read_code, read_math, write_invented,
)

PENDING = "pending"  # an output stored, not judged yet
KNOWN_SETS = {"code": (HUMANEVAL, FRESH), "math": (MATH,)}
TASK_PREFIX = {"code": "Invented", "math": "InventedMath"}
FORM_EXAMPLE = "the request's example"


@dataclass
class Difficulty:
    """The level the next request asks for: up after a problem every sample solved, down
    after one no sample solved or after `fall_after` requests in a row rejected before
    any solving (0: never), within 1..highest."""

    level: int
    fall_after: int = 0
    highest: int = LEVELS
    unsolved: int = 0  # requests in a row rejected before solving

    def after(self, passing: int | None, solutions: int | None) -> int:
        if not solutions:
            self.unsolved += 1
            if self.unsolved == self.fall_after:
                self.level, self.unsolved = max(self.level - 1, 1), 0
            return self.level
        self.unsolved = 0
        if passing == solutions:
            self.level = min(self.level + 1, self.highest)
        elif passing == 0:
            self.level = max(self.level - 1, 1)
        return self.level


def solve_reason(passing: int, solutions: int, min_passing: int, min_failing: int) -> str | None:
    """"impossible" or "trivial" for this model, or None when the problem is kept."""
    if passing < min_passing:
        return "impossible"
    if solutions - passing < min_failing:
        return "trivial"
    return None


def invent(config, count: int, run_dir_=None, console=None) -> Path:
    """Invent until `count` problems are kept (or count x requests_per_problem requests
    were made); resumes the run with the same settings. Returns the run directory."""
    from mlx_repair.evaluation.invent_report import show_summary, write_invent_report

    console = console or Console()
    settings = invent_settings(config)
    directory = run_dir(config, "invent", settings, run_dir_)
    started = time.perf_counter()
    with run_lock(directory):
        console.show(Log(f"loading {config.run.model}"))
        writer = load_writer(solving_config(config), progress=console.import_progress, listener=console.writing)
        with Store.open(directory) as store, sandbox_pool(config) as pool:
            store.start_run("invent", writer.name, f"invent-{config.invent.domain}", settings, {})
            console.show(StageStarted("invent", count))
            _Inventor(config, count, writer, pool, store, console).run()
            inventions = store.inventions()
    console.show(StageFinished("invent", time.perf_counter() - started, writer.stats.peak_memory_gb))
    report = write_invent_report(directory, inventions, config.invent, time.perf_counter() - started)
    show_summary(report, console)
    return directory


def invent_settings(config) -> dict:
    """What decides an invent run's outputs: the model, sampling (at the invent
    temperature), sandbox, `[invent]` but its count (a larger count continues the run),
    and the wording of the requests and of the solving prompts in the run's domain."""
    solved = [Problem("probe", "", "", "", domain=config.invent.domain)]
    invent = {k: v for k, v in asdict(config.invent).items() if k != "count"}
    settings = settings_of(solving_config(config), solved, invent=invent)
    settings["invent_prompts"] = invent_prompts.fingerprint()
    for key in ("problems", "limit", "eval_fraction"):
        settings["run"].pop(key)
    return settings


def solving_config(config):
    """Problems and their solutions are sampled at `invent.temperature`."""
    return replace(config, sampling=replace(config.sampling, temperature=config.invent.temperature))


class _Inventor:
    """One invent run: rounds of requests, judged and recorded, the level moving."""

    def __init__(self, config, count: int, writer, pool, store: Store, console):
        self.settings, self.count = config.invent, count
        self.writer, self.pool, self.store, self.console = writer, pool, store, console
        self.directory = Path(store.path).parent
        history = store.inventions()
        self.difficulty = Difficulty(self.settings.start_level, self.settings.fall_after)
        for invention in history:
            if invention.reason != PENDING:
                self.difficulty.after(invention.passing, invention.solutions)
        self.kept = [Problem(**i.problem) for i in history if i.kept]
        sets = [p for name in KNOWN_SETS[self.settings.domain] for p in load_problems(name)]
        self.known = known_ngrams(sets + self.kept, self.settings.ngram)
        if self.settings.domain == "code":  # a copy of the request's own example is no invention
            self.known |= known_ngrams([read_code(CODE_FORM, FORM_EXAMPLE, 1)], self.settings.ngram)
        self.next_request = len(history)

    def run(self) -> None:
        limit = self.count * self.settings.requests_per_problem
        pending = [i for i in self.store.inventions() if i.reason == PENDING]
        while len(self.kept) < self.count and (pending or self.next_request < limit):
            pending = pending or self._ask(min(self.settings.batch, limit - self.next_request))
            self._judge(pending)
            pending = []
        write_invented(self.directory / INVENTED_FILE, self.kept)
        if len(self.kept) < self.count:
            self.console.show(Log(f"kept {len(self.kept)} of {self.count} problems after {limit} requests"))

    def _ask(self, size: int) -> list[Invention]:
        """`size` requests at the current level, their outputs stored before judging."""
        level, domain = self.difficulty.level, self.settings.domain
        request_text = code_request if domain == "code" else math_request
        taken = [p.entry_point if domain == "code" else p.prompt[:60] for p in self.kept]
        requests = []
        for index in range(self.next_request, self.next_request + size):
            pseudo = Problem(f"{TASK_PREFIX[domain]}/{index}", request_text(level, index, taken), "", "",
                             domain=INVENT_CODE if domain == "code" else INVENT_MATH)
            requests.append(Request(pseudo, "draft", 0, 0))
        outputs = list(self.writer.write(requests))
        self.next_request += size
        for output in outputs:
            index = int(output.request.problem.task_id.rsplit("/", 1)[1])
            self.store.add_invention(Invention(index, level, output.request.problem.task_id, False, PENDING, {}, output.code))
        return [i for i in self.store.inventions() if i.reason == PENDING]

    def _judge(self, pending: list[Invention]) -> None:
        read = [self._read(invention) for invention in pending]
        candidates = [problem for _, problem in read if problem is not None]
        if candidates:
            self.console.follow(run_loop(candidates, self.writer, self.pool, self.store, self._loop_config()))
        for measured, problem in read:
            outcome = measured if problem is None else self._decide(measured, problem)
            self.store.add_invention(outcome)
            self.difficulty.after(outcome.passing, outcome.solutions)
            self.console.show(Log(_outcome_line(outcome, self.difficulty.level)))

    def _loop_config(self) -> LoopConfig:
        return LoopConfig(samples=self.settings.solutions, rounds=0, save_pairs=False, stage="invent")

    def _read(self, invention: Invention) -> tuple[Invention, Problem | None]:
        """The invention with what reading it measured, and its problem (None when it is
        rejected before any solving)."""
        reader = read_code if self.settings.domain == "code" else read_math
        try:
            problem = reader(invention.output, invention.task_id, invention.level)
        except Rejected as rejected:
            return replace(invention, reason=rejected.reason, problem={"detail": rejected.detail}), None
        overlap, which = nearest(problem, self.known, self.settings.ngram)
        measured = replace(invention, problem=problem_fields(problem), overlap=round(overlap, 3), overlap_with=which)
        if overlap > self.settings.max_overlap:
            return replace(measured, reason="near-copy"), None
        if problem.canonical_solution is None or problem.domain == MATH:
            return measured, problem
        try:
            problem = self._checked_by_reference(problem)
        except Rejected as rejected:
            return replace(measured, reason=rejected.reason, problem=measured.problem | {"detail": rejected.detail}), None
        return replace(measured, problem=problem_fields(problem)), problem

    def _checked_by_reference(self, problem: Problem) -> Problem:
        """The problem with the asserts the model's own function fails left out and its
        docstring's examples given that function's results; Rejected when too few asserts
        or no example are left."""
        reference = problem.canonical_solution
        verdicts = dict(self.pool.run([("test", problem, reference), ("examples", examples_problem(problem), reference)]))
        problem = agreeing_test(problem, [case.passed for case in verdicts["test"].cases])
        return examples_from_reference(problem, verdicts["examples"].cases)

    def _decide(self, measured: Invention, problem: Problem) -> Invention:
        solutions = [a for a in self.store.attempts(problem.task_id) if a.kind == "draft"]
        passing = [a for a in solutions if a.passed]
        judged = replace(measured, passing=len(passing), solutions=len(solutions))
        s = self.settings
        reason = solve_reason(len(passing), len(solutions), s.min_passing, s.min_failing)
        if reason is None and problem.domain != MATH and not self._examples_agree(problem, passing):
            reason = "examples disagree"
        if reason is None and nearest(problem, self.known, s.ngram)[0] > s.max_overlap:
            reason = "near-copy"  # of a problem kept from the same round
        if reason is not None:
            return replace(judged, reason=reason)
        self.kept.append(problem)
        self.known[problem.task_id] = known_ngrams([problem], s.ngram)[problem.task_id]
        write_invented(self.directory / INVENTED_FILE, self.kept)
        return replace(judged, kept=True, reason="")

    def _examples_agree(self, problem: Problem, passing: list) -> bool:
        """Every passing solution gives the docstring's examples' results."""
        examples = examples_problem(problem)
        jobs = [(a.sample_index, examples, a.code) for a in passing]
        return all(verdict.passed for _, verdict in self.pool.run(jobs))


def _outcome_line(invention: Invention, level: int) -> str:
    solved = f", {invention.passing}/{invention.solutions} solutions pass" if invention.solutions else ""
    what = "kept" if invention.kept else f"rejected: {invention.reason}"
    return f"{invention.task_id} (level {invention.level}): {what}{solved}; next level {level}"


def with_invented(config, console):
    """`train --invent N`: invent N problems (in the given set's domain) and return the
    mining config whose problems are the given set's plus the invented ones."""
    given = load_problems(config.run.problems)
    domain = "math" if all(p.domain == MATH for p in given) else "code"
    invent_config = replace(config, invent=replace(config.invent, domain=domain))
    directory = invent(invent_config, config.invent.count, console=console)
    if not load_problems(directory / INVENTED_FILE, empty_ok=True):
        console.show(Log("no invented problem was kept: mining the given problems only"))
        return config
    problems = f"{config.run.problems}+{INVENTED}:{directory}"
    return replace(config, run=replace(config.run, problems=problems))


def invented_pair_notes(mine_dir: Path) -> list[str]:
    """The report's line on the pairs mined from invented problems, when there are any."""
    from mlx_repair.mining.pairing import format_pair_counts, kind_counts

    with Store.open(mine_dir) as store:
        store.select_run("mine")
        invented = [pair for pair in store.pairs() if pair.origin == INVENTED]
    if not invented:
        return []
    return [f"Pairs from invented problems (origin 'invented'): {format_pair_counts(kind_counts(invented))}."]
