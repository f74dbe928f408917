"""Prompts for math problems, and where a math answer is complete.

A math problem is a question; the model works it out and ends with one line in the fixed
final-answer format `Answer: <answer>`, which the checker reads (`sandbox/math_answer.py`).
The whole text is kept as the attempt, reasoning included: that is what a trained answer
should look like, and the checker finds the last answer line in it.

A repair turn shows the earlier solution whatever the repair prompt mode: a math attempt
is short, and showing it is what lets a `keep` record ("a correct answer stays correct")
exist. Published self-training on math collapsed without such records (60% -> 14%), so
the dataset always mixes them in for math.
"""

from __future__ import annotations

import re

SYSTEM = "You are a careful mathematician. You reason briefly and give exact answers."
ANSWER_FORMAT = (
    "Work it out briefly, then end with one line of the form `Answer: <answer>`, the answer "
    "in Python/SymPy syntax: a number or fraction (17/3), an expression (sqrt(2)/2, x**2 - 1) "
    "or a set ({-2, 3})."
)
EXPLAIN_FIRST = "First say in one sentence where the earlier solution went wrong; then solve it again."
# An answer line that is complete: "Answer:" with something after it, then a newline.
ANSWER_LINE_END = re.compile(r"^[*_#\s]*(?:final\s+)?answer[*_\s]*[:=][^\n]*\S[^\n]*\n", re.I | re.M)


def draft_messages(problem) -> list[dict]:
    user = f"{problem.prompt.strip()}\n\n{ANSWER_FORMAT}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def repair_messages(problem, attempt: str, feedback: str, mode: str) -> list[dict]:
    """The question, the earlier solution and what the checker said of its answer."""
    explain = f"{EXPLAIN_FIRST} " if mode == "explain" else ""
    user = (
        f"{problem.prompt.strip()}\n\nAn earlier solution:\n\n{attempt.strip()}\n\n"
        f"Checked answer:\n{feedback.strip()}\n\n{explain}{ANSWER_FORMAT}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def base_draft_text(problem) -> str:
    """A base model continues a worked-solution layout."""
    return f"Question: {problem.prompt.strip()}\n{ANSWER_FORMAT}\nSolution:"


def base_repair_text(problem, attempt: str, feedback: str) -> str:
    return (
        f"Question: {problem.prompt.strip()}\nAn earlier solution:\n{attempt.strip()}\n"
        f"Checked answer:\n{feedback.strip()}\n{ANSWER_FORMAT}\nSolution:"
    )


def answer_end(text: str) -> int | None:
    """Complete once an answer line is finished (a newline after it): cut there."""
    match = ANSWER_LINE_END.search(text)
    return match.end() if match else None


def attempt_text(text: str) -> str:
    """The attempt kept from a model's output: its text up to the end of its first
    complete answer line (all of it when it has none), think blocks dropped."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S).strip()
    end = answer_end(text + "\n")
    return text[:end].strip() if end is not None else text
