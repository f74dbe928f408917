"""Judging: each case decided in the parent, in trusted code, from the values the child
reported (decoded into fresh builtin objects), so nothing the candidate redefines can
turn a failure into a pass."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlx_repair.sandbox.cases import Case, TestPlan, show
from mlx_repair.sandbox.child import Opaque, decode

@dataclass
class CaseResult:
    index: int
    hidden: bool
    passed: bool
    source: str  # the assert's source line
    input: str | None = None  # reprs, capped
    expected: str | None = None
    got: str | None = None
    error: str | None = None  # "Type: message"
    traceback: str | None = None  # trimmed to the candidate's own lines
    ran: bool = True  # False when the run ended (timeout, crash) before this case


def judge(plan: TestPlan, records: dict[int, dict], not_run_reason: str | None) -> list[CaseResult]:
    """One CaseResult per case, from the child's records; missing records fail."""
    results = []
    for case in plan.cases:
        record = records.get(case.index)
        if record is None:
            results.append(_missing(case, not_run_reason))
            not_run_reason = None  # only the first missing case was running
        else:
            results.append(_judge_case(case, record))
    return results


def _base(case: Case, passed: bool, **fields) -> CaseResult:
    return CaseResult(case.index, case.hidden, passed, case.source, case.input, **fields)


def _missing(case: Case, reason: str | None) -> CaseResult:
    if reason:
        return _base(case, False, error=reason)
    return _base(case, False, ran=False)


def _judge_case(case: Case, record: dict) -> CaseResult:
    if "e" in record:
        return _base(case, False, error=record["e"], traceback=record.get("tb"))
    if case.kind == "statement":
        return _base(case, record.get("ok") == 1)
    try:
        values = _operand_values(case, record["v"])
        passed, expected = _evaluate(case, values)
    except Exception as error:  # a comparison the original assert would also have raised
        return _base(case, False, error=f"{type(error).__name__}: {error}")
    got = show(values[case.got_index])
    return _base(case, bool(passed), expected=expected, got=got)


def _operand_values(case: Case, encoded: list) -> list:
    from_child = iter(encoded)
    values = [decode(next(from_child)) if o.child else o.literal for o in case.operands]
    if next(from_child, None) is not None:
        raise ValueError("the child reported more values than the case has")
    return values


def _evaluate(case: Case, values: list) -> tuple[bool, str]:
    """(passed, the expected value as shown in feedback)."""
    if case.kind == "truth":
        got = values[0]
        return (not isinstance(got, Opaque) and bool(got) == case.expect_true), repr(case.expect_true)
    if case.kind == "close":
        got, target, tolerance = values
        _require_numbers(got, target, tolerance)
        return case.ops[0](abs(got - target), tolerance), f"{show(target)} (within {tolerance!r})"
    if case.kind == "isclose":
        got, target = values
        _require_numbers(got, target)
        return math.isclose(got, target, **case.keywords), f"{show(target)} (math.isclose)"
    passed = all(op(a, b) for op, a, b in zip(case.ops, values, values[1:]))
    others = [v for i, v in enumerate(values) if i != case.got_index]
    expected = show(others[0]) if len(others) == 1 else case.source
    return passed, expected


def _require_numbers(*values) -> None:
    for value in values:
        if type(value) not in (int, float, bool, complex):
            raise TypeError(f"expected a number, got {type(value).__name__}: {show(value)}")
