"""The Go file a candidate is built from (solution.go). Pure logic, no processes.

A completion is either the body of the prompt's function with its closing brace (it
continues the prompt), or whole declarations: the function, with or without its package
clause and imports, and any helpers. Nothing is ever cut from it. The file is a header,
the package clause and the imports of the prompt and the completion together, then a
`//line` directive and the candidate's code as written, so that compile errors and panics
name the candidate's own lines (of prompt + body, or of the completion as given) however
many import lines `goimports` adds or removes above them (`go_child.fix_imports`).
"""

from __future__ import annotations

from mlx_repair.problems import Problem
from mlx_repair.problems.go_syntax import Decl, code_tokens, declarations, function, package_name

SOLUTION_FILE = "solution.go"
PROMPT_FILE = "prompt.go"  # the name the prompt's own helpers are shown under


def is_whole(completion: str, entry_point: str) -> bool:
    """Does the completion declare the entry point itself (rather than continue its body)?"""
    return function(completion, entry_point) is not None


def assemble(problem: Problem, completion: str) -> str:
    """solution.go for `completion`."""
    package = package_name(problem.prompt) or "main"
    prompt_decls = declarations(problem.prompt)
    if not is_whole(completion, problem.entry_point):
        program = problem.prompt + completion
        code = [d for d in declarations(program) if d.keyword not in ("package", "import")]
        return _file(package, _import_specs(program, prompt_decls), [(SOLUTION_FILE, program, code)])
    decls = declarations(completion)
    code = [d for d in decls if d.keyword not in ("package", "import")]
    declared = {d.name for d in code}
    helpers = [
        d for d in prompt_decls
        if d.keyword not in ("package", "import") and d.name != problem.entry_point and d.name not in declared
    ]
    imports = _import_specs(problem.prompt, prompt_decls) + _import_specs(completion, decls)
    return _file(package, imports, [(PROMPT_FILE, problem.prompt, helpers), (SOLUTION_FILE, completion, code)])


def _file(package: str, imports: list[str], parts: list[tuple[str, str, list[Decl]]]) -> str:
    specs = "".join(f"\t{spec}\n" for spec in dict.fromkeys(imports))
    text = f"package {package}\n\nimport (\n{specs})\n"
    for name, source, decls in parts:
        if decls:
            text += f"\n//line {name}:{decls[0].first_line}\n{source[decls[0].start : decls[-1].end].rstrip()}\n"
    return text


def _import_specs(source: str, decls: list[Decl]) -> list[str]:
    """Each import spec (`"fmt"`, `m "math"`) of the source's import declarations."""
    specs = []
    for decl in decls:
        if decl.keyword != "import":
            continue
        pending = ""
        for token in code_tokens(decl.text(source)):
            if token.kind == "string":
                specs.append(f"{pending}{token.text}")
                pending = ""
            elif token.kind == "ident" and token.text != "import" or token.text == ".":
                pending = f"{token.text} "
    return specs
