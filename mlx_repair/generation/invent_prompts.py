"""Prompts that ask the model to invent a problem, and where such an answer is complete.

An invention request travels through the writer like a draft of a pseudo problem whose
domain is `invent-code` or `invent-math` and whose prompt is the whole request; the output
is kept as written, for `problems/invented.py` to read. Each request carries a difficulty
level (1 to `LEVELS`), a topic (rotating, so that samples of one model do not all land on
the same task) and the names of problems already kept, which the model is asked not to
repeat: near-copies are rejected afterwards anyway, and each one costs a model call.
"""

from __future__ import annotations

import hashlib
import json
import re

INVENT_CODE = "invent-code"
INVENT_MATH = "invent-math"
LEVELS = 5
CODE_LEVELS = {
    1: "a one-line function on small inputs",
    2: "a short loop or a simple string or list transformation",
    3: "a function with a few cases to get right, e.g. empty inputs or ties",
    4: "a small algorithm: sorting by a key, counting, or a simple search",
    5: "a careful algorithm with several edge cases",
}
MATH_LEVELS = {
    1: "one arithmetic step",
    2: "two or three steps of arithmetic or fractions",
    3: "a linear or quadratic equation, or a small counting question",
    4: "several steps of algebra, probability or geometry",
    5: "a problem that needs an idea: sequences, number theory or combinatorics",
}
CODE_TOPICS = ("strings", "lists of numbers", "dictionaries", "number properties", "words in a sentence",
               "intervals", "grids given as lists of lists", "dates written as strings")
MATH_TOPICS = ("fractions", "percentages", "equations", "probability", "geometry", "sequences",
               "divisibility", "polynomials")
SYSTEM = "You write clear, correct and original exercises."
# Complete once a closed fence holds the test function.
CLOSED_TEST_FENCE = re.compile(r"```[^\n]*\n(?:(?!```).)*?def\s+check\s*\((?:(?!```).)*```", re.S)
ANSWER_LINE_END = re.compile(r"^\s*answer\s*:[^\n]*\S[^\n]*\n", re.I | re.M)


def code_request(level: int, index: int, taken: list[str]) -> str:
    """The user turn asking for a HumanEval-format problem at `level`."""
    topic = CODE_TOPICS[index % len(CODE_TOPICS)]
    return (
        f"Invent a new Python programming exercise about {topic}, of difficulty {level} on a scale from 1 to "
        f"{LEVELS}: {CODE_LEVELS[level]}.\n\n"
        "Write one ```python code block holding:\n"
        "1. the function: its signature, a docstring that states the task and shows two or three examples, "
        "each a `>>> name(arguments)` line followed by a line with the expected result, and a correct body;\n"
        "2. `def check(candidate):` with 5 to 8 lines of the form `assert candidate(...) == expected`, "
        "edge cases included.\n\n"
        f"The form, shown on another task:\n{CODE_FORM}\n"
        # The number keeps requests apart: two requests of one text would share the
        # sampling seed's draws and come back as the same output.
        f"{_taken(taken)}Now write new exercise number {index + 1}."
    )


# The form of an answer, shown once in each code request: a model of 0.5B parameters asked
# in words alone wrote solutions, test functions of other names and prints instead. The
# body is asked for: it is the reference the asserts are checked against (only the
# signature and docstring are shown to the solvers).
CODE_FORM = '''```python
def repeat_each(items, times):
    """Return a list in which each item of items appears times times in a row.
    >>> repeat_each([1, 2], 2)
    [1, 1, 2, 2]
    >>> repeat_each(["a"], 3)
    ['a', 'a', 'a']
    """
    return [item for item in items for _ in range(times)]


def check(candidate):
    assert candidate([1, 2], 2) == [1, 1, 2, 2]
    assert candidate(["a"], 3) == ["a", "a", "a"]
    assert candidate([], 4) == []
    assert candidate([5], 0) == []
    assert candidate([1, 2, 3], 1) == [1, 2, 3]
```'''


def math_request(level: int, index: int, taken: list[str]) -> str:
    """The user turn asking for a math question with an exact answer at `level`."""
    topic = MATH_TOPICS[index % len(MATH_TOPICS)]
    return (
        f"Invent a new math problem about {topic}, of difficulty {level} on a scale from 1 to {LEVELS}: "
        f"{MATH_LEVELS[level]}. Its answer must be exact: one number, expression or set.\n\n"
        "Write exactly two lines:\nQuestion: <the problem>\n"
        "Answer: <the answer in Python/SymPy syntax, e.g. 17/3, sqrt(2)/2, x**2 - 1, {-2, 3}>\n"
        f"{_taken(taken)}Problem {index + 1}:"
    )


def _taken(names: list[str]) -> str:
    if not names:
        return ""
    return "Already written, so write something different from: " + "; ".join(names[-8:]) + ".\n"


def fingerprint() -> str:
    """A short hash of the requests' wording at every level, recorded by invent runs."""
    requests = [[code_request(level, 0, ["taken"]), math_request(level, 0, ["taken"])] for level in CODE_LEVELS]
    return hashlib.sha256(json.dumps([SYSTEM, requests]).encode()).hexdigest()[:12]


def draft_messages(problem) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": problem.prompt}]


def answer_end(domain: str, text: str) -> int | None:
    """Where an invention is complete: the closed fence holding check() for code, the
    finished answer line for math."""
    pattern = CLOSED_TEST_FENCE if domain == INVENT_CODE else ANSWER_LINE_END
    match = pattern.search(text)
    return match.end() if match else None
