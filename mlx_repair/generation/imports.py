"""Wildcard imports of the standard library made explicit in a training answer.

The 0.5B model opens about one answer in ten with `from typing import *` and
`from collections import *`. An adapter trained on such answers can learn the opening as
a loop: one trained on 179 problems wrote wildcard imports in a third of its drafts, and
30 of 320 ran to the token limit repeating them
(benchmarks/results/learning_signal_qwen0.5b.md). An answer that imports the names it uses
says the same and gives no such line to repeat.
"""

from __future__ import annotations

import ast
import importlib
from functools import lru_cache

# Modules whose names are read in this process to make their wildcard explicit: the
# standard library's, never a module an answer names that is not on this list.
EXPLICABLE = frozenset(
    ("typing", "collections", "math", "itertools", "functools", "re", "string", "heapq", "bisect",
     "operator", "statistics", "fractions", "decimal")
)


def explicit_imports(code: str) -> str:
    """`code` with each top-level `from M import *` of an `EXPLICABLE` module replaced by
    an import of the names of M the code uses (the line dropped when it uses none). A name
    two such modules give is imported from the later one, whose binding a wildcard leaves
    in place: once the imports have run, every name the code uses is bound as before.
    Unchanged if the code does not parse or has no such import; blank lines a dropped
    import leaves at the top are dropped too."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    wildcards = [node for node in tree.body if _is_explicable_wildcard(node, tree.body)]
    if not wildcards:
        return code
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    provider = {name: node.module for node in wildcards for name in used & public_names(node.module)}
    lines = code.splitlines(keepends=True)
    for node in reversed(wildcards):  # from the bottom, so earlier line numbers hold
        names = sorted(name for name, module in provider.items() if module == node.module)
        indent = lines[node.lineno - 1][: node.col_offset]
        replacement = [f"{indent}from {node.module} import {', '.join(names)}\n"] if names else []
        lines[node.lineno - 1 : node.end_lineno] = replacement
    return "".join(lines).lstrip("\n")


@lru_cache(maxsize=None)
def public_names(module: str) -> frozenset[str]:
    """The names `from module import *` binds."""
    imported = importlib.import_module(module)
    names = getattr(imported, "__all__", None)
    return frozenset(names if names is not None else (name for name in dir(imported) if not name.startswith("_")))


def _is_explicable_wildcard(node: ast.stmt, body: list[ast.stmt]) -> bool:
    """`from M import *` of an `EXPLICABLE` module, alone on its lines."""
    if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in EXPLICABLE):
        return False
    alone = all(other is node or other.end_lineno < node.lineno or other.lineno > node.end_lineno for other in body)
    return alone and [alias.name for alias in node.names] == ["*"]
