"""The Go wording of the prompts, and where a Go answer is complete.

The draft and repair turns are `prompts.py`'s, in Go's words: the chat asks for Go in a
```go block, an attempt is shown without its doc comments, a base model's repair prompt
carries the feedback as `//` comments. An answer is complete once a closed fence holds
`func <entry point>`, or once the open fence holds the whole function and the model has
gone on to a `main` or a test; a base model's continuation, once the body's braces close
(read as tokens: a brace in a string, a rune or a comment does not count) and no helper
it calls follows.
"""

from __future__ import annotations

import re

from mlx_repair.problems.go_syntax import declarations, tokenize
from mlx_repair.problems import Problem

SYSTEM = "You are an expert Go programmer. You write correct, complete, idiomatic code."
ANSWER_FORMAT = (
    "Write the whole function, with its signature and any imports and helper functions "
    "it needs, in a single ```go code block."
)
NOT_THE_ANSWER = re.compile(r"main|(?:Test|Benchmark|Example)\w*")  # functions a model adds to try its code


def without_doc_comments(code: str) -> str:
    """`code` minus the comment lines directly above its top-level declarations."""
    kept, last = [], 0
    for decl in declarations(code):
        own = decl.text(code)
        body = own[len(own) - len(own.lstrip()):]
        while body.startswith("//") or body.startswith("/*"):
            end = body.find("\n") + 1 if body.startswith("//") else body.find("*/") + 2
            body = body[end:].lstrip() if end > 0 else ""
        kept.append(code[last : decl.start] + body)
        last = decl.end
    return "".join(kept) + code[last:]


def stop_check(problem: Problem, chat: bool):
    """`stops.stop_check` for Go."""
    if chat:
        return lambda text: fenced_function_end(problem.entry_point, text)
    return completion_end


def fenced_function_end(entry_point: str, text: str) -> int | None:
    from mlx_repair.generation.stops import fenced_end

    defines = re.compile(rf"\bfunc\s+{re.escape(entry_point)}\s*[\[(]")
    return fenced_end(text, defines, lambda code: _after_function(code, entry_point))


def _after_function(code: str, entry_point: str) -> int | None:
    """In an open fence: the start of a `main` or test declared after the closed entry point."""
    decls = declarations(code)
    entry = next((i for i, d in enumerate(decls) if d.keyword == "func" and d.name == entry_point), None)
    if entry is None or not decls[entry].closed:
        return None
    for decl in decls[entry + 1 :]:
        if decl.keyword == "func" and NOT_THE_ANSWER.fullmatch(decl.name):
            return decl.start
    return None


def completion_end(text: str) -> int | None:
    """A base model continuing the prompt (which ends inside the body): complete after the
    brace that closes the body and any following function that the code above calls."""
    end = _closing_end(text, 1)
    while end is not None:
        rest = text[end:]
        if not rest.strip() or not rest.lstrip().count("\n") and "func ".startswith(rest.lstrip()[:5]):
            return None  # nothing yet, or a line that may still become a declaration
        name = re.match(r"\s*func\s+(\w+)", rest)
        if name is None or not re.search(rf"\b{re.escape(name.group(1))}\b", text[:end]):
            return end
        helper_end = _closing_end(rest, 0)
        if helper_end is None:
            return None
        end += helper_end
    return None


def _closing_end(text: str, depth: int) -> int | None:
    """Where the brace that brings `depth` (the braces open before `text`) to 0 ends, the
    rest of its line included."""
    opened = depth > 0
    for token in tokenize(text):
        if token.kind == "op" and token.text == "{":
            depth, opened = depth + 1, True
        elif token.kind == "op" and token.text == "}":
            depth -= 1
            if opened and depth == 0:
                newline = text.find("\n", token.end)
                return len(text) if newline < 0 else newline + 1
    return None
