"""`mlx-repair mine`: run draft -> execute -> repair on the train side and store the pairs
(pipeline.mine). Re-running the same command resumes the run."""

from __future__ import annotations

from mlx_repair.commands import add_job_arguments, add_mining_arguments, add_model_arguments, add_sandbox_arguments, run_job


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--limit", dest="run.limit", type=int, metavar="N", help="only the first N train-side problems")
    add_mining_arguments(parser)
    add_sandbox_arguments(parser)
    add_job_arguments(parser, "mine")


def run(args) -> int:
    from mlx_repair.pipeline.mine import mine

    return run_job(args, "mine", lambda config, console: mine(config, args.run_dir, console), plan=_plan)


def _plan(config):
    """The problems the app lists before the first event arrives."""
    from mlx_repair.pipeline.stages import problems_for
    from mlx_repair.tui import Plan

    problems, _ = problems_for(config, "train")
    return Plan(tuple(p.task_id for p in problems), config.repair.rounds)
