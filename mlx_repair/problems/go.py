"""Go problems in a HumanEval-X-like JSONL shape.

A record has `task_id`, `language: "go"`, `entry_point`, a `prompt` (the package clause,
imports, a doc comment and the signature, ending where the body starts), an optional
`canonical_solution` (the body with its closing brace) and a `test`: a complete
`_test.go` file of the same package with table-driven `Test...` functions, standard
library only (the sandbox builds offline). The packaged `go` set (data/go.jsonl) is ours.

What is checked here is what the sandbox and the prompts rely on, so a file that loads is
a file they can use: the prompt's last declaration is `func <entry_point>` left open, and
the test declares a test function in the prompt's package.
"""

from __future__ import annotations

from mlx_repair.problems import go_syntax

GO = "go"
GO_KEYS = ("task_id", "prompt", "entry_point", "test")


def go_problem(record: dict, where: str, source: str):
    """A `Problem` from one Go record, or a one-line ProblemsError naming what is wrong."""
    from mlx_repair.problems import Problem, ProblemsError, _difficulty, _require_str

    fields = {key: _require_str(record, key, where) for key in GO_KEYS}
    problem_error = _prompt_error(fields["prompt"], fields["entry_point"]) or _test_error(
        fields["test"], go_syntax.package_name(fields["prompt"])
    )
    if problem_error:
        raise ProblemsError(f"{where}: {problem_error}")
    solution = record.get("canonical_solution")
    if solution is not None:
        solution = _require_str(record, "canonical_solution", where)
    return Problem(
        canonical_solution=solution, source=source, difficulty=_difficulty(record, where), language=GO, **fields
    )


def _prompt_error(prompt: str, entry_point: str) -> str | None:
    decls = go_syntax.declarations(prompt)
    if not decls or decls[0].keyword != "package":
        return "field 'prompt' must start with a package clause"
    last = decls[-1]
    if last.keyword != "func" or last.name != entry_point or last.closed:
        return f"field 'prompt' must end where the body of func {entry_point} starts (after its opening brace)"
    return None


def _test_error(test: str, package: str) -> str | None:
    decls = go_syntax.declarations(test)
    if go_syntax.package_name(test) != package:
        return f"field 'test' must be a _test.go file of package {package}, as the prompt"
    if not any(d.keyword == "func" and d.name.startswith("Test") for d in decls):
        return "field 'test' declares no func Test...(t *testing.T)"
    return None
