"""Draft and repair prompts.

Prompts come in two shapes. Instruct models get chat messages (`draft_messages`,
`repair_messages`) rendered with the tokenizer's own chat template; the dataset reuses
exactly these messages, so a trained adapter sees the turn it was trained on. Base
models get plain text that they continue: the problem prompt itself for a draft, and the
feedback (and, in `code` mode, the broken code) as comments above the prompt for a repair.

A repair prompt has one of three modes (`REPAIR_MODES`, the `repair.prompt` setting):
- `code`: the failing attempt and its test results;
- `facts`: the test results only (input / expected / got, or the error), without the
  failing code, which small models tend to write again;
- `explain`: as `facts`, and the model is asked to say in a sentence or two what the
  failing tests show before it writes the code.
Their measurement is in benchmarks/results/repair_prompt_modes.md.

Math problems and requests to invent a problem have their own wording
(`math_prompts`, `invent_prompts`); the functions here hand them over by `problem.domain`.
Go problems take the same turns in Go's words (`go_prompts`), chosen by `problem.language`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import textwrap
from typing import Iterable, NamedTuple

from mlx_repair.config import REPAIR_MODES, RepairSection
from mlx_repair.generation import go_prompts, invent_prompts, math_prompts
from mlx_repair.generation.extract import DEFINING, is_docstring
from mlx_repair.problems import MATH, Problem
from mlx_repair.problems.go import GO

SYSTEM = "You are an expert Python programmer. You write correct, complete, self-contained code."
ANSWER_FORMAT = (
    "Write the whole function, with its signature and any imports and helper functions "
    "it needs, in a single ```python code block."
)


class Words(NamedTuple):
    """What a prompt says that depends on the problem's language."""

    name: str
    fence: str
    system: str
    answer_format: str
    doc: str  # what an attempt is shown without
    comment: str  # a base model's line comment


def words(problem: Problem) -> Words:
    """The problem's language's words (read at call time: tests change ANSWER_FORMAT)."""
    if problem.language == GO:
        return Words("Go", "go", go_prompts.SYSTEM, go_prompts.ANSWER_FORMAT, "doc comment", "// ")
    return Words("Python", "python", SYSTEM, ANSWER_FORMAT, "docstring", "# ")


def draft_messages(problem: Problem) -> list[dict]:
    """The chat turn that asks an instruct model for a first solution."""
    if problem.domain != "code":
        return (math_prompts if problem.domain == MATH else invent_prompts).draft_messages(problem)
    said = words(problem)
    user = (
        f"Complete the following {said.name} function.\n\n"
        f"```{said.fence}\n{problem.prompt.rstrip()}\n```\n\n{said.answer_format}"
    )
    return [{"role": "system", "content": said.system}, {"role": "user", "content": user}]


DEFAULT_MODE = RepairSection.prompt
EXPLAIN_FIRST = (
    "First say, in one or two sentences, what the failing tests show the function must do "
    "differently; then write the code."
)


def repair_messages(problem: Problem, code: str, feedback: str, mode: str = DEFAULT_MODE) -> list[dict]:
    """The chat turn that shows what the sandbox saw of an attempt and asks for a fix.

    One user turn (not a replayed conversation) so that a mined pair becomes one training
    example whose prompt is exactly what the loop showed the model. In `code` mode the
    attempt is shown without its docstrings (the problem above holds them) and the model
    is told not to write failing code again (benchmarks/results/measurement_notes.md);
    that wording fits a `keep` pair too, whose tests all pass.
    """
    _check_mode(mode)
    if problem.domain == MATH:
        return math_prompts.repair_messages(problem, code, feedback, mode)
    said = words(problem)
    task = f"Complete the following {said.name} function.\n\n```{said.fence}\n{problem.prompt.rstrip()}\n```\n\n"
    if mode == "code":
        user = (
            f"{task}An attempt, with its {said.doc} left out:\n\n"
            f"```{said.fence}\n{without_docs(problem, code).rstrip()}\n```\n\n"
            f"Test results:\n{feedback.rstrip()}\n\n"
            "Where a test fails, find the mistake the results point to and correct it; "
            f"do not write the failing code again. {said.answer_format}"
        )
    else:
        explain = f"{EXPLAIN_FIRST} " if mode == "explain" else ""
        user = (
            f"{task}An earlier attempt failed these tests:\n{feedback.rstrip()}\n\n"
            f"Write a version that passes them. {explain}{said.answer_format}"
        )
    return [{"role": "system", "content": said.system}, {"role": "user", "content": user}]


def shows_code(mode: str) -> bool:
    """Whether a repair prompt of this mode shows the attempt's code (only `code` does):
    a `keep` record, passing code shown as passing, makes sense only there."""
    return _check_mode(mode) == "code"


def _check_mode(mode: str) -> str:
    if mode not in REPAIR_MODES:
        raise ValueError(f"repair prompt mode must be one of {REPAIR_MODES}, got {mode!r}")
    return mode


def without_docs(problem: Problem, code: str) -> str:
    """The attempt as a repair prompt shows it: without its docstrings (Go: doc comments)."""
    return go_prompts.without_doc_comments(code) if problem.language == GO else without_docstrings(code)


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


PROBES = {
    ("python", "code"): Problem("probe", 'def f(x):\n    """Doc."""\n', "f", ""),
    (GO, "code"): Problem("probe", "package main\n\n// F doc.\nfunc F(x int) int {\n", "F", "", language=GO),
    ("python", MATH): Problem("probe", "What is 1/3 + 1/3?", "", "2/3", domain=MATH),
}


def fingerprint(mode: str = DEFAULT_MODE, problems: Iterable[Problem] = ()) -> str:
    """A short hash of the prompts' wording in this repair mode: Python's always, and Go's
    or math's when `problems` hold such problems (so a Python run keeps its hash). Runs
    record it, so a store filled with other prompts is not resumed as if it were the same
    experiment."""
    kinds = sorted({(p.language, p.domain) for p in problems} - {("python", "code")})
    texts = [_wording(PROBES[kind], mode) for kind in [("python", "code"), *kinds] if kind in PROBES]
    return hashlib.sha256("".join(texts).encode()).hexdigest()[:12]


def _wording(probe: Problem, mode: str) -> str:
    attempt = ("def f(x):\n    return x", "Got: 1")
    shown = [draft_messages(probe), repair_messages(probe, *attempt, mode)]
    base = [base_repair_text(probe, *attempt, mode)]
    if probe.domain == MATH:  # a base model's math draft has its own layout too
        base.insert(0, math_prompts.base_draft_text(probe))
    return json.dumps([shown, *base])


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
    return math_prompts.base_draft_text(problem) if problem.domain == MATH else problem.prompt


def repair_prompt(
    tokenizer, problem: Problem, code: str, feedback: str, chat: bool | None = None, mode: str = DEFAULT_MODE
) -> str:
    """The text that asks for a repair. A base model sees the feedback (and in `code`
    mode the failed code) as comments, then the problem prompt again, which it continues."""
    if _chat(tokenizer, chat):
        return render(tokenizer, repair_messages(problem, code, feedback, mode))
    return base_repair_text(problem, code, feedback, mode)


def base_repair_text(problem: Problem, code: str, feedback: str, mode: str = DEFAULT_MODE) -> str:
    """A base model cannot be asked to explain first: `explain` reads as `facts` here."""
    if problem.domain == MATH:
        return math_prompts.base_repair_text(problem, code, feedback)
    results = f"Test results:\n{feedback.rstrip()}"
    if shows_code(mode):
        shown, heading = f"{without_docs(problem, code).rstrip()}\n\n{results}", "This attempt fails its tests"
    else:
        shown, heading = feedback.rstrip(), "An earlier attempt failed these tests"
    comment = words(problem).comment
    commented = textwrap.indent(shown, comment, lambda _: True)
    return f"{comment}{heading}:\n{commented}\n\n{comment}A corrected version:\n{problem.prompt}"


def _chat(tokenizer, chat: bool | None) -> bool:
    return is_chat_model(tokenizer) if chat is None else chat
