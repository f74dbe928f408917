"""Test cases: the program to run, and a problem's `check(candidate)` split into cases.

Pure parent-side logic, no processes. A problem's `check(candidate)` is split into one case
per top-level `assert` of a recognised shape (`candidate(x) == y`, `is True`, `not
candidate(x)`, `abs(candidate(x) - y) < tol`, `math.isclose`). For those the child only
evaluates the candidate-side expressions; `judge` compares the decoded values in the
parent, in trusted code. Statements of any other shape (loops, helper calls) become one
case each, run with their asserts rewritten into calls that compare plain values and
survive `python -O`. A check body that cannot be split at all (e.g. it returns early) is
one case: the whole `check(candidate)`.

Each case is deterministically visible (may be shown in feedback) or hidden (held back to
verify a repair on tests it never saw).
"""

from __future__ import annotations

import ast
import hashlib
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from mlx_repair.errors import UserError
from mlx_repair.problems import Problem
from mlx_repair.sandbox.child import TEST_FILE

HIDDEN_SEED = "mlx-repair-hidden-v1"
HIDDEN_FRACTION = 0.5
VALUE_CHARS = 300  # one Input/Expected/Got value in feedback
ASSERT_EQUAL = "__mlx_assert_equal__"
ASSERT_TRUE = "__mlx_assert_true__"


COMPARE_OPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
CLOSE_FUNCTIONS = ("abs", "fabs", "math.fabs")
ISCLOSE_FUNCTIONS = ("isclose", "math.isclose")


@dataclass(frozen=True)
class Operand:
    """One side of a comparison: a literal the parent knows, or code the child evaluates."""

    literal: Any = None
    child: bool = False


@dataclass(frozen=True)
class Case:
    index: int
    kind: str  # "compare" | "close" | "isclose" | "truth" | "statement"
    source: str
    input: str | None
    hidden: bool
    operands: tuple[Operand, ...] = ()
    ops: tuple[Any, ...] = ()  # comparison functions (compare, close)
    keywords: dict = field(default_factory=dict)  # isclose's rel_tol / abs_tol
    expect_true: bool = True  # truth
    got_index: int = 0  # which operand holds the candidate's result


@dataclass(frozen=True)
class TestPlan:
    cases: tuple[Case, ...]
    test_code: Any  # the test module, compiled, asserts in check() rewritten
    test_source: str
    steps: tuple  # (kind, case index | None, code) for the child, in order
    candidate_name: str


def is_whole_program(completion: str, entry_point: str) -> bool:
    """Does the completion define `entry_point` at top level (rather than continue a body)?"""
    try:
        tree = ast.parse(completion)
    except SyntaxError:
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point
        for node in tree.body
    )


def assemble(problem: Problem, completion: str) -> str:
    """The program to run: prompt + body, or the prompt's context + a whole program.

    Nothing is ever cut from the completion. For a whole program the prompt's imports and
    helpers come first (the completion may redefine them; its definitions win).
    """
    if not is_whole_program(completion, problem.entry_point):
        return problem.prompt + completion
    return prompt_context(problem) + "\n" + completion


def prompt_context(problem: Problem) -> str:
    """The prompt without the entry point's own definition (imports, helpers, constants)."""
    try:
        tree = ast.parse(problem.prompt)
    except SyntaxError:
        return ""
    lines = problem.prompt.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
            node.name == problem.entry_point
        ):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            del lines[first - 1 : node.end_lineno]
            break
    return "".join(lines)


def hidden_flags(task_id: str, count: int) -> list[bool]:
    """Which of a problem's cases are hidden: a hash of (task id, index), so stable on any
    machine; with two or more cases at least one is visible and one hidden."""
    scores = [
        int.from_bytes(hashlib.sha256(f"{HIDDEN_SEED}\0{task_id}\0{i}".encode()).digest()[:8], "big")
        for i in range(count)
    ]
    hidden = [score / 2**64 >= HIDDEN_FRACTION for score in scores]
    if count >= 2 and all(hidden):
        hidden[scores.index(min(scores))] = False
    if count >= 2 and not any(hidden):
        hidden[scores.index(max(scores))] = True
    if count == 1:
        hidden = [False]
    return hidden


@lru_cache(maxsize=1024)
def plan_tests(problem: Problem) -> TestPlan:
    """Split the problem's check() into cases and compile everything the child will run."""
    source = problem.test
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise UserError(f"{problem.task_id}: its test code is not valid Python ({error.msg})") from None
    check = _find_check(tree)
    if check is None:
        raise UserError(f"{problem.task_id}: its test code defines no check(candidate)")
    name = check.args.args[0].arg
    original_body = list(check.body)
    _AssertRewriter(source).visit(check)
    ast.fix_missing_locations(tree)
    test_code = compile(tree, TEST_FILE, "exec")
    shapes = _split(original_body, check.body, name, source)
    if shapes is None:
        whole = {"kind": "statement", "node": None, "source": f"check({name})"}
        shapes = [("case", whole, _whole_check_call(check, name))]
    count = sum(1 for kind, _, _ in shapes if kind == "case")
    hidden = iter(hidden_flags(problem.task_id, count))
    cases, steps = [], []
    for kind, spec, code in shapes:
        if kind == "setup":
            steps.append(("setup", None, code))
            continue
        case = _make_case(len(cases), next(hidden), spec, source, name)
        cases.append(case)
        steps.append(("statement" if case.kind == "statement" else "values", case.index, code))
    return TestPlan(tuple(cases), test_code, source, tuple(steps), name)


def _find_check(tree: ast.Module) -> ast.FunctionDef | None:
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.args:
            found = node
    return found


def _whole_check_call(check: ast.FunctionDef, name: str):
    call = ast.parse(f"check({name})")
    ast.increment_lineno(call, check.lineno - 1)
    return compile(call, TEST_FILE, "exec")


def _split(original: list, rewritten: list, name: str, source: str) -> list | None:
    """(kind, spec, code) per top-level statement, or None if the body cannot be split."""
    shapes = []
    for before, after in zip(original, rewritten):
        spec = _assert_shape(before, name)
        try:
            if spec is not None:
                codes = [_compile_expr(node) for node in spec["child_nodes"]]
                shapes.append(("case", spec, codes))
                continue
            code = compile(ast.Module(body=[after], type_ignores=[]), TEST_FILE, "exec")
        except SyntaxError:
            return None  # e.g. `return` or `yield` in check(): run it whole
        kind = "case" if _mentions(before, name) else "setup"
        statement = {"kind": "statement", "node": before}
        shapes.append((kind, statement, code))
    return shapes


def _compile_expr(node: ast.expr):
    return compile(ast.Expression(body=node), TEST_FILE, "eval")


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _dotted(node: ast.expr) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return ""


def _assert_shape(node: ast.stmt, name: str) -> dict | None:
    """Recognise a top-level assert whose values the parent can compare itself."""
    if not isinstance(node, ast.Assert) or not _mentions(node.test, name):
        return None
    test = node.test
    if isinstance(test, ast.Compare):
        return _compare_shape(node, test)
    if isinstance(test, ast.Call) and _dotted(test.func) in ISCLOSE_FUNCTIONS:
        if len(test.args) == 2 and all(_is_literal(k.value) for k in test.keywords):
            keywords = {k.arg: ast.literal_eval(k.value) for k in test.keywords}
            return _operands_shape(node, "isclose", list(test.args), keywords=keywords)
        return None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        if _is_candidate_call(test.operand, name):
            return _operands_shape(node, "truth", [test.operand], expect_true=False)
        return None
    if _is_candidate_call(test, name):
        return _operands_shape(node, "truth", [test], expect_true=True)
    return None


def _compare_shape(node: ast.Assert, test: ast.Compare) -> dict | None:
    left = test.left
    is_close = (
        len(test.ops) == 1
        and isinstance(test.ops[0], (ast.Lt, ast.LtE))
        and isinstance(left, ast.Call)
        and _dotted(left.func) in CLOSE_FUNCTIONS
        and len(left.args) == 1
        and isinstance(left.args[0], ast.BinOp)
        and isinstance(left.args[0].op, ast.Sub)
    )
    ops = tuple(COMPARE_OPS[type(op)] for op in test.ops)
    if is_close:
        difference = left.args[0]
        operands = [difference.left, difference.right, test.comparators[0]]
        return _operands_shape(node, "close", operands, ops=ops)
    return _operands_shape(node, "compare", [left, *test.comparators], ops=ops)


def _is_candidate_call(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and _mentions(node, name)


def _operands_shape(node: ast.Assert, kind: str, operands: list, **extra) -> dict:
    child_nodes = [n for n in operands if not _is_literal(n)]
    return {"kind": kind, "node": node, "operands": operands, "child_nodes": child_nodes, **extra}


def _make_case(index: int, hidden: bool, spec: dict, source: str, name: str) -> Case:
    node = spec["node"]
    if spec["kind"] == "statement":
        text = spec.get("source") or ast.get_source_segment(source, node) or ast.unparse(node)
        return Case(index, "statement", cap(text, VALUE_CHARS), None, hidden)
    text = cap(ast.get_source_segment(source, node) or ast.unparse(node), VALUE_CHARS)
    call = _first_call(node, name)
    input_text = _call_arguments(call) if call is not None else None
    operands = tuple(
        Operand(child=True) if not _is_literal(n) else Operand(literal=ast.literal_eval(n))
        for n in spec["operands"]
    )
    got_index = next((i for i, n in enumerate(spec["operands"]) if _mentions(n, name)), 0)
    return Case(
        index,
        spec["kind"],
        text,
        input_text,
        hidden,
        operands=operands,
        ops=spec.get("ops", ()),
        keywords=spec.get("keywords", {}),
        expect_true=spec.get("expect_true", True),
        got_index=got_index,
    )


def _first_call(node: ast.AST, name: str) -> ast.Call | None:
    for child in ast.walk(node):
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id == name:
            return child
    return None


def _call_arguments(call: ast.Call) -> str:
    parts = [ast.unparse(a) for a in call.args]
    parts += [f"{k.arg}={ast.unparse(k.value)}" if k.arg else f"**{ast.unparse(k.value)}" for k in call.keywords]
    return cap(", ".join(parts), VALUE_CHARS)


class _AssertRewriter(ast.NodeTransformer):
    """Turn `assert` inside check() into calls that compare plain values, so they hold
    under `python -O` and against objects whose __eq__ always says True."""

    def __init__(self, source: str):
        self.source = source

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        site = cap(ast.get_source_segment(self.source, node) or ast.unparse(node), VALUE_CHARS)
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
            name, args = ASSERT_EQUAL, [test.left, test.comparators[0]]
        else:
            name, args = ASSERT_TRUE, [test]
        call = ast.Call(ast.Name(name, ast.Load()), [*args, ast.Constant(site)], [])
        return ast.copy_location(ast.Expr(call), node)


def show(value) -> str:
    return cap(repr(value), VALUE_CHARS)


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
