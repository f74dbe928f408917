"""The math checker: a model's final answer against the problem's, compared by SymPy.

Here, in the parent: the final answer is found in the model's text and read by
`math_answer`'s restricted grammar; what it refuses (`9**9**9**9`, `__import__('os')`, a
100,000-character string) is "not a valid answer" at once, no process started. What
passes is compared with the expected answer by `math_child` in a fresh child process,
the sandbox's, under the run's CPU, memory and wall-clock limits, so that SymPy's
simplification of a crafted expression ends when the limits say.

The child runs under `rlimits-only`, whatever the job's isolation level: it runs no
model-written code (only this package's checker on trees the parser allowed), so the
limits are what it needs, and SymPy is then importable wherever it is installed, a venv
in a home directory included (bwrap and sandbox-exec hide those).

Feedback for a wrong answer is "Expected: ... / Got: ...": a math problem has one case,
the answer, and it is shown. A repair prompt therefore holds the answer, so a math
repair turn measures copying, not solving; judge math by cold pass@1 and resampling.
"""

from __future__ import annotations

import importlib.util
import time
from functools import lru_cache
from pathlib import Path

from mlx_repair.problems import Problem
from mlx_repair.sandbox.cases import plan_tests
from mlx_repair.sandbox.child import SOLUTION_FILE
from mlx_repair.sandbox.judge import CaseResult
from mlx_repair.sandbox.limits import Limits
from mlx_repair.sandbox.math_answer import InvalidAnswer, answer_kind, decimals, final_answer, parse_answer
from mlx_repair.sandbox.processes import run_process
from mlx_repair.sandbox.verdict import Verdict, build_verdict, run_error

CHECKER_LEVEL = "rlimits-only"
CHILD_SOURCE = Path(__file__).with_name("math_child.py").read_text(encoding="utf-8")
CHECK_TEST = "def check(candidate):\n    assert candidate() == 'equal'\n"
NO_ANSWER = "no final answer: end with a line 'Answer: ...'"
# Rounded decimals count as right when written to at least this many places.
MIN_ROUNDED_PLACES = 3


def check_answer(problem: Problem, completion: str, limits: Limits | None = None) -> Verdict:
    """The verdict on the answer `completion` ends with (or is)."""
    limits = limits or Limits()
    start = time.monotonic()
    expected = parse_answer(problem.test)  # checked when the problem was loaded
    text = final_answer(completion)
    try:
        got = parse_answer(text) if text is not None else None
    except InvalidAnswer as error:
        return _unread(problem, text, f"not a valid answer: {error}", start)
    if got is None:
        return _unread(problem, None, NO_ANSWER, start)
    checker = Problem(problem.task_id, "", "answer", CHECK_TEST)
    plan = plan_tests(checker)
    source = checker_program(expected, got, problem.answer_kind or answer_kind(expected))
    program = compile(source, SOLUTION_FILE, "exec")
    outcome = run_process(checker, plan, program, source, limits, CHECKER_LEVEL)
    verdict = build_verdict(checker, plan, outcome, CHECKER_LEVEL, start, run_error(outcome, limits))
    return _with_answers(verdict, problem.test, text)


def checker_program(expected: tuple, got: tuple, kind: str) -> str:
    """The child's program: the trees and settings as literals, then `math_child`."""
    places = decimals(got)
    tolerance = 0.5 * 10.0**-places if places >= MIN_ROUNDED_PLACES else 0.0
    values = {"SEARCH_PATH": sympy_path(), "EXPECTED": expected, "GOT": got, "KIND": kind, "TOLERANCE": tolerance}
    return "".join(f"{name} = {value!r}\n" for name, value in values.items()) + CHILD_SOURCE


@lru_cache(maxsize=1)
def sympy_path() -> list[str]:
    """The folders holding SymPy and mpmath, for a child started with `-I -S`."""
    folders = []
    for name in ("sympy", "mpmath"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            folders.append(str(Path(next(iter(spec.submodule_search_locations))).parent))
    return list(dict.fromkeys(folders))


def _with_answers(verdict: Verdict, expected: str, got: str) -> Verdict:
    """The checker's verdict shown in the answers' words: Expected / Got, or why the
    answer could not be checked."""
    case = verdict.cases[0]
    case.source, case.input, case.expected, case.got = "answer", None, expected, got
    if verdict.passed:
        verdict.feedback = ""
    elif case.error or verdict.error:
        reason = (verdict.error or case.error or "").splitlines()[0]
        verdict.feedback = f"Got: {got}\n(the answer could not be checked: {reason})"
    else:
        verdict.feedback = feedback_lines(expected, got)
    return verdict


def feedback_lines(expected: str, got: str | None, note: str = "") -> str:
    lines = [f"Expected: {expected}", f"Got: {got}" if got is not None else "Got: nothing"]
    return "\n".join(lines + ([f"({note})"] if note else []))


def _unread(problem: Problem, got: str | None, reason: str, start: float) -> Verdict:
    """A verdict without a process: the answer is missing or not a valid answer."""
    shown = None if got is None else got[:200]
    case = CaseResult(0, False, False, "answer", expected=problem.test, got=shown, error=reason)
    return Verdict(
        task_id=problem.task_id, passed=False, status="syntax_error", cases=[case],
        feedback=feedback_lines(problem.test, shown, reason), isolation="none (not run)",
        duration_s=round(time.monotonic() - start, 4), error=None,
    )
