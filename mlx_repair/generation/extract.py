"""Extraction of the program a model wrote.

`extract_code` turns whatever the model said into a program that defines the function
under test. Harnesses lie here: one that cut code at the first closing brace and failed
unused imports undercounts a model badly. So extraction parses with `ast` and keeps
whole statements: the target function with every nested block, the helpers, classes and
imports the model wrote, the module-level constants its code uses, and the prompt's own
imports and helpers. It drops only statements that run at import time and define
nothing (tests, prints, `__main__` blocks). Go answers go to `go_extract`.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from mlx_repair.generation import math_prompts
from mlx_repair.problems import MATH, Problem
from mlx_repair.problems.go import GO

# A fenced block: ```lang ... ``` (the closing fence may end a code line, and a block cut
# off by max_tokens has none).
FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
THINK = re.compile(r"<think>.*?</think>", re.S)
# A line that unmistakably begins Python code (prose before unfenced code ends there).
CODE_START = re.compile(
    r"^(?:(?:async\s+)?def\s+\w+\s*\(|class\s+\w+\s*[(:]|@[\w.]+"
    r"|from\s+[\w.]+\s+import\s|import\s+[\w.]+\s*(?:as\s+\w+\s*)?(?:,|$))",
    re.M,
)
DEFINING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
IMPORTS = (ast.Import, ast.ImportFrom)
ASSIGNS = (ast.Assign, ast.AnnAssign, ast.AugAssign)


@dataclass(frozen=True)
class _Code:
    """A parsed piece of model output: its source lines and module."""

    source: str
    tree: ast.Module


def extract_code(text: str, problem: Problem) -> str:
    """A complete program defining `problem.entry_point` from a model's raw output.

    When nothing parses, returns the most plausible raw code, so the sandbox reports the
    model's own syntax error instead of the harness hiding it. A math attempt is its text
    up to its answer line; an invented problem is kept as written.
    """
    if problem.domain != "code":
        return math_prompts.attempt_text(text) if problem.domain == MATH else text.strip()
    text = _strip_think(text.replace("\r\n", "\n"))
    if problem.language == GO:
        from mlx_repair.generation.go_extract import extract_go

        return extract_go(text, problem)
    snippets = _snippets(text, problem)
    parsed = [code for code in map(_parse_trimmed, snippets) if code is not None]
    main = next((c for c in reversed(parsed) if _defines(c.tree, problem.entry_point)), None)
    if main is None:
        return _raw_fallback(snippets, text, problem.entry_point)
    others = [c for c in parsed if c is not main]
    return _assemble(main, _parse_trimmed(problem.prompt), others)


def _strip_think(text: str) -> str:
    text = THINK.sub("", text)
    if "</think>" in text:  # the template opened the block inside the prompt
        text = text.rsplit("</think>", 1)[1]
    return text.replace("<think>", "")


def _snippets(text: str, problem: Problem) -> list[str]:
    """Candidate programs, in output order: each fenced block and any code outside them;
    without fences, the whole text (a base model continuing the prompt)."""
    fences = list(FENCE.finditer(text))
    if not fences:
        snippets = [_unfenced(text, problem, body_allowed=True)]
    else:
        snippets, last = [], 0
        for fence in fences:
            snippets.append(_unfenced(text[last : fence.start()], problem, body_allowed=False))
            snippets.append(_fenced(fence.group(1), problem))
            last = fence.end()
        snippets.append(_unfenced(text[last:], problem, body_allowed=False))
    return [s for s in snippets if s.strip()]


def _fenced(code: str, problem: Problem) -> str:
    """A fenced block is all code: an indented function body is joined to the prompt, a
    uniformly indented module is dedented."""
    if not _first_line(code)[:1].isspace():
        return code
    dedented = textwrap.dedent(code)
    return dedented if CODE_START.match(dedented.lstrip("\n")) else _join_body(problem, code)


def _unfenced(text: str, problem: Problem, body_allowed: bool) -> str:
    """Text outside fences: an indented start is a function body (a base model continuing
    the prompt); otherwise code starts at the first line that unmistakably begins Python
    (chat models sometimes drop the fence and talk first)."""
    if body_allowed and _first_line(text)[:1].isspace():
        return _join_body(problem, text)
    start = CODE_START.search(text)
    return text[start.start() :] if start else ""


def _join_body(problem: Problem, body: str) -> str:
    return problem.prompt.rstrip("\n") + "\n" + body.lstrip("\n")


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _parse_trimmed(source: str) -> _Code | None:
    """Parse, dropping trailing lines until it does (a cut-off or chatty tail). Lines from
    a syntax error's line on are dropped at once: no prefix that holds them can parse."""
    lines = source.splitlines()
    end = len(lines)
    while end > 0:
        candidate = "\n".join(lines[:end]) + "\n"
        try:
            return _Code(candidate, ast.parse(candidate))
        except SyntaxError as error:
            end = min(end, error.lineno or end) - 1
        except ValueError:  # null bytes
            end -= 1
    return None


def _defines(tree: ast.Module, name: str) -> bool:
    """Whether the module defines `name` with a real body (not just the prompt's docstring)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            body = node.body[1:] if is_docstring(node.body[0]) else node.body
            return bool(body)
    return False


def is_docstring(node: ast.stmt) -> bool:
    value = node.value if isinstance(node, ast.Expr) else None
    return isinstance(value, ast.Constant) and isinstance(value.value, str)


def _raw_fallback(snippets: list[str], text: str, entry_point: str) -> str:
    """The snippet that tries to define the entry point, else the first code, else the text."""
    defines = re.compile(rf"\bdef\s+{re.escape(entry_point)}\s*\(")
    named = [s for s in snippets if defines.search(s)]
    return (named[-1] if named else snippets[0] if snippets else text).strip("\n") + "\n"


def _assemble(main: _Code, prompt: _Code | None, others: list[_Code]) -> str:
    """The model's definitions, plus what they need from the prompt and other blocks."""
    kept = _definitions(main.tree)
    defined = _bound_names(kept)
    imports = {ast.unparse(node) for node in kept if isinstance(node, IMPORTS)}
    head: list[str] = []
    if prompt is not None:  # the prompt's imports and helpers: the tests may call helpers
        for node in _definitions(prompt.tree):
            if isinstance(node, IMPORTS) and ast.unparse(node) not in imports:
                head.append(_segment(prompt.source, node))
            elif not isinstance(node, IMPORTS) and not _bound_names([node]) & defined:
                head.append(_segment(prompt.source, node))
                defined |= _bound_names([node])
    head += _needed_from(others, kept, defined)
    body = [_segment(main.source, node) for node in kept]
    return "\n\n".join(head + body).rstrip("\n") + "\n"


def _definitions(tree: ast.Module) -> list[ast.stmt]:
    """Imports, functions and classes, and the module-level assignments they use."""
    kept = [node for node in tree.body if isinstance(node, DEFINING + IMPORTS)]
    assigns = [node for node in tree.body if isinstance(node, ASSIGNS)]
    used = _used_names(kept)
    while True:
        more = [a for a in assigns if a not in kept and _bound_names([a]) & used]
        if not more:
            break
        kept += more
        used |= _used_names(more)
    return sorted(kept, key=lambda node: node.lineno)


def _needed_from(others: list[_Code], kept: list[ast.stmt], defined: set[str]) -> list[str]:
    """Definitions from other blocks that the kept code calls but does not define.
    Only what is referenced: other blocks are often usage examples or tests."""
    segments: list[str] = []
    missing = _used_names(kept) - defined
    for code in others:
        for node in _definitions(code.tree):
            names = _bound_names([node])
            if names & missing:
                segments.append(_segment(code.source, node))
                missing = (missing - names) | (_used_names([node]) - defined - names)
    return segments


def _bound_names(nodes: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, DEFINING):
            names.add(node.name)
        elif isinstance(node, IMPORTS):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        else:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _used_names(nodes: list[ast.stmt]) -> set[str]:
    names = (n for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name))
    return {n.id for n in names if isinstance(n.ctx, ast.Load)}


def _segment(source: str, node: ast.stmt) -> str:
    """The node's original lines (comments and formatting kept), decorators included."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(source.splitlines()[start - 1 : node.end_lineno])
