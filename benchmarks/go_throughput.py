"""Go candidates per second in the sandbox, with the shared build cache warm and cold.

    .venv/bin/python benchmarks/go_throughput.py [--workers N] [--rounds R]

Each candidate is a real `goimports` + `go test -c` + test run under the isolation
"auto" picks, on the packaged Go set's canonical solutions. Each problem's expected
values (one run with no candidate) are computed first and not timed: they cost one build
per problem and process. "warm" is the shared cache as `go_toolchain.warm` fills it;
"cold" is an empty cache of each run's own, so every build compiles whatever of the
standard library the toolchain does not ship prebuilt.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from mlx_repair.problems import load_problems
from mlx_repair.sandbox import Pool, go_run, isolation
from mlx_repair.sandbox.go_toolchain import toolchain

# The cold cache: an empty one in each run's throwaway directory (the driver puts the run's
# directory where the env says "{workdir}"), written by that build alone and then deleted.
COLD = "{workdir}/gocache"


def timed(problems, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with Pool(workers) as pool:
        passed = sum(v.passed for _, v in pool.run((p.task_id, p, p.canonical_solution) for p in problems))
    return time.perf_counter() - start, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    problems = load_problems("go")
    level = isolation()
    tools = toolchain()
    print(f"{platform.platform()}, {os.cpu_count()} cores, {args.workers} workers, isolation: {level}, go {tools.version}")
    start = time.perf_counter()
    for problem in problems:
        go_run.expectations(problem, level)
    print(f"expected values of {len(problems)} problems (one build each, warm cache): {time.perf_counter() - start:.1f} s")
    warm = go_run.warm
    rates = {"warm": [], "cold": []}
    for round_number in range(1, args.rounds + 1):
        for name in ("cold", "warm"):
            go_run.warm = warm if name == "warm" else (lambda _level: COLD)
            seconds, passed = timed(problems, args.workers)
            rates[name].append(len(problems) / seconds)
            print(f"round {round_number} {name}: {seconds:6.1f} s, {len(problems) / seconds:5.2f} candidates/s, "
                  f"{seconds * args.workers / len(problems):.2f} s per build and run, {passed}/{len(problems)} passed")
    go_run.warm = warm
    best = {name: max(values) for name, values in rates.items()}
    print(f"warm {best['warm']:.2f}/s vs cold {best['cold']:.2f}/s (best round each): {best['warm'] / best['cold']:.1f}x")


if __name__ == "__main__":
    main()
