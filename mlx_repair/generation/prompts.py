"""Draft and repair prompts.

Prompts come in two shapes. Instruct models get chat messages (`draft_messages`,
`repair_messages`) rendered with the tokenizer's own chat template; the dataset reuses
exactly these messages, so a trained adapter sees the turn it was trained on. Base
models get plain text that they continue: the problem prompt itself for a draft, and the
broken code with the feedback as comments above the prompt for a repair.
"""

from __future__ import annotations

import ast
import hashlib
import json
import textwrap

from mlx_repair.generation.extract import DEFINING, is_docstring
from mlx_repair.problems import Problem

SYSTEM = "You are an expert Python programmer. You write correct, complete, self-contained code."
ANSWER_FORMAT = (
    "Write the whole function, with its signature and any imports and helper functions "
    "it needs, in a single ```python code block."
)


def draft_messages(problem: Problem) -> list[dict]:
    """The chat turn that asks an instruct model for a first solution."""
    user = (
        "Complete the following Python function.\n\n"
        f"```python\n{problem.prompt.rstrip()}\n```\n\n{ANSWER_FORMAT}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def repair_messages(problem: Problem, code: str, feedback: str) -> list[dict]:
    """The chat turn that shows an attempt and what the sandbox saw, and asks for a fix.

    One user turn (not a replayed conversation) so that a mined pair becomes one training
    example whose prompt is exactly what the loop showed the model. The attempt is shown
    without its docstrings (the problem above holds them) and the model is told not to
    write failing code again (benchmarks/results/measurement_notes.md). The wording fits
    a `keep` pair too, whose tests all pass.
    """
    user = (
        "Complete the following Python function.\n\n"
        f"```python\n{problem.prompt.rstrip()}\n```\n\n"
        f"An attempt, with its docstring left out:\n\n```python\n{without_docstrings(code).rstrip()}\n```\n\n"
        f"Test results:\n{feedback.rstrip()}\n\n"
        "Where a test fails, find the mistake the results point to and correct it; "
        f"do not write the failing code again. {ANSWER_FORMAT}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def without_docstrings(code: str) -> str:
    """`code` minus the docstrings of functions and classes that have more in their body;
    unchanged if it does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    dropped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, DEFINING) and len(node.body) > 1 and is_docstring(node.body[0]):
            dropped.update(range(node.body[0].lineno - 1, node.body[0].end_lineno))
    lines = code.splitlines(keepends=True)
    return "".join(line for number, line in enumerate(lines) if number not in dropped)


def fingerprint() -> str:
    """A short hash of the prompts' wording. Runs record it, so a store filled with other
    prompts is not resumed as if it were the same experiment."""
    probe = Problem("probe", 'def f(x):\n    """Doc."""\n', "f", "")
    shown = [draft_messages(probe), repair_messages(probe, "def f(x):\n    return x", "Got: 1")]
    text = json.dumps([shown, base_repair_text(probe, "def f(x):\n    return x", "Got: 1")])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def is_chat_model(tokenizer) -> bool:
    """Whether the tokenizer carries a chat template. Some base models ship one too, so
    callers that know better pass `chat=` explicitly to the prompt functions."""
    template = getattr(tokenizer, "has_chat_template", False)
    return bool(template or getattr(tokenizer, "chat_template", None))


def render(tokenizer, messages: list[dict]) -> str:
    """`messages` in the model's chat template, ending where the answer starts.

    Thinking is switched off: a small model's token budget is for code (and
    `extract_code` strips any `<think>` block it writes anyway).
    """
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt. Special tokens (a BOS) are added unless the text already
    starts with them, as a rendered chat template does; the rule mlx-lm's
    `stream_generate` uses, so both see the same ids."""
    bos = getattr(tokenizer, "bos_token", None)
    return tokenizer.encode(text, add_special_tokens=bos is None or not text.startswith(bos))


def draft_prompt(tokenizer, problem: Problem, chat: bool | None = None) -> str:
    """The text that asks for a first attempt: chat messages rendered, or (for a base
    model) the problem prompt itself to continue."""
    if _chat(tokenizer, chat):
        return render(tokenizer, draft_messages(problem))
    return problem.prompt


def repair_prompt(
    tokenizer, problem: Problem, code: str, feedback: str, chat: bool | None = None
) -> str:
    """The text that asks for a repair. A base model sees the failed code and the
    feedback as comments, then the problem prompt again, which it continues."""
    if _chat(tokenizer, chat):
        return render(tokenizer, repair_messages(problem, code, feedback))
    return base_repair_text(problem, code, feedback)


def base_repair_text(problem: Problem, code: str, feedback: str) -> str:
    shown = f"{without_docstrings(code).rstrip()}\n\nTest results:\n{feedback.rstrip()}"
    commented = textwrap.indent(shown, "# ", lambda _: True)
    return (
        f"# This attempt fails its tests:\n{commented}\n\n"
        f"# A corrected version:\n{problem.prompt}"
    )


def _chat(tokenizer, chat: bool | None) -> bool:
    return is_chat_model(tokenizer) if chat is None else chat
