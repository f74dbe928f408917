"""The verdict on one run: its status, the words for what ended it early, and feedback."""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass

from mlx_repair.sandbox.feedback import feedback_text
from mlx_repair.sandbox.judge import CaseResult, judge
from mlx_repair.sandbox.limits import Limits
from mlx_repair.sandbox.processes import Outcome

@dataclass
class Verdict:
    task_id: str
    passed: bool  # every case, visible and hidden, passed (decided here, not in the child)
    status: str  # passed | failed | error | timeout | syntax_error | crashed | memory | output_limit
    cases: list[CaseResult]
    feedback: str  # from visible cases only, capped to fit a prompt
    isolation: str
    duration_s: float
    error: str | None = None  # what ended the run early, if anything (shown in feedback)

    def to_dict(self) -> dict:
        return asdict(self)


def run_error(outcome: Outcome, limits: Limits) -> str | None:
    """What ended the run, in words the model can act on (None if it ran to the end)."""
    if outcome.timed_out:
        return f"Timeout: the program did not finish within {limits.timeout_s:g} s"
    if outcome.over_output:
        return f"Output limit: the program printed more than {limits.output_bytes} bytes"
    if outcome.over_memory:
        return f"MemoryError: the program used more than {limits.memory_mb} MB"
    if outcome.too_many_processes:
        return f"Process limit: the program started more than {limits.max_processes} processes"
    if outcome.tampered:
        return "Error: the program wrote to the test harness's private report channel"
    if outcome.load_error:
        return outcome.load_error.get("tb") or outcome.load_error.get("e")
    if outcome.setup_error:
        return "Error in the test setup: " + (outcome.setup_error.get("e") or "")
    if not outcome.done:
        return _crash_message(outcome, limits)
    return None


def _crash_message(outcome: Outcome, limits: Limits) -> str:
    code = outcome.returncode or 0
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number == signal.SIGXCPU:
        what = f"was killed by SIGXCPU (CPU limit {limits.cpu_s:g} s)"
    elif number:
        what = f"was killed by {signal.Signals(number).name}"
    else:
        what = f"exited with code {code} before all tests ran"
    tail = outcome.stderr_tail.strip()
    return f"Crashed: the process {what}" + (f"\n{tail[-400:]}" if tail else "")


def _status(outcome: Outcome, run_error: str | None, cases: list[CaseResult], syntax: bool) -> str:
    errors = [c.error or "" for c in cases] + [run_error or ""]
    if syntax:
        return "syntax_error"
    if outcome.timed_out or _cpu_killed(outcome):
        return "timeout"
    if outcome.over_output:
        return "output_limit"
    if outcome.over_memory or any(e.startswith("MemoryError") or "\nMemoryError" in e for e in errors):
        return "memory"
    if outcome.tampered or outcome.load_error or outcome.setup_error or outcome.too_many_processes:
        return "error"
    if not outcome.done:
        return "crashed"
    return "passed" if cases and all(c.passed for c in cases) else "failed"


def _cpu_killed(outcome: Outcome) -> bool:
    code = outcome.returncode or 0
    return not outcome.done and code in (-signal.SIGXCPU, 128 + signal.SIGXCPU)


def build_verdict(
    problem, plan, outcome: Outcome, level: str, start: float, run_error: str | None, syntax: bool = False,
    judge_cases=judge,
) -> Verdict:
    """`judge_cases(plan, records, not_run_reason)` decides the cases (Go has its own)."""
    first_missing = None if (outcome.done or syntax) else run_error
    cases = judge_cases(plan, outcome.records, first_missing)
    status = _status(outcome, run_error, cases, syntax)
    verdict = Verdict(
        task_id=problem.task_id,
        passed=status == "passed",
        status=status,
        cases=cases,
        feedback="",
        isolation=level,
        duration_s=round(time.monotonic() - start, 4),
        error=run_error,
    )
    verdict.feedback = feedback_text(verdict)
    return verdict
