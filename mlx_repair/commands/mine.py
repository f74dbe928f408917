"""`mlx-repair mine`: run draft -> execute -> repair on the train side and store the pairs.

Only train-side problems are ever mined (the split is by task id), so nothing learnt
here can leak into an evaluation. Re-running the same command resumes the run.
"""

from __future__ import annotations

from pathlib import Path

from mlx_repair.commands import add_model_arguments


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--problems", dest="run.problems", metavar="PROBLEMS", help="'humaneval', 'fresh' or a HumanEval/MBPP-format JSONL")
    parser.add_argument("--split", default="train", choices=("train",), help="always the train side (kept for clarity)")
    parser.add_argument("--limit", dest="run.limit", type=int, metavar="N", help="only the first N train problems")
    parser.add_argument("--samples", dest="sampling.samples", type=int, metavar="N", help="drafts per problem")
    parser.add_argument("--temperature", dest="sampling.temperature", type=float, metavar="T", help="0 is greedy")
    parser.add_argument("--max-tokens", dest="sampling.max_tokens", type=int, metavar="N", help="per model output")
    parser.add_argument("--rounds", dest="repair.rounds", type=int, metavar="R", help="repair rounds per draft, 0-3 (default 1)")
    parser.add_argument("--run-dir", metavar="DIR", help="store the run here (default: runs/mine-<model>-<settings hash>)")
    parser.add_argument("--tui", action="store_true", help="watch the run in the terminal UI (q stops it; re-run to resume)")


def run(args) -> int:
    from mlx_repair.config import config_from_args

    config = config_from_args(args)
    if args.tui:
        return mine_with_tui(config, args.run_dir)
    mine(config, run_dir=args.run_dir)
    return 0


def mine_with_tui(config, run_dir=None) -> int:
    """`mine` with the TUI attached: the same job, its events drawn instead of printed."""
    from mlx_repair.runs import problems_for
    from mlx_repair.tui import Plan, run_with_tui

    problems, _ = problems_for(config, "train")
    plan = Plan(tuple(p.task_id for p in problems), config.repair.rounds)
    return run_with_tui(lambda console: mine(config, run_dir, console), "mine", plan)


def mine(config, run_dir=None, console=None) -> tuple[Path, dict[str, int]]:
    """Mine pairs on the train side; returns the run directory and pair counts per kind."""
    from mlx_repair.console import Console
    from mlx_repair.mining.loop import LoopConfig
    from mlx_repair.runs import run_stage
    from mlx_repair.mining.store import Store

    console = console or Console()
    loop_config = LoopConfig(samples=config.sampling.samples, rounds=config.repair.rounds, stage="mine")
    done = run_stage(config, "mine", "train", loop_config, console, explicit_dir=run_dir)
    with Store.open(done.directory) as store:
        store.select_run("mine")
        counts = store.pair_counts()
        near_copies = sum(p.near_copy for p in store.pairs("repair"))
    console.line(
        f"pairs in {done.directory}: " + ", ".join(f"{kind} {count}" for kind, count in counts.items())
        + f" ({near_copies} repair pairs flagged as near-copies) from {len(done.problems)} train problems"
    )
    return done.directory, counts
