"""Extraction of the Go program a model wrote.

The trap this avoids (a published harness fell into it): rebuilding the answer from the
first `{...}` block cuts every function that has a nested block. Here code is read as
tokens (`problems/go_syntax.py`), so a brace inside a string, a rune or a comment never
ends anything, and whole top-level declarations are kept: the function under test with
every nested block, struct and map literal, the helpers, types, constants and variables
the model wrote, its imports and the prompt's. Dropped: `main`, and the `Test`,
`Benchmark` and `Example` functions models add to try their code (solution.go is not a
test file; a `TestX` there would collide with the problem's). `goimports` fixes the
imports in the sandbox, so none are guessed here.
"""

from __future__ import annotations

import re

from mlx_repair.generation.extract import FENCE
from mlx_repair.generation.go_prompts import NOT_THE_ANSWER
from mlx_repair.problems import Problem
from mlx_repair.problems.go_syntax import Decl, code_tokens, declarations, function, package_name

CODE_START = re.compile(r"^(?:package\s+\w|import\s*[(\"]|func\s|type\s+\w|var\s|const\s)", re.M)
HEADER = ("package", "import")


def extract_go(text: str, problem: Problem) -> str:
    """A whole Go file defining `problem.entry_point` from a model's answer (think blocks
    already removed); the most plausible raw code when none does, so that the sandbox
    reports the model's own compile error."""
    snippets = [s for s in _snippets(text, problem) if s.strip()]
    main = next((s for s in reversed(snippets) if _defines(s, problem.entry_point)), None)
    if main is None:
        named = [s for s in snippets if f"func {problem.entry_point}" in s]
        return (named[-1] if named else snippets[0] if snippets else text).strip("\n") + "\n"
    return _assemble(problem, main, [s for s in snippets if s is not main])


def _snippets(text: str, problem: Problem) -> list[str]:
    """Each fenced block and the code outside them; without fences, the whole text. A
    block that is only a body (it does not start with a declaration) continues the prompt."""
    fences = list(FENCE.finditer(text))
    if not fences:
        return [_as_code(text, problem, body_allowed=True)]
    pieces, last = [], 0
    for fence in fences:
        pieces += [_as_code(text[last : fence.start()], problem, False), _as_code(fence.group(1), problem, True)]
        last = fence.end()
    return pieces + [_as_code(text[last:], problem, False)]


def _as_code(text: str, problem: Problem, body_allowed: bool) -> str:
    """A body (its first line indented, or a lone closing brace) joined to the prompt;
    otherwise the text from the first line that begins a declaration (prose dropped)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if body_allowed and (first[:1].isspace() or first.startswith("}")):
        return problem.prompt.rstrip("\n") + "\n" + text.lstrip("\n")
    start = CODE_START.search(text)
    return text[start.start() :] if start else ""


def _defines(source: str, entry_point: str) -> bool:
    found = function(source, entry_point)
    return found is not None and found.closed


def _assemble(problem: Problem, main: str, others: list[str]) -> str:
    """The prompt's package clause, every import spec seen, then the kept declarations."""
    decls = [d for d in declarations(main) if _kept(d)]
    kept = [d.text(main).strip("\n") for d in decls if d.keyword not in HEADER]
    defined = {d.name for d in decls}
    kept += _needed_from(others, "\n".join(kept), defined)
    imports = [d.text(source).strip("\n") for source in (problem.prompt, main) for d in declarations(source) if d.keyword == "import"]
    package = package_name(problem.prompt) or package_name(main) or "main"
    return "\n\n".join([f"package {package}", *dict.fromkeys(imports), *kept]) + "\n"


def _kept(decl: Decl) -> bool:
    return decl.closed and not (decl.keyword == "func" and NOT_THE_ANSWER.fullmatch(decl.name))


def _needed_from(others: list[str], code: str, defined: set[str]) -> list[str]:
    """Declarations from other blocks that the kept code uses but does not declare."""
    used = {t.text for t in code_tokens(code) if t.kind == "ident"}
    found = []
    for source in others:
        for decl in declarations(source):
            if decl.keyword not in HEADER and _kept(decl) and decl.name in used - defined:
                found.append(decl.text(source).strip("\n"))
                defined.add(decl.name)
    return found
