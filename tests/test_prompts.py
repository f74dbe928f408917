"""Code extraction traps (a harness that cuts code at the first closing brace, or fails
unused imports, undercounts a model), stop checks, and prompts
rendered through a real chat template."""

import ast
import textwrap

import pytest

from mlx_repair.problems import Problem
from mlx_repair.generation.extract import extract_code
from mlx_repair.generation.prompts import (
    REPAIR_MODES,
    draft_messages,
    fingerprint,
    draft_prompt,
    encode,
    is_chat_model,
    render,
    repair_messages,
    repair_prompt,
    without_docstrings,
)
from mlx_repair.generation.stops import completion_end, fenced_function_end, stop_check

PROMPT = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """ Return True if the balance ever falls below zero.
    >>> below_zero([1, 2, -4, 5])
    True
    """
'''
PROBLEM = Problem(task_id="T/0", prompt=PROMPT, entry_point="below_zero", test="")

# HumanEval/38's shape: the prompt defines a helper that the tests call.
HELPER_PROMPT = '''def encode(s: str):
    return s[::-1]


def decode(s: str):
    """Undo encode."""
'''
HELPER_PROBLEM = Problem(task_id="T/1", prompt=HELPER_PROMPT, entry_point="decode", test="")

SOLUTION = '''def below_zero(operations: List[int]) -> bool:
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            return True
    return False
'''
BODY = SOLUTION.split("\n", 1)[1]


def run(code: str, problem: Problem = PROBLEM):
    """Execute extracted code the way the sandbox will: the program alone, then a call."""
    namespace: dict = {}
    exec(compile(code, "<extracted>", "exec"), namespace)
    return namespace[problem.entry_point]


def fence(code: str, lang: str = "python") -> str:
    return f"```{lang}\n{code.rstrip()}\n```"


def test_fenced_whole_function_gets_the_prompts_imports():
    code = extract_code(f"Here you go:\n\n{fence(SOLUTION)}\n\nThis works by summing.", PROBLEM)
    assert code.startswith("from typing import List\n")
    assert run(code)([1, -2]) is True
    assert "This works" not in code


def test_nested_braces_and_blocks_are_kept_whole():
    solution = textwrap.dedent('''
        def below_zero(operations: List[int]) -> bool:
            table = {"a": {"b": [1, {2: 3}]}}  # braces close early: }
            template = """{
            }"""

            def step(balance, op):
                while True:
                    try:
                        return balance + op
                    finally:
                        pass

            balance = 0
            for op in operations:
                balance = step(balance, op)
                if balance < 0:
                    return True
            return bool(table) and not template
        ''')
    code = extract_code(fence(solution), PROBLEM)
    assert 'table = {"a": {"b": [1, {2: 3}]}}  # braces close early: }' in code
    assert "return bool(table) and not template" in code
    assert run(code)([1, -2]) is True
    assert run(code)([1, 2]) is False


def test_unused_imports_are_kept():
    code = extract_code(fence("import os\nimport re as regex\n\n" + SOLUTION), PROBLEM)
    assert "import os" in code and "import re as regex" in code
    assert run(code)([-1]) is True


def test_code_before_the_fence():
    text = f"{SOLUTION}\nExample:\n{fence('print(below_zero([1, -2]))')}"
    code = extract_code(text, PROBLEM)
    assert run(code)([-1]) is True
    assert "print(" not in code


def test_code_after_the_fence():
    text = f"{fence('below_zero([1, -2])  # usage')}\nThe function:\n\n{SOLUTION}\nDone."
    code = extract_code(text, PROBLEM)
    assert run(code)([-1]) is True
    assert "Done" not in code and "usage" not in code


def test_body_only_completion_is_joined_to_the_prompt():
    text = BODY + "\n\ndef check(candidate):\n    assert candidate([1])\n\nprint(below_zero([1]))\n"
    code = extract_code(text, PROBLEM)
    assert PROMPT.split("\n\n\n")[1].rstrip() in code  # the prompt's def and docstring
    assert "print(below_zero" not in code
    assert run(code)([1, -2]) is True


def test_body_only_inside_a_fence():
    code = extract_code(fence(BODY), PROBLEM)
    assert run(code)([1, -2]) is True


def test_whole_function_completion_without_fence():
    code = extract_code(SOLUTION + "\n\nassert below_zero([-1])\n", PROBLEM)
    assert run(code)([1, -2]) is True
    assert "assert below_zero" not in code


def test_indented_whole_module_in_a_fence_is_dedented():
    code = extract_code(fence(textwrap.indent(SOLUTION, "    ")), PROBLEM)
    assert run(code)([1, -2]) is True


def test_think_blocks_are_stripped():
    decoy = fence("def below_zero(operations):\n    return None")
    text = f"<think>Maybe this?\n{decoy}\nNo.</think>\n{fence(SOLUTION)}"
    code = extract_code(text, PROBLEM)
    assert "return None" not in code
    assert run(code)([1, -2]) is True
    # A template that opens the block in the prompt leaves only the closing tag.
    assert run(extract_code(f"reasoning {decoy}</think>\n{fence(SOLUTION)}", PROBLEM))([-1])


def test_helpers_classes_decorators_and_used_constants_are_kept():
    solution = textwrap.dedent('''
        from functools import lru_cache

        LIMIT = 0
        UNUSED = print("import-time side effect")


        class Account:
            def __init__(self):
                self.balance = 0


        @lru_cache(maxsize=None)
        def is_negative(balance):
            return balance < LIMIT


        def below_zero(operations: List[int]) -> bool:
            account = Account()
            for op in operations:
                account.balance += op
                if is_negative(account.balance):
                    return True
            return False


        if __name__ == "__main__":
            print(below_zero([1, -2]))
        ''')
    code = extract_code(fence(solution), PROBLEM)
    assert "@lru_cache(maxsize=None)" in code and "LIMIT = 0" in code
    assert "UNUSED" not in code and "__main__" not in code
    assert run(code)([1, -2]) is True


def test_helpers_defined_in_the_prompt_are_added_unless_redefined():
    code = extract_code(fence("def decode(s: str):\n    return encode(s)"), HELPER_PROBLEM)
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["encode"]("ab") == "ba"  # the tests call the prompt's helper
    both = "def encode(s):\n    return s\n\ndef decode(s):\n    return s"
    redefined = extract_code(fence(both), HELPER_PROBLEM)
    assert "s[::-1]" not in redefined


def test_multiple_fences_prefer_the_last_one_defining_the_entry_point():
    first = "def below_zero(operations):\n    return None"
    text = "\n".join(
        [fence(first), "Better:", fence(SOLUTION), "Usage:", fence("print(below_zero([1, -2]))")]
    )
    code = extract_code(text, PROBLEM)
    assert "return None" not in code and "print(" not in code
    assert run(code)([1, -2]) is True


def test_helper_in_another_fence_is_pulled_in_only_when_used():
    helper = "import math\n\ndef is_negative(x):\n    return x < 0\n\n"
    helper += "def unrelated():\n    return math.pi"
    main = SOLUTION.replace("if balance < 0:", "if is_negative(balance):")
    code = extract_code(f"{fence(helper)}\nand\n{fence(main)}", PROBLEM)
    assert "def is_negative" in code and "unrelated" not in code
    assert run(code)([1, -2]) is True


def test_truncated_output_is_trimmed_to_what_parses():
    cut = fence(SOLUTION + "\n\ndef check(candidate):\n    assert candidate([1, 2")[: -len("\n```")]
    code = extract_code(cut, PROBLEM)
    assert run(code)([1, -2]) is True


def test_nothing_parses_returns_the_raw_attempt():
    broken = "def below_zero(operations):\n    return (1 +\n"
    code = extract_code(fence(broken), PROBLEM)
    assert code == broken
    with pytest.raises(SyntaxError):
        ast.parse(code)


def test_crlf_and_no_code_at_all():
    assert run(extract_code(fence(SOLUTION).replace("\n", "\r\n"), PROBLEM))([-1]) is True
    assert extract_code("I cannot help with that.", PROBLEM) == "I cannot help with that.\n"


def test_chat_stop_waits_for_a_closed_fence_defining_the_entry_point():
    stop = stop_check(PROBLEM, chat=True)
    usage = fence("print(1)")
    answer = f"{usage}\n{fence(SOLUTION)}\nThis works"
    end = answer.index("This works") - 1
    assert stop(answer[: answer.index("return False")]) is None  # function not finished
    assert stop(answer) == end
    assert fenced_function_end("below_zero", f"<think>{fence(SOLUTION)}") is None
    assert fenced_function_end("below_zero", f"<think>x</think>{fence(SOLUTION)}") is not None


def test_chat_stop_ends_an_open_fence_at_the_code_after_the_function():
    stop = stop_check(PROBLEM, chat=True)
    opened = "Here it is:\n```python\nfrom typing import List\n\n"
    harness = "\n# Test cases\nassert below_zero([-1])\n"
    answer = opened + SOLUTION + harness
    assert stop(answer) == answer.index("# Test cases")
    assert stop(opened + SOLUTION + "\n`") == len(opened + SOLUTION) + 1  # the fence closing
    with_helper = opened + SOLUTION.replace("balance < 0", "is_neg(balance)")
    with_helper += "\ndef is_neg(x):\n    return x < 0\n"
    assert stop(with_helper) is None  # a helper the function calls is part of it
    assert stop(with_helper + "\nprint(1)") == len(with_helper) + 1
    long_signature = SOLUTION.replace("operations: List[int]) -> bool:", "\n    operations: List[int],\n) -> bool:")
    assert stop(opened + long_signature) is None  # `) -> bool:` at column 0 is not the end
    assert stop(opened + long_signature + "\nprint(1)") == len(opened + long_signature) + 1
    cut = stop(answer)
    assert run(extract_code(answer[:cut], PROBLEM))([-1]) is True


def test_completion_stop_at_a_new_top_level_line_unless_a_used_helper():
    assert stop_check(PROBLEM, chat=False) is completion_end
    assert completion_end(BODY) is None
    assert completion_end(BODY + "\n\nprint(1)") == len(BODY) + 2
    assert completion_end(BODY + "\nde") is None  # could still become a helper
    assert completion_end(BODY + "\ndef check(c") == len(BODY) + 1
    with_helper = BODY.replace("balance < 0", "is_neg(balance)")
    with_helper += "\ndef is_neg(x):\n    return x < 0\n"
    assert completion_end(with_helper) is None
    assert completion_end(with_helper + "\nif __name__") == len(with_helper) + 1


def test_messages_hold_the_problem_code_and_feedback():
    draft = draft_messages(PROBLEM)
    assert [m["role"] for m in draft] == ["system", "user"]
    assert PROMPT.rstrip() in draft[1]["content"]
    feedback = "Input: [1]\nExpected: False\nGot: 1"
    repair = repair_messages(PROBLEM, "def below_zero(o):\n    return 1", feedback, "code")
    user = repair[1]["content"]
    assert PROMPT.rstrip() in user and "return 1" in user and "Expected: False" in user


def test_chat_rendering_on_the_tiny_models_tokenizer(tiny_tokenizer):
    assert is_chat_model(tiny_tokenizer)
    text = draft_prompt(tiny_tokenizer, PROBLEM)
    assert text == render(tiny_tokenizer, draft_messages(PROBLEM))
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert PROMPT.rstrip() in text
    assert tiny_tokenizer.decode(encode(tiny_tokenizer, text)) == text
    repair = repair_prompt(tiny_tokenizer, PROBLEM, SOLUTION, "Got: 1")
    assert "Got: 1" in repair and repair.endswith("<|im_start|>assistant\n")


def test_base_model_prompts_are_plain_continuations(tiny_tokenizer):
    assert draft_prompt(tiny_tokenizer, PROBLEM, chat=False) == PROMPT
    repair = repair_prompt(tiny_tokenizer, PROBLEM, "x = 1", "Got: 1", chat=False, mode="code")
    assert repair.endswith(PROMPT) and "# x = 1" in repair and "# Got: 1" in repair
    ast.parse(repair)  # the model continues valid Python


def test_repair_shows_the_attempt_without_docstrings():
    """The problem above already holds the docstring: the attempt's copy is dropped
    (tokens are the cost on a CPU), its code and comments are kept."""
    attempt = 'def below_zero(o):\n    """Doc\n    more doc."""\n    # walk\n    return 1\n'
    user = repair_messages(PROBLEM, attempt, "Got: 1", "code")[1]["content"]
    shown = user.split("An attempt")[1]
    assert "Doc" not in shown and "# walk\n    return 1" in shown
    assert without_docstrings(attempt) == "def below_zero(o):\n    # walk\n    return 1\n"
    only_docstring = 'def f():\n    """Just this."""\n'
    assert without_docstrings(only_docstring) == only_docstring  # still valid code
    assert without_docstrings("def f(:\n") == "def f(:\n"


FAILING = "def below_zero(operations):\n    return sum(operations) < 0\n"
FACTS = "Test: assert candidate([1, -2]) == True\nInput: [1, -2]\nExpected: True\nGot: False"


@pytest.mark.parametrize("mode", REPAIR_MODES)
def test_each_repair_mode_shows_what_it_promises(mode, tiny_tokenizer):
    user = repair_messages(PROBLEM, FAILING, FACTS, mode)[1]["content"]
    assert PROMPT.rstrip() in user and FACTS in user and "```python code block" in user
    assert ("sum(operations) < 0" in user) == (mode == "code")
    assert ("First say, in one or two sentences" in user) == (mode == "explain")
    base = repair_prompt(tiny_tokenizer, PROBLEM, FAILING, FACTS, chat=False, mode=mode)
    assert base.endswith(PROMPT) and "# Expected: True" in base
    assert ("sum(operations)" in base) == (mode == "code")
    ast.parse(base)


def test_every_repair_mode_has_its_own_fingerprint():
    prints = {mode: fingerprint(mode) for mode in REPAIR_MODES}
    assert len(set(prints.values())) == len(REPAIR_MODES)
    assert prints["facts"] == fingerprint()  # the default mode
    assert prints["code"] == "b9e738a02b15"  # the prompts of stores made before modes existed
    with pytest.raises(ValueError, match="repair prompt mode"):
        repair_messages(PROBLEM, FAILING, FACTS, "hint")


GO_PROBLEM = Problem("Go/0", "package main\n\n// Double returns 2x.\nfunc Double(x int) int {\n", "Double", "", language="go")
MATH_PROBLEM = Problem("Math/0", "What is 1/2 + 1/3?", "", "5/6", domain="math")


def test_go_and_math_wording_reach_the_fingerprint_of_runs_that_hold_them(monkeypatch):
    from mlx_repair.generation import go_prompts, math_prompts

    python_only = fingerprint("facts", [PROBLEM])
    with_go, with_math = fingerprint("facts", [PROBLEM, GO_PROBLEM]), fingerprint("facts", [MATH_PROBLEM])
    assert python_only == fingerprint("facts")  # a Python run keeps the hash it had
    assert len({python_only, with_go, with_math}) == 3
    monkeypatch.setattr(go_prompts, "ANSWER_FORMAT", go_prompts.ANSWER_FORMAT + " Explain nothing.")
    monkeypatch.setattr(math_prompts, "SYSTEM", math_prompts.SYSTEM + " Be brief.")
    assert fingerprint("facts", [GO_PROBLEM]) != with_go
    assert fingerprint("facts", [MATH_PROBLEM]) != with_math
    assert fingerprint("facts", [PROBLEM]) == python_only


def test_invent_requests_have_a_fingerprint_that_follows_their_wording(monkeypatch):
    from mlx_repair.generation import invent_prompts

    before = invent_prompts.fingerprint()
    monkeypatch.setitem(invent_prompts.CODE_LEVELS, 3, "a function with a trap")
    assert invent_prompts.fingerprint() != before
