"""A math answer, as the model wrote it, to a plain tree the checker can trust.

Model text is never given to `eval`, `sympify` or `parse_expr` (SymPy's parsers end in
`eval`). Python's own `ast.parse` reads it, and only a small grammar passes: numbers,
names, + - * / ** (and ^), the functions in `FUNCTIONS`, and a set of those. What passes
becomes a tree of tuples and strings, e.g. ("div", ("int", "17"), ("int", "3")), which
`math_child` turns into SymPy objects with SymPy's constructors inside the sandbox.

The limits here are what make a hostile answer fail fast, before any process starts: a
length cap (a 100,000-character answer is refused unread), no power whose exponent holds
another power (`9**9**9**9`), no exponent beyond `MAX_EXPONENT`, no name that is not a
symbol, constant or allowed function (`__import__('os')`).
"""

from __future__ import annotations

import ast
import re

MAX_ANSWER_CHARS = 200
MAX_DIGITS = 100  # digits of one integer literal
MAX_EXPONENT = 1000  # |n| of a literal exponent
MAX_NODES = 200
CONSTANTS = ("pi", "E", "I", "oo")
# name -> how many arguments it takes
FUNCTIONS = {
    "sqrt": (1,), "cbrt": (1,), "exp": (1,), "log": (1, 2), "ln": (1,), "Abs": (1,), "abs": (1,),
    "sin": (1,), "cos": (1,), "tan": (1,), "asin": (1,), "acos": (1,), "atan": (1,),
}
OPERATORS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
ANSWER_KINDS = ("number", "expression", "set")
SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9]{0,19}")
# "x = 3" is read as "3"; a trailing full stop, surrounding $ and \boxed{} are dropped.
ASSIGNED = re.compile(r"^[A-Za-z]\w*\s*=(?!=)\s*(.+)$", re.S)
BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.S)
REPLACEMENTS = (("^", "**"), ("\u2212", "-"), ("\u00d7", "*"), ("\u00b7", "*"))
# The fixed final-answer format the prompts ask for: a last line "Answer: ..." (markdown
# emphasis around it allowed); failing that, the last \boxed{...}.
FINAL_ANSWER = re.compile(r"^[*_#\s]*(?:final\s+)?answer[*_\s]*[:=][*_\s]*(.*?)[*\s]*$", re.I | re.M)
BOXED_ANYWHERE = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


class InvalidAnswer(ValueError):
    """Not a valid answer; the message says why, in words for the model."""


def final_answer(text: str) -> str | None:
    """The answer a model's text ends with: its last "Answer: ..." line, else its last
    \\boxed{...}, else the whole text when it is one line (an answer given bare)."""
    lines = [line for line in FINAL_ANSWER.findall(text) if line.strip()]
    if lines:
        return lines[-1].strip()
    boxed = BOXED_ANYWHERE.findall(text)
    if boxed:
        return boxed[-1].strip()
    bare = text.strip()
    return bare if bare and "\n" not in bare else None


def parse_answer(text: str) -> tuple:
    """The tree of `text`, or InvalidAnswer saying why it is not a valid answer."""
    if len(text) > MAX_ANSWER_CHARS:
        raise InvalidAnswer(f"longer than {MAX_ANSWER_CHARS} characters")
    source = normalize(text)
    if not source:
        raise InvalidAnswer("empty")
    try:
        expression = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise InvalidAnswer("not a number, expression or set in Python/SymPy syntax") from None
    if sum(1 for _ in ast.walk(expression)) > MAX_NODES:
        raise InvalidAnswer(f"more than {MAX_NODES} parts")
    if isinstance(expression, (ast.Set, ast.Tuple, ast.List)):
        return ("set", tuple(_tree(item, source) for item in expression.elts))
    if isinstance(expression, ast.Dict) and not expression.keys:
        return ("set", ())
    return _tree(expression, source)


def normalize(text: str) -> str:
    """The answer without decoration: spaces, $...$, \\boxed{...}, "x =", a final full stop."""
    text = text.strip().rstrip(".").strip().strip("$").strip()
    if boxed := BOXED.match(text):
        text = boxed.group(1).strip()
    if assigned := ASSIGNED.match(text):
        text = assigned.group(1).strip()
    for old, new in REPLACEMENTS:
        text = text.replace(old, new)
    return text.rstrip(".").strip()


def answer_kind(tree: tuple) -> str:
    """"set", "number" (no symbol in it) or "expression"."""
    if tree[0] == "set":
        return "set"
    return "expression" if any(node[0] == "sym" for node in nodes(tree)) else "number"


def nodes(tree: tuple):
    """Every node of a tree, the root first."""
    yield tree
    for part in tree[1:]:
        if isinstance(part, tuple) and part and isinstance(part[0], str):
            yield from nodes(part)
        elif isinstance(part, tuple):
            for item in part:
                yield from nodes(item)


def decimals(tree: tuple) -> int:
    """The most digits after the point among the tree's decimal numbers (0 if none)."""
    places = [len(node[1].split(".")[1]) if "." in node[1] else 0 for node in nodes(tree) if node[0] == "dec"]
    return max(places, default=0)


def _tree(node: ast.AST, source: str) -> tuple:
    if isinstance(node, ast.Constant):
        return _number(node, source)
    if isinstance(node, ast.Name):
        return _name(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _tree(node.operand, source)
        return ("neg", inner) if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        if isinstance(node.op, ast.Pow):
            _check_exponent(node.right)
        return (OPERATORS[type(node.op)], _tree(node.left, source), _tree(node.right, source))
    if isinstance(node, ast.Call):
        return _call(node, source)
    what = ast.get_source_segment(source, node) or type(node).__name__
    raise InvalidAnswer(f"{what[:40]!r} is not allowed (numbers, symbols, + - * / ^, sqrt(), ... only)")


def _number(node: ast.Constant, source: str) -> tuple:
    value = node.value
    if type(value) is int:
        if len(str(abs(value))) > MAX_DIGITS:
            raise InvalidAnswer(f"a number of more than {MAX_DIGITS} digits")
        return ("int", str(value))
    if type(value) is float:
        text = (ast.get_source_segment(source, node) or repr(value)).replace("_", "")
        if not abs(value) < 1e100 or (value != 0 and abs(value) < 1e-100):
            raise InvalidAnswer(f"{text} is out of range")
        return ("dec", text)
    raise InvalidAnswer(f"{str(value)[:40]!r} is not a number")


def _name(name: str) -> tuple:
    if name in CONSTANTS:
        return ("const", name)
    if name in FUNCTIONS:
        raise InvalidAnswer(f"{name} is a function: write {name}(...)")
    if not SYMBOL.fullmatch(name):
        raise InvalidAnswer(f"{name[:40]!r} is not allowed as a name")
    return ("sym", name)


def _call(node: ast.Call, source: str) -> tuple:
    name = node.func.id if isinstance(node.func, ast.Name) else ""
    if name not in FUNCTIONS:
        shown = ast.get_source_segment(source, node.func) or "this call"
        raise InvalidAnswer(f"{shown[:40]!r} is not an allowed function ({', '.join(FUNCTIONS)})")
    if node.keywords or len(node.args) not in FUNCTIONS[name]:
        raise InvalidAnswer(f"{name}() takes {' or '.join(map(str, FUNCTIONS[name]))} argument(s)")
    return ("call", name, tuple(_tree(arg, source) for arg in node.args))


def _check_exponent(exponent: ast.AST) -> None:
    """A power's exponent holds no other power and no literal beyond MAX_EXPONENT, so no
    answer asks for a number of unbounded size."""
    for node in ast.walk(exponent):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            raise InvalidAnswer("a power tower (a power in an exponent)")
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and abs(node.value) > MAX_EXPONENT:
            raise InvalidAnswer(f"an exponent beyond {MAX_EXPONENT}")
