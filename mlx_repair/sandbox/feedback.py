"""Feedback: the failing visible cases as Input / Expected / Got (or the error and a
trimmed traceback), capped to fit a prompt."""

from __future__ import annotations

from mlx_repair.sandbox.cases import cap
from mlx_repair.sandbox.judge import CaseResult

CASE_CHARS = 900  # one case's block in feedback
FEEDBACK_CHARS = 2400  # all of the feedback


def feedback_text(verdict_or_cases, visible_only: bool = True, max_chars: int = FEEDBACK_CHARS) -> str:
    """Failing cases as Input/Expected/Got (or error and trimmed traceback), capped.

    Takes a Verdict (its `error` — syntax error, timeout, crash — comes first) or a list
    of CaseResult. With visible_only, hidden cases never appear, not even their count.
    """
    cases = getattr(verdict_or_cases, "cases", verdict_or_cases)
    run_error = getattr(verdict_or_cases, "error", None)
    shown = [c for c in cases if not (visible_only and c.hidden)]
    failing = [c for c in shown if not c.passed and c.ran]
    not_run = sum(1 for c in shown if not c.ran)
    blocks = [cap(run_error, CASE_CHARS)] if run_error else []
    blocks += [_case_block(c, run_error) for c in failing]
    text, used = "", 0
    for block in blocks:
        if text and len(text) + len(block) + 2 > max_chars:
            break
        text = f"{text}\n\n{block}" if text else cap(block, max_chars)
        used += 1
    notes = []
    if used < len(blocks):
        notes.append(f"({len(blocks) - used} more failing tests not shown)")
    if not_run:
        notes.append(f"({not_run} tests did not run)")
    if not blocks and not notes and any(not c.passed for c in cases):
        notes.append("The shown tests passed, but the solution failed other tests.")
    return "\n".join([text, *notes]).strip()


def _case_block(case: CaseResult, run_error: str | None = None) -> str:
    lines = [f"Test: {case.source}"]
    if case.input is not None:
        lines.append(f"Input: {case.input}")
    if case.error is not None and case.error == run_error:
        lines.append("(this test was running when the run ended)")
    elif case.error is not None:
        lines.append(case.traceback or f"Error: {case.error}")
    else:
        if case.expected is not None:
            lines.append(f"Expected: {case.expected}")
        if case.got is not None:
            lines.append(f"Got: {case.got}")
    return cap("\n".join(lines), CASE_CHARS)
