"""Run candidates against a problem's tests in fresh, isolated, limited processes.

The public API: `run_candidate` for one candidate, `Pool` for many at once, `Limits`,
`Verdict`, `isolation()` (the level a run uses) and `feedback_text`. How it works, by
module: `levels` (bwrap, unshare, sandbox-exec or rlimits only: which one, and the command
line), `mounts` (the unshare level's file system), `seatbelt` (the macOS profile),
`limits`, `processes` (child processes, the fork server, pipes, the watched limits),
`tracking` (a run's processes, found and killed), `child` (the stdlib-only program inside
the sandbox), `cases` (tests split into cases), `judge` (the parent decides each case
from the values the child reported), `feedback` (what the model is shown) and `verdict`;
math problems go to the math checker (`math_answer`, `math_check`, `math_child`), Go
problems to the Go backend (`go_toolchain`, `go_program`, `go_cases`, `go_harness`,
`go_child`, `go_judge`, `go_run`).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Iterable, Iterator

from mlx_repair.problems import MATH, Problem
from mlx_repair.problems.go import GO
from mlx_repair.sandbox.cases import assemble, plan_tests
from mlx_repair.sandbox.child import SOLUTION_FILE
from mlx_repair.sandbox.feedback import feedback_text
from mlx_repair.sandbox.go_run import run_go
from mlx_repair.sandbox.levels import AUTO, isolation
from mlx_repair.sandbox.judge import CaseResult
from mlx_repair.sandbox.limits import Limits
from mlx_repair.sandbox.math_check import check_answer
from mlx_repair.sandbox.processes import Outcome, run_process
from mlx_repair.sandbox.verdict import Verdict, build_verdict, run_error

__all__ = ["Limits", "CaseResult", "Verdict", "run_candidate", "feedback_text", "Pool", "isolation"]


def run_candidate(problem: Problem, completion: str, limits: Limits | None = None, isolation_level: str = AUTO) -> Verdict:
    """Run `completion` (a body continuing the prompt, or a whole program) on every case,
    under `isolation_level` ("auto": the platform's real sandbox, or a UserError). A math
    problem's completion is an answer, judged by the math checker."""
    limits = limits or Limits()
    if problem.domain == MATH:
        return check_answer(problem, completion, limits)
    start = time.monotonic()
    if problem.language == GO:
        return run_go(problem, completion, limits, isolation(isolation_level))
    plan = plan_tests(problem)
    level = isolation(isolation_level)
    source = assemble(problem, completion)
    try:
        program = compile(source, SOLUTION_FILE, "exec")
    except (SyntaxError, ValueError) as error:
        return build_verdict(problem, plan, Outcome(), level, start, _syntax_message(error, source), syntax=True)
    outcome = run_process(problem, plan, program, source, limits, level)
    return build_verdict(problem, plan, outcome, level, start, run_error(outcome, limits))


def _syntax_message(error: Exception, source: str) -> str:
    if not isinstance(error, SyntaxError):
        return f"SyntaxError: {error}"
    line = (error.text or "").rstrip("\n")
    where = f" ({SOLUTION_FILE}, line {error.lineno})" if error.lineno else ""
    caret = " " * max((error.offset or 1) - 1, 0) + "^" if line else ""
    return "\n".join(filter(None, [f"SyntaxError: {error.msg}{where}", line, caret]))


class Pool:
    """Run many candidates at once (default: one per core), streaming verdicts as each
    finishes. Threads only wait on child processes, so the GIL is not the bottleneck. The
    isolation level is settled here, before any candidate runs (see `isolation`)."""

    def __init__(self, workers: int | None = None, limits: Limits | None = None, isolation_level: str = AUTO):
        self.isolation = isolation(isolation_level)
        self.workers = workers or os.cpu_count() or 1
        self.limits = limits or Limits()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def run(self, jobs: Iterable[tuple[Any, Problem, str]]) -> Iterator[tuple[Any, Verdict]]:
        """(key, problem, completion) in; (key, verdict) out, in order of completion."""
        jobs = iter(jobs)
        running: dict = {}
        window = self.workers * 2
        while True:
            for key, problem, completion in _take(jobs, window - len(running)):
                future = self._executor.submit(run_candidate, problem, completion, self.limits, self.isolation)
                running[future] = key
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()


def _take(iterator: Iterator, count: int) -> list:
    items = []
    for _ in range(max(count, 0)):
        try:
            items.append(next(iterator))
        except StopIteration:
            break
    return items
