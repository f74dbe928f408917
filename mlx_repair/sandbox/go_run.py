"""A Go candidate's verdict: its module assembled, built and tested in the sandbox by the
Go driver (`go_child`, run by the sandbox's Python child as the math checker is), each
case judged here from what the harness reported (`go_judge`).

A problem's expected values come from a first run of the same harness with no candidate
in it (the prompt's function only panics), once per problem and isolation level in a
process: a candidate's process can report only what it returned. When the harness cannot
build a table as the splitter read it, every test of that problem runs whole instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path

from mlx_repair.errors import UserError
from mlx_repair.problems import Problem
from mlx_repair.problems.go_syntax import package_name
from mlx_repair.sandbox.cases import plan_tests
from mlx_repair.sandbox.child import SOLUTION_FILE as DRIVER_FILE
from mlx_repair.sandbox.child import decode
from mlx_repair.sandbox.go_cases import GoPlan, go_plan
from mlx_repair.sandbox.go_harness import EXPECT, RUN, harness
from mlx_repair.sandbox.go_judge import crash_text, judge_go
from mlx_repair.sandbox.go_program import SOLUTION_FILE, assemble
from mlx_repair.sandbox.go_toolchain import build_env, go_mod, toolchain, warm
from mlx_repair.sandbox.limits import Limits
from mlx_repair.sandbox.processes import Outcome, run_process
from mlx_repair.sandbox.verdict import Verdict, build_verdict, run_error

DRIVER_SOURCE = Path(__file__).with_name("go_child.py").read_text(encoding="utf-8")
DRIVER_TEST = "def check(candidate):\n    assert candidate() == None\n"
TEST_FILE = "problem_test.go"
STUB_BODY = '\tpanic("mlx-repair: no candidate")\n}\n'
# Directives that read files at compile time or reach into other packages' internals.
REFUSED = {"//go:embed": "reads files into the program when it is built", "//go:linkname": "reaches into other packages' internals"}
MEMORY_ERRORS = ("runtime: out of memory", "cannot allocate memory", "goroutine stack exceeds")


@dataclass(frozen=True)
class GoBuild:
    """What a build may take beyond the candidate's own limits (which bind its test run):
    a cold cache compiles the standard library, and the toolchain needs more address space
    and threads than a test."""

    build_timeout_s: float = 120.0
    imports_timeout_s: float = 20.0
    memory_mb: int = 2048
    max_processes: int = 64
    disk_mb: int = 256


BUILD = GoBuild()


def run_go(problem: Problem, completion: str, limits: Limits, level: str) -> Verdict:
    """The verdict on a Go completion (a body with its closing brace, or whole code)."""
    start = time.monotonic()
    if level == "sandbox-exec":
        raise UserError(
            "Go candidates cannot run under sandbox-exec yet (its profile runs no Go toolchain); on macOS, "
            "--isolation rlimits-only runs them with resource limits only"
        )
    plan, expected = expectations(problem, level)
    refused = _refused(completion)
    if refused:
        return _verdict(problem, plan, expected, Outcome(), limits, level, start, {"build": refused, "harness": ""})
    source = assemble(problem, completion)
    result, outcome = _drive(problem, plan, source, RUN, limits, level)
    return _verdict(problem, plan, expected, outcome, limits, level, start, result)


def _refused(completion: str) -> str | None:
    for directive, why in REFUSED.items():
        if directive in completion:
            return f"{directive} is not allowed in a solution: it {why}"
    return None


@lru_cache(maxsize=256)
def expectations(problem: Problem, level: str) -> tuple[GoPlan, dict[int, dict]]:
    """The plan and each table row's expected value, tolerance and inputs, from a run of
    the harness on the prompt's function with no body (once per problem and level)."""
    for tables in (True, False):
        plan = go_plan(problem, tables)
        result, _ = _drive(problem, plan, assemble(problem, STUB_BODY), EXPECT, Limits(), level)
        if "build" in result:
            if tables and plan.tables:
                continue
            raise UserError(f"{problem.task_id}: its test does not build with the prompt's function: {result['build'][:400]}")
        records = {r.pop("i"): r for r in map(json.loads, result.get("records", [])) if "i" in r}
        if tables and any(records.get(case.index) is None for case in plan.cases if case.row is not None):
            continue
        return plan, {index: _with_shape(plan, index, record) for index, record in records.items()}
    raise UserError(f"{problem.task_id}: its test's tables report no expected values when run")


def _with_shape(plan: GoPlan, index: int, record: dict) -> dict:
    case = plan.cases[index]
    table = next(t for t in plan.tables if t.test == case.test)
    return {**record, "kind": table.kind, "strict": table.strict}


def _drive(problem: Problem, plan: GoPlan, source: str, mode: str, limits: Limits, level: str) -> tuple[dict, Outcome]:
    """Build and test `source` with the harness in the sandbox: (what the driver
    returned, what the parent saw of the child)."""
    tools = toolchain()
    cache = str(warm(level))
    generated = harness(plan, package_name(problem.prompt) or "main", mode)
    job = {
        "go": tools.go,
        "goimports": tools.goimports,
        "env": build_env(tools, "{workdir}", cache),
        "files": {"go.mod": go_mod(tools), SOLUTION_FILE: source, TEST_FILE: problem.test, **generated.files},
        "imports_fix": SOLUTION_FILE,
        "test_name": generated.test_name,
        "build_timeout_s": BUILD.build_timeout_s,
        "imports_timeout_s": BUILD.imports_timeout_s,
        "timeout_s": limits.timeout_s,
        "output_bytes": limits.output_bytes,
        "run_limits": _run_limits(limits),
    }
    driver = Problem(problem.task_id, "", "run_go", DRIVER_TEST)
    program_source = f"JOB = {job!r}\n" + DRIVER_SOURCE
    outer = replace(
        limits,
        timeout_s=BUILD.build_timeout_s + BUILD.imports_timeout_s + limits.timeout_s + 5,
        cpu_s=BUILD.build_timeout_s + limits.cpu_s,
        memory_mb=max(limits.memory_mb, BUILD.memory_mb),
        max_processes=max(limits.max_processes, BUILD.max_processes),
        disk_mb=max(limits.disk_mb, BUILD.disk_mb),
        output_bytes=1 << 20,
    )
    program = compile(program_source, DRIVER_FILE, "exec")
    outcome = run_process(driver, plan_tests(driver), program, program_source, outer, level, (*tools.visible(), cache))
    return {**_driver_result(outcome), "harness": generated.test_name}, outcome


def _run_limits(limits: Limits) -> dict[str, int]:
    """The candidate's own limits, set on its test binary only."""
    return {
        "RLIMIT_CPU": max(1, int(limits.cpu_s + 0.999)),
        "RLIMIT_AS": max(limits.memory_mb, 1024) << 20,  # the Go runtime reserves ~1 GB of address space at start
        "RLIMIT_FSIZE": limits.file_size_mb << 20,
    }


def _driver_result(outcome: Outcome) -> dict:
    record = outcome.records.get(0) or {}
    if "v" in record:
        value = decode(record["v"][0])
        return value if isinstance(value, dict) else {}
    return {"driver_error": record.get("tb") or record.get("e") or (outcome.load_error or {}).get("tb")}


def _verdict(problem, plan, expected, outcome: Outcome, limits: Limits, level: str, start: float, result: dict) -> Verdict:
    """The driver's result read into the outcome the verdict is built from."""
    records = {r.pop("i"): r for r in map(json.loads, result.get("records", [])) if "i" in r}
    output = result.get("output", "")
    out_of_memory = any(text in output for text in MEMORY_ERRORS)
    outcome = replace(
        outcome,
        records=records,
        done=any(r == {"done": 1} for r in map(json.loads, result.get("records", []))),
        tampered=outcome.tampered or bool(result.get("forged")),
        timed_out=outcome.timed_out or bool(result.get("timeout")),
        # The runtime's dump of every goroutine after running out of memory can pass the
        # output limit: the memory is what ended the run.
        over_output=outcome.over_output or (bool(result.get("over_output")) and not out_of_memory),
        over_memory=outcome.over_memory or out_of_memory,
        returncode=result.get("exit", outcome.returncode),
        stderr_tail=crash_text(output, result["harness"]) if output else outcome.stderr_tail,
        load_error={"load": 1, "tb": _build_text(result)} if _build_text(result) else None,
    )
    syntax = "build" in result
    judged = partial(judge_go, expected=expected, output=output)
    return build_verdict(problem, plan, outcome, level, start, run_error(outcome, limits), syntax, judged)


def _build_text(result: dict) -> str | None:
    if "build" in result:
        lines = [line for line in result["build"].splitlines() if not line.startswith("# ")]
        return "Build failed:\n" + "\n".join(lines).strip()
    if result.get("driver_error"):
        return "Error in the Go sandbox: " + str(result["driver_error"])[-600:]
    return None
