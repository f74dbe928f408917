"""`mlx-repair invent --count N`: the model writes problems for itself, kept only when they
pass every filter (pipeline.invent); the kept ones are a problem set for mining
(`--problems invented:RUN_DIR`). Re-running the same command resumes the run."""

from __future__ import annotations

from mlx_repair.commands import add_job_arguments, add_max_tokens_argument, add_model_arguments, add_sandbox_arguments, run_job
from mlx_repair.config import InventSection
from mlx_repair.errors import UserError


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--count", dest="invent.count", type=int, metavar="N", help="problems to keep")
    parser.add_argument("--domain", dest="invent.domain", choices=("code", "math"),
                        help=f"HumanEval-format coding problems or math questions (default {InventSection.domain})")
    parser.add_argument("--solutions", dest="invent.solutions", type=int, metavar="K",
                        help=f"model solutions judged per problem (default {InventSection.solutions}); kept when at least "
                             "invent.min_passing pass and invent.min_failing fail")
    parser.add_argument("--temperature", dest="invent.temperature", type=float, metavar="T",
                        help=f"sampling temperature of problems and solutions (default {InventSection.temperature})")
    add_max_tokens_argument(parser)
    add_sandbox_arguments(parser)
    add_job_arguments(parser, "invent")


def run(args) -> int:
    from mlx_repair.pipeline.invent import invent

    def job(config, console):
        if config.invent.count < 1:
            raise UserError("invent: give --count N (problems to keep), N of 1 or more")
        return invent(config, config.invent.count, args.run_dir, console)

    return run_job(args, "invent", job, done=lambda directory: print(f"invented: {directory}"))
