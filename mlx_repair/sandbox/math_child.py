"""The math checker's side in the sandbox child: two answer trees to SymPy, compared.

The parent (`math_check`) runs this file's text as a candidate program, after lines that
set SEARCH_PATH (where SymPy is installed: the child starts with `-I -S`), EXPECTED and
GOT (trees from `math_answer.parse_answer`), KIND and TOLERANCE. The test calls
`answer()`, which says "equal" or "different". So SymPy's work, which a crafted
expression can make long or large, runs under the child's limits and wall clock.

It never sees the model's text, only trees whose every node the parent's parser allowed,
built here with SymPy's constructors (never `sympify` or `parse_expr`, which `eval`).
Standard library and SymPy only; never imports mlx_repair.
"""

import sys

sys.path[:0] = SEARCH_PATH  # noqa: F821 - set above this text by the parent

import sympy  # noqa: E402

CONSTANTS = {"pi": sympy.pi, "E": sympy.E, "I": sympy.I, "oo": sympy.oo}
FUNCTIONS = {
    "sqrt": sympy.sqrt, "cbrt": sympy.cbrt, "exp": sympy.exp, "log": sympy.log, "ln": sympy.log,
    "Abs": sympy.Abs, "abs": sympy.Abs, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
}
OPERATORS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a**b,
}


def build(node):
    """A SymPy object from a tree node (a set becomes a list of its elements)."""
    tag = node[0]
    if tag == "int":
        return sympy.Integer(node[1])
    if tag == "dec":
        return sympy.Rational(node[1])  # exact: "0.5" is 1/2
    if tag == "sym":
        return sympy.Symbol(node[1])
    if tag == "const":
        return CONSTANTS[node[1]]
    if tag == "neg":
        return -build(node[1])
    if tag == "call":
        return FUNCTIONS[node[1]](*[build(arg) for arg in node[2]])
    if tag == "set":
        return [build(item) for item in node[1]]
    return OPERATORS[tag](build(node[1]), build(node[2]))


def same(a, b, tolerance) -> bool:
    """Equal as numbers or expressions: identical, or their difference simplifies to 0;
    with a tolerance (an answer written as a rounded decimal), numerically close."""
    if a == b:
        return True
    difference = sympy.simplify(a - b)
    if difference == 0:
        return True
    if tolerance and difference.is_number and difference.is_finite:
        return bool(abs(complex(difference)) <= tolerance)
    return False


def same_sets(expected: list, got: list, tolerance) -> bool:
    """The same elements in any order, each counted once."""
    expected, got = _unique(expected, tolerance), _unique(got, tolerance)
    if len(expected) != len(got):
        return False
    left = list(got)
    for item in expected:
        match = next((i for i, other in enumerate(left) if same(item, other, tolerance)), None)
        if match is None:
            return False
        left.pop(match)
    return True


def _unique(items: list, tolerance) -> list:
    kept = []
    for item in items:
        if not any(same(item, other, tolerance) for other in kept):
            kept.append(item)
    return kept


def verdict(expected_tree, got_tree, kind: str, tolerance) -> str:
    expected, got = build(expected_tree), build(got_tree)
    if kind == "set":
        got = got if isinstance(got, list) else [got]
        return "equal" if isinstance(expected, list) and same_sets(expected, got, tolerance) else "different"
    if isinstance(got, list) or isinstance(expected, list):
        return "different"
    if kind == "number" and got.free_symbols:
        return "different"
    return "equal" if same(expected, got, tolerance) else "different"


def answer():
    return verdict(EXPECTED, GOT, KIND, TOLERANCE)  # noqa: F821 - set above this text by the parent
