"""Judging Go cases in the parent, from the reports the harness sent (`go_harness`).

A table row passes when the value the candidate returned, encoded by reflection with its
type, equals the row's expected value from the run with no candidate (or, for a
`math.Abs(got - want) > tolerance` test, lies within the tolerance); a NaN or an opaque
value (a func, a channel, something too large) equals nothing, as `!=` and
`reflect.DeepEqual` would have it. A test run whole passes when the harness saw it
return without failing. Feedback: Input / Expected / Got per row, the panic with its stack
trimmed to the candidate's lines, or a whole test's own output (its `t.Errorf` lines).
"""

from __future__ import annotations

import re

from mlx_repair.sandbox.cases import VALUE_CHARS, cap
from mlx_repair.sandbox.go_cases import GoCase, GoPlan
from mlx_repair.sandbox.go_program import PROMPT_FILE, SOLUTION_FILE
from mlx_repair.sandbox.go_toolchain import MODULE
from mlx_repair.sandbox.judge import CaseResult

FRAME = re.compile(r"^(\S.*)\n\t(.*?)((?:" + re.escape(SOLUTION_FILE) + "|" + re.escape(PROMPT_FILE) + r"):\d+)", re.M)
OUTPUT_LINES = 12  # of a whole test's output, in its feedback


def judge_go(plan: GoPlan, records: dict[int, dict], not_run_reason: str | None,
             expected: dict[int, dict], output: str) -> list[CaseResult]:
    """One CaseResult per case; a case the run never reported fails (the first of them
    with the reason the run ended, if any)."""
    results = []
    for case in plan.cases:
        record = records.get(case.index)
        if record is None:
            error = {"error": not_run_reason} if not_run_reason else {"ran": False}
            results.append(CaseResult(case.index, case.hidden, False, case.source, **error))
            not_run_reason = None
        elif "e" in record:
            results.append(_failed_with(case, record, expected.get(case.index)))
        elif case.row is None:
            passed = record.get("ok") == 1
            shown = None if passed else test_output(output, case.test) or "(the test failed and printed nothing)"
            results.append(CaseResult(case.index, case.hidden, passed, case.source, error=shown))
        else:
            results.append(_row(case, expected[case.index], record.get("v") or {}))
    return results


def _row(case: GoCase, expected: dict, got: dict) -> CaseResult:
    want = expected["w"]
    passed = _close(want, got, expected) if expected.get("kind") == "close" else _equal(want, got)
    shown_want, shown_got = show_pair(want, got)
    return CaseResult(case.index, case.hidden, passed, case.source, _inputs(expected), shown_want, shown_got)


def _equal(want: dict, got: dict) -> bool:
    plain = not (want.get("o") or got.get("o") or want.get("n") or got.get("n"))
    return plain and (want.get("t"), want.get("v")) == (got.get("t"), got.get("v"))


def _close(want: dict, got: dict, expected: dict) -> bool:
    try:
        difference = abs(float(got["v"]) - float(want["v"]))
        tolerance = float(expected["tol"]["v"])
    except (KeyError, TypeError, ValueError):
        return False
    return difference < tolerance if expected.get("strict") else difference <= tolerance


def show_pair(want: dict, got: dict) -> tuple[str, str]:
    """Expected and Got as shown: values alone, with their types when the types differ."""
    if want.get("t") == got.get("t"):
        return cap(want.get("v", ""), VALUE_CHARS), cap(got.get("v", ""), VALUE_CHARS)
    return tuple(cap(f"{side.get('v', '')} (of type {side.get('t')})", VALUE_CHARS) for side in (want, got))


def _inputs(expected: dict) -> str:
    return cap(", ".join(item.get("v", "") for item in expected.get("in", [])), VALUE_CHARS)


def _failed_with(case: GoCase, record: dict, expected: dict | None) -> CaseResult:
    inputs = _inputs(expected) if expected else None
    traceback = f"{record['e']}\n{trimmed_stack(record.get('tb', ''))}".strip()
    return CaseResult(case.index, case.hidden, False, case.source, inputs, error=record["e"], traceback=cap(traceback, 1500))


def trimmed_stack(stack: str) -> str:
    """The frames in the candidate's own code, function and file:line; a frame repeated
    (deep recursion) is shown once."""
    frames = [f"{name.replace(MODULE + '.', '')}\n\t{where}" for name, _, where in FRAME.findall(stack)]
    kept = [frame for number, frame in enumerate(frames) if number == 0 or frame != frames[number - 1]]
    return "\n".join(kept[:8])


def crash_text(output: str, harness_test: str) -> str:
    """What a test binary that died printed, for feedback: the panic or fatal error and
    the candidate's frames, without the harness's own lines."""
    lines = [line for line in output.splitlines() if harness_test not in line]
    start = next((i for i, line in enumerate(lines) if line.startswith(("panic:", "fatal error:", "runtime:"))), None)
    if start is None:
        return "\n".join(lines)[-600:]
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end] + [trimmed_stack("\n".join(lines[end:]))]).strip()


def test_output(output: str, test: str) -> str:
    """What a test run whole printed, from `go test -v`'s output: the lines after its
    `=== RUN` (the harness runs it as a subtest of its own test) up to the next `===` or
    `---` line, the first of them."""
    lines, inside = [], False
    for line in output.splitlines():
        if line.startswith("=== ") or line.lstrip().startswith("--- "):
            inside = line.startswith("=== RUN") and line.endswith(f"/{test}")
        elif inside:
            lines.append(line.strip())
    return "\n".join(lines[:OUTPUT_LINES])
