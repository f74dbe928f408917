"""A Go problem's `_test.go` file split into cases. Pure parent-side logic, no processes.

A test function of the common table-driven shape,

    tests := []struct{ in string; want int }{ {"a", 1}, {"b", 2} }   // or a named struct type
    for _, tc := range tests {
        got := Entry(tc.in)                  // or `if got := ...;`, or the call compared directly
        if got != tc.want { t.Errorf(...) }  // or !reflect.DeepEqual(got, tc.want),
    }                                        // or math.Abs(got-tc.want) > eps

becomes one case per row: the sandbox's harness calls the candidate on each row itself and
reports what it returned, and the parent compares that with the row's `want` as reported
by a run of the same harness with no candidate in it (`go_run.expectations`). A test
function of any other shape is one case, run whole through `t.Run`; its feedback is the
test's own output (the failing `t.Errorf` lines). Which cases are hidden is decided as
for Python (`cases.hidden_flags`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mlx_repair.problems import Problem
from mlx_repair.problems.go_syntax import Token, closing, code_tokens, declarations, span, split_top_level
from mlx_repair.sandbox.cases import VALUE_CHARS, cap, hidden_flags


@dataclass(frozen=True)
class TableTest:
    """A table-driven test function, read well enough to run its rows one by one."""

    test: str  # the test function's name
    table: str  # the table's composite literal, source text
    loop_var: str  # the range loop's value variable (`tc`)
    call: str  # the call of the entry point, source text, in terms of loop_var
    arguments: tuple[str, ...]  # the call's arguments, shown as the case's input
    want: str  # the expected value, source text (`tc.want`)
    kind: str  # "equal" (!= or reflect.DeepEqual) or "close" (math.Abs(got - want) > tolerance)
    tolerance: str = ""  # close: source text
    strict: bool = False  # close: `>= tolerance` fails, so a pass needs |got - want| < tolerance
    rows: tuple[str, ...] = ()  # each row's source text, for feedback


@dataclass(frozen=True)
class GoCase:
    index: int
    test: str  # the test function
    row: int | None  # the row of its table, None when the test runs whole
    source: str  # shown as "Test:" in feedback
    hidden: bool


@dataclass(frozen=True)
class GoPlan:
    tables: tuple[TableTest, ...]
    whole: tuple[str, ...]  # test functions run whole
    cases: tuple[GoCase, ...]

    def base(self, table: TableTest) -> int:
        """The index of the table's first row among the cases."""
        return next(case.index for case in self.cases if case.test == table.test and case.row == 0)

    def whole_index(self, test: str) -> int:
        return next(case.index for case in self.cases if case.test == test and case.row is None)


@lru_cache(maxsize=1024)
def go_plan(problem: Problem, tables: bool = True) -> GoPlan:
    """The problem's cases; with `tables=False` every test function runs whole (used when
    the harness cannot build the tables as read, e.g. a row refers to a local variable)."""
    source = problem.test
    tokens = code_tokens(source)
    named = _struct_types(source, tokens)
    top_tables = _top_tables(source, tokens, named)
    found: list[TableTest | str] = []
    for decl in declarations(source):
        if decl.keyword != "func" or not decl.name.startswith("Test") or decl.name == "TestMain":
            continue
        body = _body(tokens, decl.start, decl.end)
        table = _table_test(decl.name, body, source, problem.entry_point, named, top_tables) if tables else None
        found.append(table or decl.name)
    shapes = [(item.test, item.rows) if isinstance(item, TableTest) else (item, None) for item in found]
    count = sum(len(rows) if rows is not None else 1 for _, rows in shapes)
    hidden = iter(hidden_flags(problem.task_id, count))
    cases: list[GoCase] = []
    for test, rows in shapes:
        for row, text in enumerate(rows) if rows is not None else [(None, test)]:
            shown = test if row is None else f"{test}: {' '.join(text.split())}"
            cases.append(GoCase(len(cases), test, row, cap(shown, VALUE_CHARS), next(hidden)))
    return GoPlan(
        tuple(item for item in found if isinstance(item, TableTest)),
        tuple(item for item in found if isinstance(item, str)),
        tuple(cases),
    )


def _body(tokens: list[Token], start: int, end: int) -> list[Token]:
    """The tokens inside a function's braces."""
    own = [t for t in tokens if start <= t.start < end]
    brace = next((i for i, t in enumerate(own) if t.text == "{"), None)
    close = closing(own, brace) if brace is not None else None
    return own[brace + 1 : close] if close is not None else []


def _struct_types(source: str, tokens: list[Token]) -> set[str]:
    """Names of the test file's top-level struct types (a table may be `[]case{...}`)."""
    names = set()
    for decl in declarations(source):
        own = [t.text for t in tokens if decl.start <= t.start < decl.end]
        if decl.keyword == "type" and len(own) > 2 and own[2] == "struct":
            names.add(decl.name)
    return names


def _top_tables(source: str, tokens: list[Token], named: set[str]) -> dict[str, str]:
    """The test file's top-level `var name = []struct{...}{...}` tables, by name."""
    tables = {}
    for decl in declarations(source):
        own = [t for t in tokens if decl.start <= t.start < decl.end]
        found = _literal_at(own, 3, named) if decl.keyword == "var" and len(own) > 3 and own[2].text == "=" else None
        if found:
            tables[decl.name] = span(source, own[found[0] : found[1] + 1])
    return tables


def _table_test(test: str, body: list[Token], source: str, entry: str, named: set[str], top_tables: dict) -> TableTest | None:
    """The test read as a table-driven one, or None (then it runs whole)."""
    calls = [i for i, t in enumerate(body) if _calls(body, i, entry)]
    if len(calls) != 1:
        return None
    for index, token in enumerate(body):
        if token.text != "for":
            continue
        loop = _range_loop(body, index, named, source)
        if loop is None:
            continue
        loop_var, literal, loop_body = loop
        if not loop_body[0] <= calls[0] < loop_body[1]:
            continue
        name = body[index + 6].text
        table = literal or _bound_literal(body[:index], name, named, source) or top_tables.get(name)
        if table is None:
            return None
        return _compared(test, body, calls[0], loop_var, table, source)
    return None


def _calls(body: list[Token], index: int, entry: str) -> bool:
    token = body[index]
    return (
        token.kind == "ident" and token.text == entry and index + 1 < len(body) and body[index + 1].text == "("
        and (index == 0 or body[index - 1].text not in (".", "func"))
    )


def _range_loop(body: list[Token], index: int, named: set[str], source: str):
    """`for _, tc := range X {`: (loop var, X's tokens if X is a literal, the loop body's
    token range), or None."""
    texts = [t.text for t in body[index : index + 6]]
    if len(texts) < 6 or texts[2] != "," or texts[4] != ":=" or texts[5] != "range" or body[index + 3].kind != "ident":
        return None
    after = index + 6
    literal = _literal_at(body, after, named)
    brace = literal[1] + 1 if literal else after + 1
    if brace >= len(body) or body[brace].text != "{" or (literal is None and body[after].kind != "ident"):
        return None
    close = closing(body, brace)
    if close is None:
        return None
    table = span(source, body[after : literal[1] + 1]) if literal else None
    return body[index + 3].text, table, (brace, close)


def _literal_at(tokens: list[Token], index: int, named: set[str]) -> tuple[int, int] | None:
    """`[]struct{...}{...}` or `[]Named{...}` starting at `index`: (first, last) token indices."""
    texts = [t.text for t in tokens[index : index + 3]]
    if texts[:2] != ["[", "]"] or len(texts) < 3:
        return None
    if texts[2] == "struct":
        fields_end = closing(tokens, index + 3) if index + 3 < len(tokens) else None
        rows_start = fields_end + 1 if fields_end is not None else None
    elif texts[2] in named:
        rows_start = index + 3
    else:
        return None
    if rows_start is None or rows_start >= len(tokens) or tokens[rows_start].text != "{":
        return None
    rows_end = closing(tokens, rows_start)
    return (index, rows_end) if rows_end is not None else None


def _bound_literal(before: list[Token], name: str, named: set[str], source: str) -> str | None:
    """The literal bound to `name` before the loop (`name := ...` or `var name = ...`)."""
    for index in range(len(before) - 2, -1, -1):
        if before[index].text == name and before[index + 1].text in (":=", "="):
            found = _literal_at(before, index + 2, named)
            return span(source, before[found[0] : found[1] + 1]) if found else None
    return None


def _compared(test: str, body: list[Token], call: int, loop_var: str, table: str, source: str) -> TableTest | None:
    """How the loop compares the call's result with the row's expected value."""
    call_end = closing(body, call + 1)
    if call_end is None:
        return None
    call_text = span(source, body[call : call_end + 1])
    arguments = tuple(span(source, part) for part in split_top_level(body[call + 2 : call_end]))
    got = body[call - 2].text if call >= 2 and body[call - 1].text in (":=", "=") else None
    texts = [t.text for t in body]
    for index in range(call_end, len(body)):
        shape = _comparison(texts, index, got, loop_var) if got else None
        if shape is None and index == call_end + 1:
            shape = _direct(texts, index, loop_var)
        if shape is not None:
            kind, want, tolerance, strict = shape
            rows = _rows(table)
            return TableTest(test, table, loop_var, call_text, arguments, want, kind, tolerance, strict, rows)
    return None


def _comparison(texts: list[str], i: int, got: str, loop_var: str):
    """A comparison of `got` with `loop_var.field` starting at texts[i]."""
    want = _field(texts, i + 2, loop_var)
    if texts[i] == got and texts[i + 1 : i + 2] == ["!="] and want:
        return "equal", want, "", False
    reversed_want = _field(texts, i, loop_var)
    if reversed_want and texts[i + 3 : i + 5] == ["!=", got]:
        return "equal", reversed_want, "", False
    if texts[i : i + 5] == ["!", "reflect", ".", "DeepEqual", "("]:
        first, second = texts[i + 5 : i + 6], _field(texts, i + 7, loop_var)
        if first == [got] and texts[i + 6 : i + 7] == [","] and second:
            return "equal", second, "", False
        swapped = _field(texts, i + 5, loop_var)
        if swapped and texts[i + 8 : i + 10] == [",", got]:
            return "equal", swapped, "", False
    if texts[i : i + 5] == ["math", ".", "Abs", "(", got] and texts[i + 5 : i + 6] == ["-"]:
        want = _field(texts, i + 6, loop_var)
        if want and texts[i + 9 : i + 10] == [")"] and texts[i + 10 : i + 11] in (["<"], [">"], [">="], ["<="]):
            tolerance = _until_block(texts, i + 11)
            return ("close", want, tolerance, texts[i + 10] == ">=") if texts[i + 10] in (">", ">=") and tolerance else None
    return None


def _direct(texts: list[str], i: int, loop_var: str):
    """`Entry(...) != tc.want`, the call's result compared with no variable."""
    want = _field(texts, i + 1, loop_var)
    return ("equal", want, "", False) if texts[i : i + 1] == ["!="] and want else None


def _field(texts: list[str], i: int, loop_var: str) -> str | None:
    if texts[i : i + 2] == [loop_var, "."] and i + 2 < len(texts) and texts[i + 2].isidentifier():
        return f"{loop_var}.{texts[i + 2]}"
    return None


def _until_block(texts: list[str], i: int) -> str:
    """A tolerance: the tokens up to the if's `{` (a plain literal or name)."""
    end = i
    while end < len(texts) and texts[end] not in ("{", "||", "&&", ";"):
        end += 1
    return "".join(texts[i:end]) if end - i in (1, 3) else ""


def _rows(table: str) -> tuple[str, ...]:
    tokens = code_tokens(table)
    rows_open = len(tokens) - 1 - next(i for i, t in enumerate(reversed(tokens)) if t.text == "}")
    start = _matching_open(tokens, rows_open)
    return tuple(span(table, part) for part in split_top_level(tokens[start + 1 : rows_open]) if part)


def _matching_open(tokens: list[Token], close: int) -> int:
    depth = 0
    for index in range(close, -1, -1):
        depth += {"}": 1, "{": -1}.get(tokens[index].text, 0)
        if depth == 0:
            return index
    return 0
