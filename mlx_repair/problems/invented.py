"""Problems the model invents: what it wrote read into a `Problem`, the checks that need
no model, and the exported set.

An invented code problem is HumanEval's shape: a signature and docstring (with `>>>`
examples) and a `check(candidate)` of asserts; an invented math problem is a question and
an answer SymPy can check. Reading one either gives the problem or a `Rejected` with its
reason. The checks here run before any model solves the problem:
- `unreadable`: no code block, code that does not parse (a block cut off by the token
  limit is read up to its last complete line), no documented function, or no test:
  neither a `check(candidate)` nor asserts calling the function elsewhere (in a
  `check()` or `test_...()`, or at the top level), or fewer than `MIN_CASES` asserts left
  once those calling the function with more or fewer arguments than it takes are left
  out; for math, no question or an answer the checker cannot read;
- `unsplittable`: a test statement that is not an assert the sandbox splits into a case
  (`sandbox/cases.py`), or fewer than `MIN_CASES` of them;
- `no examples`: the docstring shows no example with a literal result;
- `near-copy`: too many of its token n-grams (of its prompt, or of its test) are in a
  known problem (HumanEval, fresh, the math set, one already kept, or the example the
  request shows), so the model is not recalling a benchmark or copying.
When the model wrote the function's body too, that body is the problem's reference
(`canonical_solution`), and the sandbox runs it before any solution is drawn
(`pipeline/invent.py`): the asserts it fails are dropped (`agreeing_test`; a 0.5B model
gets many expected values wrong, which made the whole problem look impossible), the
docstring's examples are given the reference's results (`examples_from_reference`), and a
problem left with fewer than `MIN_CASES` asserts, or with no example, is rejected
(`reference fails`). The model's solutions and the sandbox decide the rest.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import asdict, replace
from pathlib import Path

from mlx_repair.errors import UserError
from mlx_repair.problems import INVENTED, MATH, Problem, name_candidate, rename_calls

# Reasons an invented problem is not kept, in the order the filters run.
REASONS = ("unreadable", "unsplittable", "no examples", "near-copy", "reference fails", "impossible", "trivial",
           "examples disagree")
MIN_CASES = 3
TOKEN = re.compile(r"\w+|[^\w\s]")
FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
EXAMPLE = re.compile(r"^\s*>>>\s*(.+?)\s*$")
QUESTION = re.compile(r"^[*\s]*question[*\s]*:[*\s]*(.+?)\s*$", re.I | re.M)


class Rejected(Exception):
    """An invented problem that is not kept: `reason` (one of REASONS) and a detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def read_code(text: str, task_id: str, level: int) -> Problem:
    """The HumanEval-format problem in a model's text, or Rejected."""
    block, tree = _parsed(_test_block(text))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not _is_test(n)]
    function = next((n for n in functions if ast.get_docstring(n) is not None), None)  # helpers may come first
    if function is None:
        raise Rejected("unreadable", "no function with a docstring")
    statements = _test_statements(tree, function.name)
    if not statements:
        raise Rejected("unreadable", "no check(candidate), and no asserts of the function")
    statements = _fitting_arity(function, statements)
    lines = block.splitlines(keepends=True)
    imports = "".join(ast.get_source_segment(block, n) + "\n" for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    signature_and_doc = "".join(lines[function.lineno - 1 : function.body[0].end_lineno]).rstrip() + "\n"
    body = "".join("    " + ast.unparse(s).replace("\n", "\n    ") + "\n" for s in statements)
    test = imports + "def check(candidate):\n" + body
    problem = Problem(task_id, imports + signature_and_doc, function.name, test, _reference(block, tree, function),
                      source=INVENTED, difficulty=level)
    _require_cases(problem)
    if not docstring_examples(problem):
        raise Rejected("no examples", "the docstring shows no `>>> call` followed by a literal result")
    return problem


def _reference(block: str, tree: ast.Module, function: ast.FunctionDef) -> str | None:
    """The code the model wrote for its problem when the function has a body: its imports,
    functions (the tests' left out) and classes. None for a signature and docstring alone."""
    body = function.body[1:]  # after the docstring
    if all(_is_placeholder(statement) for statement in body):
        return None
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    parts = [n for n in tree.body if isinstance(n, kept) and not (isinstance(n, ast.FunctionDef) and _is_test(n))]
    return "\n\n".join(ast.get_source_segment(block, n) for n in parts) + "\n"


def _is_placeholder(statement: ast.stmt) -> bool:
    """`pass`, `...` or `raise NotImplementedError`: a body left for the solver."""
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return statement.value.value is Ellipsis
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        raised = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"
    return False


def agreeing_test(problem: Problem, passed: list[bool]) -> Problem:
    """The problem with only the asserts its reference passed (`passed`, one per case:
    every statement of an invented test is one), or Rejected when fewer than `MIN_CASES`
    are left: the expected values are the model's guesses, the reference's run is a check."""
    if sum(passed) < MIN_CASES:
        raise Rejected("reference fails", f"the model's own function passes {sum(passed)} of its {len(passed)} "
                                          f"asserts, fewer than {MIN_CASES}")
    tree = ast.parse(problem.test)
    check = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check")
    check.body = [statement for statement, kept in zip(check.body, passed) if kept]
    return replace(problem, test=ast.unparse(tree) + "\n")


def _is_test(node: ast.FunctionDef) -> bool:
    return node.name.startswith(("check", "test"))


def _test_statements(tree: ast.Module, entry_point: str) -> list[ast.stmt]:
    """The statements of the model's test, written as the body of `check(candidate)`:
    those of its `check(candidate)`, or else the asserts it wrote elsewhere (a `check()` or
    `test_...()` that calls the function by name, or asserts at the top level). The
    function and the test's parameter are called `candidate`; what only reports
    (`print(...)`, a docstring, a closing `return`) is left out, so that a test is judged
    by its asserts; anything else stays, to be judged by the sandbox's case splitter."""
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check" and n.args.args), None)
    if check is not None:
        body, renamed = check.body, {entry_point, check.args.args[0].arg}
    else:
        tests = [n for n in tree.body if isinstance(n, ast.FunctionDef) and _is_test(n) and not n.args.args]
        body = [s for n in tests for s in n.body] + [s for s in tree.body if isinstance(s, ast.Assert)]
        renamed = {entry_point}
        if not any(isinstance(s, ast.Assert) for s in body):
            return []
    kept = [s for s in body if not _only_reports(s)]
    for statement in kept:
        name_candidate(statement, renamed)
    return kept


def _fitting_arity(function: ast.FunctionDef, statements: list[ast.stmt]) -> list[ast.stmt]:
    """The test's statements whose calls of the candidate pass as many arguments as the
    signature takes: the others (the model mixing in asserts of another function, often the
    request's example) fail every solution. Rejected when fewer than `MIN_CASES` are left."""
    args = function.args
    if args.vararg or args.kwarg:
        return statements
    positional = args.posonlyargs + args.args
    fewest, most = len(positional) - len(args.defaults), len(positional) + len(args.kwonlyargs)
    counts = [_argument_counts(statement) for statement in statements]
    fitting = [s for s, counted in zip(statements, counts) if all(fewest <= n <= most for n in counted)]
    if len(fitting) < len(statements) and len(fitting) < MIN_CASES:
        wrong = next(n for counted in counts for n in counted if not fewest <= n <= most)
        raise Rejected("unreadable", f"the test calls {function.name} with {wrong} arguments; "
                                     f"it takes {fewest if fewest == most else f'{fewest} to {most}'}")
    return fitting


def _argument_counts(statement: ast.stmt) -> list[int]:
    """How many arguments each plain call of the candidate in the statement passes."""
    return [
        len(node.args) for node in ast.walk(statement)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate"
        and not any(isinstance(a, ast.Starred) for a in node.args) and not node.keywords
    ]


def _parsed(block: str) -> tuple[str, ast.Module]:
    """The block and its syntax tree. A block that stops mid-statement (a test running on
    until the token limit cut it) is read up to the line the error is on, so that its
    complete asserts count; Rejected when neither parses."""
    try:
        return block, ast.parse(block)
    except SyntaxError as error:
        cut, message = "".join(block.splitlines(keepends=True)[: (error.lineno or 1) - 1]), error.msg
    try:
        if cut.strip():
            return cut, ast.parse(cut)
    except SyntaxError:
        pass
    raise Rejected("unreadable", f"the code does not parse ({message})")


def _only_reports(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Return):
        return True
    if not isinstance(statement, ast.Expr):
        return False
    value = statement.value
    printed = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print"
    return printed or (isinstance(value, ast.Constant) and isinstance(value.value, str))


def _test_block(text: str) -> str:
    """The fenced block holding check() (or the text itself when nothing is fenced)."""
    blocks = FENCE.findall(text)
    return next((b for b in blocks if "def check" in b), blocks[0] if blocks else text)


def _require_cases(problem: Problem) -> None:
    """Every statement of check() is an assert the sandbox splits into a case."""
    from mlx_repair.sandbox.cases import plan_tests

    try:
        plan = plan_tests(problem)
    except UserError as error:
        raise Rejected("unreadable", str(error)) from None
    whole = [c.source for c in plan.cases if c.kind == "statement"]
    setup = [step for step in plan.steps if step[0] == "setup"]
    if whole or setup:
        shown = whole[0] if whole else "a statement that tests nothing"
        raise Rejected("unsplittable", f"{shown[:80]!r} is not an assert of a shape split into a case")
    if len(plan.cases) < MIN_CASES:
        raise Rejected("unsplittable", f"{len(plan.cases)} asserts, fewer than {MIN_CASES}")


def docstring_examples(problem: Problem) -> list[tuple[str, str]]:
    """(call, expected) of each `>>> call` line of the docstring that calls the function
    and is followed by a line holding a literal."""
    return [(call, expected) for _, call, expected in _example_lines(problem)]


def _example_lines(problem: Problem) -> list[tuple[int, str, str]]:
    """The docstring's examples with the index, in the prompt's lines, of their result line."""
    function = next(n for n in ast.parse(problem.prompt).body if isinstance(n, ast.FunctionDef))
    if ast.get_docstring(function) is None:
        return []
    lines = problem.prompt.splitlines()
    docstring = function.body[0]
    examples = []
    for index in range(docstring.lineno - 1, docstring.end_lineno - 1):
        match = EXAMPLE.match(lines[index])
        expected = lines[index + 1].strip()
        if match and expected and not EXAMPLE.match(lines[index + 1]) and _calls(match.group(1), problem.entry_point):
            if _is_literal(expected):
                examples.append((index + 1, match.group(1), expected))
    return examples


def examples_problem(problem: Problem) -> Problem:
    """A problem whose test asserts the docstring's examples, one case each in their order,
    to run solutions against."""
    asserts = [
        "    " + rename_calls(f"assert {call} == ({expected})", problem.entry_point, problem.task_id)
        for call, expected in docstring_examples(problem)
    ]
    test = "def check(candidate):\n" + "\n".join(asserts) + "\n"
    return Problem(problem.task_id + "/examples", problem.prompt, problem.entry_point, test)


def examples_from_reference(problem: Problem, cases: list) -> Problem:
    """The problem with its docstring's examples made the reference's: a result it gives
    otherwise is written in (the model guessed the expected values before writing the
    function, and a 0.5B model often guesses wrong), an example it cannot give a literal
    result for (an error, a timeout, a result too long to show) is left out. `cases` are
    the reference's results on `examples_problem(problem)`. Rejected when no example is left."""
    lines = problem.prompt.splitlines(keepends=True)
    for (index, _, _), case in reversed(list(zip(_example_lines(problem), cases))):
        if case.passed:
            continue
        if case.got is not None and case.error is None and _is_literal(case.got):
            indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
            lines[index] = indent + case.got + "\n"
        else:
            del lines[index - 1 : index + 1]
    rewritten = replace(problem, prompt="".join(lines))
    if not docstring_examples(rewritten):
        raise Rejected("reference fails", "the model's own function gives none of its docstring's examples")
    return rewritten


def _calls(source: str, name: str) -> bool:
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        return False
    return isinstance(tree.body, ast.Call) and isinstance(tree.body.func, ast.Name) and tree.body.func.id == name


def _is_literal(source: str) -> bool:
    try:
        ast.literal_eval(source)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def read_math(text: str, task_id: str, level: int) -> Problem:
    """The question and answer in a model's text, or Rejected."""
    from mlx_repair.sandbox.math_answer import InvalidAnswer, final_answer, parse_answer

    question = QUESTION.search(text)
    answer = final_answer(text[question.end() :]) if question else None
    if question is None or answer is None:
        raise Rejected("unreadable", "no 'Question:' line followed by an 'Answer:' line")
    try:
        parse_answer(answer)
    except InvalidAnswer as error:
        raise Rejected("unreadable", f"the answer {answer[:60]!r} cannot be checked ({error})") from None
    return Problem(
        task_id, question.group(1), "answer", answer, canonical_solution=f"Answer: {answer}",
        source=INVENTED, domain=MATH, difficulty=level,
    )


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The text's lower-cased word-and-symbol token n-grams (the whole text if shorter)."""
    tokens = TOKEN.findall(text.lower())
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def nearest(problem: Problem, known: dict[str, tuple[set, set]], n: int) -> tuple[float, str | None]:
    """The largest share of the problem's n-grams found in one known problem, and which.
    Judged on the prompt (a code problem's signature and docstring, a math question) and,
    for code, on the test too, each against the same part of the known problem: a problem
    renamed and reworded around copied asserts is a copy as well."""
    own_prompt, own_test = copy_grams(problem, n)
    best, which = 0.0, None
    for task_id, (prompt_grams, test_grams) in known.items():
        share = max(_share(own_prompt, prompt_grams), _share(own_test, test_grams))
        if share > best:
            best, which = share, task_id
    return best, which


def _share(own: set, known: set) -> float:
    return len(own & known) / len(own) if own else 0.0


def copy_grams(problem: Problem, n: int) -> tuple[set, set]:
    """The n-grams a near-copy is judged on: the prompt's, and a code problem's test's (a
    math answer is too short to tell copies by)."""
    return ngrams(problem.prompt, n), ngrams(problem.test, n) if problem.domain != MATH else set()


def known_ngrams(problems: list[Problem], n: int) -> dict[str, tuple[set, set]]:
    return {p.task_id: copy_grams(p, n) for p in problems}


def write_invented(path: Path, problems: list[Problem]) -> Path:
    """The kept problems as JSONL that `load_problems` reads back as invented: HumanEval
    format for code, math format for math, each with `origin` and `difficulty`."""
    with open(path, "w", encoding="utf-8") as out:
        for problem in problems:
            out.write(json.dumps(_record(problem)) + "\n")
    return path


def _record(problem: Problem) -> dict:
    extra = {"origin": INVENTED, "difficulty": problem.difficulty}
    if problem.domain == MATH:
        return {"task_id": problem.task_id, "question": problem.prompt, "answer": problem.test, **extra}
    return {"task_id": problem.task_id, "prompt": problem.prompt, "entry_point": problem.entry_point,
            "test": problem.test, **extra}


def problem_fields(problem: Problem) -> dict:
    """The problem as stored with its invention (`Problem(**fields)` rebuilds it)."""
    return asdict(problem)
