"""Pure logic of the sandbox: assembling programs, splitting check() into cases, the
visible/hidden split, judging decoded values, feedback text and the wire format."""

import json
import math

import pytest

from mlx_repair.problems import Problem, load_problems
from mlx_repair.sandbox.cases import assemble, hidden_flags, is_whole_program, plan_tests
from mlx_repair.sandbox.child import Opaque, decode, encode, plain
from mlx_repair.sandbox.feedback import feedback_text
from mlx_repair.sandbox.judge import CaseResult, judge

PROMPT = (
    "import math\n"
    "from typing import List\n\n\n"
    "def helper(x):\n    return x * 2\n\n\n"
    "def double_all(xs: List[int]) -> List[int]:\n"
    '    """Double every number."""\n'
)
TEST = (
    "def check(candidate):\n"
    "    assert candidate([1, 2]) == [2, 4]\n"
    "    assert candidate([]) == []\n"
    "    assert not candidate([])\n"
    "    assert candidate([3]) is not None\n"
    "    assert abs(candidate([1])[0] - 2.0) < 1e-6\n"
    "    assert math.isclose(candidate([5])[0], 10.0, rel_tol=1e-9)\n"
    "    for x in range(3):\n"
    "        assert candidate([x]) == [2 * x]\n"
)
PROBLEM = Problem("Unit/double", PROMPT, "double_all", TEST, "    return [helper(x) for x in xs]\n")


@pytest.fixture(scope="module")
def humaneval():
    return load_problems("humaneval")


def test_body_completion_continues_the_prompt():
    body = "    out = []\n    for x in xs:\n        if x:\n            out.append(helper(x))\n        else:\n            out.append(0)\n    return out\n"
    assert not is_whole_program(body, "double_all")
    assert assemble(PROBLEM, body) == PROMPT + body  # nested blocks kept whole


def test_whole_program_gets_the_prompt_imports_and_helpers():
    whole = "def double_all(xs):\n    return [helper(x) for x in xs]\n"
    assert is_whole_program(whole, "double_all")
    program = assemble(PROBLEM, whole)
    assert "import math" in program and "def helper(x)" in program
    assert program.count("def double_all") == 1
    assert program.endswith(whole)


def test_whole_program_with_its_own_imports_and_redefined_helper():
    whole = "import math\n\ndef helper(x):\n    return x + x\n\ndef double_all(xs):\n    return list(map(helper, xs))\n"
    program = assemble(PROBLEM, whole)
    namespace = {}
    exec(program, namespace)
    assert namespace["double_all"]([1, 2]) == [2, 4]


def test_check_is_split_into_recognised_cases():
    plan = plan_tests(PROBLEM)
    assert [c.kind for c in plan.cases] == [
        "compare", "compare", "truth", "compare", "close", "isclose", "statement",
    ]
    first = plan.cases[0]
    assert first.input == "[1, 2]" and first.source == "assert candidate([1, 2]) == [2, 4]"
    assert not first.operands[1].child and first.operands[1].literal == [2, 4]


def test_hidden_split_is_deterministic_and_keeps_both_sides():
    assert hidden_flags("HumanEval/7", 9) == hidden_flags("HumanEval/7", 9)
    for count in range(2, 30):
        flags = hidden_flags(f"T/{count}", count)
        assert any(flags) and not all(flags)
    assert hidden_flags("T/one", 1) == [False]


def test_every_humaneval_problem_splits(humaneval):
    kinds = set()
    for problem in humaneval:
        plan = plan_tests(problem)
        assert plan.cases, problem.task_id
        kinds |= {c.kind for c in plan.cases}
        if len(plan.cases) >= 2:
            hidden = [c.hidden for c in plan.cases]
            assert any(hidden) and not all(hidden), problem.task_id
    assert {"compare", "truth", "close", "statement"} <= kinds
    loop = plan_tests(next(p for p in humaneval if p.task_id == "HumanEval/32"))
    assert [c.kind for c in loop.cases] == ["statement"]  # a random loop stays one case


def _values(*encoded_values):
    return {"v": [json.loads(encode(v)) for v in encoded_values]}


def test_judge_compares_decoded_values_in_the_parent():
    plan = plan_tests(PROBLEM)
    records = {
        0: _values([2, 4]),
        1: _values([1]),
        2: _values([]),
        3: _values(None),
        4: _values([2.0000001], 2.0),  # got side and the literal 2.0 is the parent's
        5: {"e": "IndexError: list index out of range", "tb": "Traceback ..."},
    }
    results = judge(plan, records, "Timeout: too slow")
    assert [r.passed for r in results] == [True, False, True, False, False, False, False]
    assert results[1].expected == "[]" and results[1].got == "[1]"
    assert results[5].error.startswith("IndexError")
    assert results[6].error == "Timeout: too slow" and results[6].ran


def test_opaque_values_never_pass():
    weird = json.loads(encode(type("E", (), {"__eq__": lambda s, o: True})()))
    assert decode(weird) != decode(weird)
    assert not Opaque("E", "E()")
    plan = plan_tests(PROBLEM)
    result = judge(plan, {0: {"v": [weird]}}, None)[0]
    assert not result.passed


def test_wire_format_round_trips_plain_values():
    values = [None, True, 3, -2**80, 1.5, math.inf, "é\n", b"\x00", 1j, [1, (2, 3)], {"a": {1, 2}}, frozenset({4})]
    for value in values:
        assert decode(json.loads(encode(value))) == value
    assert math.isnan(plain(math.nan))
    assert type(plain(True)) is bool and type(plain((1,))) is tuple


def test_subclasses_and_deep_values_are_opaque():
    class Int(int):
        pass

    assert isinstance(plain(Int(3)), Opaque)
    nested = []
    for _ in range(200):
        nested = [nested]
    assert isinstance(plain(nested), Opaque)


def _case(index, hidden, passed, **fields):
    return CaseResult(index, hidden, passed, f"assert candidate({index}) == {index}", str(index), **fields)


def test_feedback_shows_visible_failures_only():
    cases = [
        _case(0, False, False, expected="0", got="1"),
        _case(1, True, False, expected="SECRET", got="2"),
        _case(2, False, True, expected="2", got="2"),
    ]
    text = feedback_text(cases)
    assert "Input: 0\nExpected: 0\nGot: 1" in text
    assert "SECRET" not in text and "candidate(1)" not in text
    assert "SECRET" in feedback_text(cases, visible_only=False)


def test_feedback_is_capped_and_says_what_was_cut():
    cases = [_case(i, False, False, expected="x" * 200, got="y" * 200) for i in range(30)]
    text = feedback_text(cases, max_chars=1500)
    assert len(text) <= 1600
    assert "more failing tests not shown" in text


def test_feedback_when_only_hidden_cases_fail():
    text = feedback_text([_case(0, False, True), _case(1, True, False, expected="1", got="0")])
    assert "passed" in text and "1" not in text.replace("passed", "")


def test_broken_test_code_is_a_user_error():
    from mlx_repair.errors import UserError

    broken = Problem("Unit/broken", PROMPT, "double_all", "def check(candidate):\n    assert (\n")
    with pytest.raises(UserError, match="Unit/broken: its test code is not valid Python"):
        plan_tests(broken)
