"""Stores of judged samples with a planted signal, for critics on tiny models.

A tiny random model cannot read code, so a critic on it can only learn what the labels
plant: here, every passing sample adds to x and every failing one subtracts from it,
each wrapped in nuisance lines (names, comments, blank lines) drawn at random. A critic
that learns the signal ranks held-out problems' samples well (AUROC near 1); one that
learns nothing scores them at chance (0.5).
"""

from __future__ import annotations

import random
from pathlib import Path

from tiny_repairer import write_problems

from mlx_repair.mining.store import Attempt, Store
from mlx_repair.problems import Problem

NAMES = ("x", "value", "n", "item", "number", "total")
COMMENTS = ("", "    # the answer\n", "    # simple\n", "    # step by step\n", "\n")


def planted_problems(count: int) -> list[Problem]:
    """`count` problems `shift_i(x)`: return x plus i."""
    return [
        Problem(
            task_id=f"Planted/{i}",
            prompt=f'def shift_{i}(x):\n    """Return x plus {i + 1}."""\n',
            entry_point=f"shift_{i}",
            test=f"def check(candidate):\n    assert candidate(1) == {i + 2}\n",
        )
        for i in range(count)
    ]


def planted_code(problem: Problem, passed: bool, rng: random.Random) -> str:
    """A sample of `problem` that adds (passed) or subtracts, among random nuisance lines."""
    number = problem.entry_point.removeprefix("shift_")
    name = rng.choice(NAMES)
    operator = "+" if passed else "-"
    body = f"{rng.choice(COMMENTS)}    {name} = x\n{rng.choice(COMMENTS)}    return {name} {operator} {int(number) + 1}\n"
    return f"def {problem.entry_point}(x):\n{body}"


def planted_store(run_dir: Path, problems: list[Problem], samples: int, seed: int = 0, passed=None) -> Path:
    """An "eval" run of `samples` drafts per problem, each passing at random (or as
    `passed(problem, sample_index)` says), its label planted in its code."""
    rng = random.Random(seed)
    with Store.open(run_dir) as store:
        split = {"train": [], "eval": [p.task_id for p in problems]}
        store.start_run("eval", "planted", "planted", {}, split)
        for problem in problems:
            for k in range(samples):
                ok = rng.random() < 0.5 if passed is None else passed(problem, k)
                code = planted_code(problem, ok, rng)
                store.add_attempt(Attempt(
                    task_id=problem.task_id, kind="draft", sample_index=k, round=0, prompt="", completion=code,
                    code=code, model="planted", passed=ok, status="passed" if ok else "failed", feedback="",
                    verdict={"cases": [{"hidden": False, "passed": ok}]}, logprob=-rng.random(),
                ))
    return run_dir


def planted_problem_file(path: Path, count: int) -> Path:
    """The planted problems as a HumanEval-format JSONL, for `--problems`."""
    return write_problems(path, planted_problems(count))
