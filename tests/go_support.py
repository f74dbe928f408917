"""What the Go tests share: the toolchain requirement and small Go problems.

Go tests need the Go toolchain and goimports. `make test` installs them on Debian and
Ubuntu, so there a missing toolchain is a failure, not a skip; only where they cannot be
installed by the Makefile (macOS) do the tests skip, saying how to get them. The build
cache they warm is the shared one (`go_toolchain.warm`), once for all test workers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tiny_repairer import hidden_alike

from mlx_repair.problems import Problem
from mlx_repair.sandbox.go_toolchain import INSTALL, find_toolchain

MACOS_INSTALL = "brew install go, then go install golang.org/x/tools/cmd/goimports@latest"


@pytest.fixture(autouse=True, scope="module")
def go_toolchain():
    """Autouse in every Go test module (imported there): the toolchain, or skip/fail."""
    found = find_toolchain()
    if isinstance(found, str):
        if sys.platform == "darwin":
            pytest.skip(f"Go tests need Go and goimports ({found}): {MACOS_INSTALL}")
        pytest.fail(f"Go tests need Go and goimports ({found}); {INSTALL}; make test installs them")
    return found


ROWS = [(1, 2), (2, 4), (3, 6), (5, 10), (10, 20)]
WRONG = "package main\n\nfunc Double(x int) int {\n\treturn x * 3\n}\n"
RIGHT = "package main\n\nfunc Double(x int) int {\n\treturn x * 2\n}\n"


def double_problem(task_id: str, rows=ROWS) -> Problem:
    """A Go `Double(x)` problem with a table-driven test."""
    table = "".join(f"\t\t{{{x}, {y}}},\n" for x, y in rows)
    test = (
        'package main\n\nimport "testing"\n\nfunc TestDouble(t *testing.T) {\n'
        f"\ttests := []struct {{\n\t\tx    int\n\t\twant int\n\t}}{{\n{table}\t}}\n"
        "\tfor _, tc := range tests {\n\t\tif got := Double(tc.x); got != tc.want {\n"
        '\t\t\tt.Errorf("Double(%d) = %d, want %d", tc.x, got, tc.want)\n\t\t}\n\t}\n}\n'
    )
    prompt = "package main\n\n// Double returns twice x.\nfunc Double(x int) int {\n"
    return Problem(task_id, prompt, "Double", test, canonical_solution="\treturn 2 * x\n}\n", language="go")


def double_problems(count: int) -> list[Problem]:
    """`count` Go Double problems whose ids hide the same rows, so all get the same feedback."""
    return [double_problem(task_id) for task_id in hidden_alike("GoDouble", count, len(ROWS))]


def write_go_problems(path: Path, problems: list[Problem]) -> Path:
    """The problems as a Go JSONL file (the HumanEval-X-like shape)."""
    keys = ("task_id", "prompt", "entry_point", "test", "canonical_solution")
    with open(path, "w") as out:
        for problem in problems:
            out.write(json.dumps({"language": "go", **{k: getattr(problem, k) for k in keys}}) + "\n")
    return path
