"""Stop checks: end generation as soon as the answer is complete (a closed fence holding
the function, or the end of a base model's function body), so no tokens are spent on
the explanations and test code that small models like to add."""

from __future__ import annotations

import ast
import re
from functools import partial
from typing import Callable

from mlx_repair.generation import go_prompts, invent_prompts, math_prompts
from mlx_repair.problems import MATH, Problem
from mlx_repair.problems.go import GO

# A fenced block with its closing fence.
CLOSED_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
TOP_LEVEL_DEF = re.compile(r"(?:async\s+)?(?:def|class)\s+(\w+)\s*[(:]")
DEF_KEYWORDS = ("async def ", "def ", "class ")
UNDECIDED = object()

# Where the answer is complete in the text generated so far (an index to cut it at), or
# None to keep generating; `sampling.sample` calls one per sequence after every token.
StopCheck = Callable[[str], "int | None"]


def stop_check(problem: Problem, chat: bool) -> StopCheck:
    """A function of the text generated so far that returns where the answer is complete
    (an index to cut the text at) or None to keep generating. A math answer is complete
    after its answer line, an invented problem after its test."""
    if problem.domain == MATH:
        return math_prompts.answer_end
    if problem.domain != "code":
        return partial(invent_prompts.answer_end, problem.domain)
    if problem.language == GO:
        return go_prompts.stop_check(problem, chat)
    if chat:
        return partial(fenced_function_end, problem.entry_point)
    return completion_end


def fenced_function_end(entry_point: str, text: str) -> int | None:
    """Chat answers: complete once a closed code fence holds `def entry_point(`, or once
    the fence still open holds the whole function (see `_open_fence_end`)."""
    defines = re.compile(rf"\bdef\s+{re.escape(entry_point)}\s*\(")
    return fenced_end(text, defines, partial(_open_fence_end, entry_point=entry_point))


def fenced_end(text: str, defines: re.Pattern, open_end: Callable[[str], "int | None"]) -> int | None:
    """Where a chat answer is complete: the end of the first closed fence (after any
    reasoning) whose code `defines` matches, or, in a fence still open, where
    `open_end(code so far)` says (an index into that code)."""
    start = _answer_start(text)
    if start is None:
        return None
    for block in CLOSED_FENCE.finditer(text, start):
        if defines.search(block.group(1)):
            return block.end()
    if text.count("```", start) % 2 == 0:
        return None
    code_start = text.find("\n", text.rfind("```", start)) + 1
    if code_start == 0:
        return None
    end = open_end(text[code_start:])
    return None if end is None else code_start + end


def _open_fence_end(code: str, entry_point: str) -> int | None:
    """Inside a fence still open: complete at the first column-0 line after the function
    that is not a helper it calls, provided the code before it parses. Small models go on
    writing test harnesses in the same block (a third of Qwen 0.5B's HumanEval tokens);
    extraction drops them anyway."""
    function = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(.*\n", code, re.M)
    if function is None:
        return None
    offset = function.end()
    while (end := completion_end(code[offset:])) is not None:
        cut = offset + end
        try:
            ast.parse(code[:cut])
            return cut
        except SyntaxError:  # e.g. a signature over several lines puts `) -> T:` at column 0
            offset = code.find("\n", cut) + 1
            if offset == 0:
                return None
    return None


def completion_end(text: str) -> int | None:
    """Base-model continuations of the prompt: complete at the first line at column 0
    that is not a helper the function calls (a `def`/`class` whose name appears above)."""
    offset = 0
    for line in text.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        if line[0] in " \t\n":  # blank or indented: still inside the function
            continue
        name = _defined_name(line)
        if name is UNDECIDED:
            return None
        if name is None or not re.search(rf"\b{re.escape(name)}\b", text[:start]):
            return start
    return None


def _defined_name(line: str) -> str | None | object:
    """The name a column-0 line defines, None if it defines nothing, UNDECIDED while the
    line is still being generated and could yet become a definition."""
    match = TOP_LEVEL_DEF.match(line)
    if match:
        return match.group(1)
    partial_line = not line.endswith("\n")
    could_define = any(kw.startswith(line) or line.startswith(kw) for kw in DEF_KEYWORDS)
    return UNDECIDED if partial_line and could_define else None


def _answer_start(text: str) -> int | None:
    """Where the answer begins after any reasoning; None while reasoning is unfinished."""
    end = text.rfind("</think>")
    if end >= 0:
        return end + len("</think>")
    return None if "<think>" in text else 0
