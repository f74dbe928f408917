"""`mlx-repair compare A.json B.json`: which problems moved between two `eval --json` results;
with A a base model and B the same with an adapter, whether the adapter met its goal."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("a", metavar="A.json", help="the baseline result (e.g. the base model)")
    parser.add_argument("b", metavar="B.json", help="the result to compare (e.g. base + adapter)")
    parser.add_argument("--json", metavar="OUT", help="also write the comparison as JSON")


def run(args) -> int:
    from mlx_repair.evaluation.compare import compare_results
    from mlx_repair.evaluation.goal import adapter_goal, verdict

    a, b = read_result(args.a), read_result(args.b)
    comparisons = compare_results(a, b)
    print(f"A = {a['model']}  B = {b['model']}  on {a['problems']} ({a.get('side', '?')} side)")
    for comparison in comparisons:
        print(comparison.describe())
        if comparison.fixed:
            print(f"  fixed:  {' '.join(comparison.fixed)}")
        if comparison.broken:
            print(f"  broken: {' '.join(comparison.broken)}")
    if b.get("adapter") and not a.get("adapter"):  # base against base + adapter
        goal = adapter_goal(comparisons)
        print("the adapter's goal:", *(part.line() for part in goal), verdict(goal), sep="\n  ")
    if args.json:
        Path(args.json).write_text(json.dumps([c.to_dict() for c in comparisons], indent=2) + "\n")
    return 0


def read_result(path: str) -> dict:
    from mlx_repair.errors import UserError

    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    missing = [key for key in ("model", "problems", "metrics", "per_problem") if key not in result]
    if missing:
        raise UserError(f"{path}: not an `mlx-repair eval --json` result (missing {', '.join(missing)})")
    return result
