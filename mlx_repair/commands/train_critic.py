"""`mlx-repair train-critic`: train a critic on the judged samples of train-side problems
in the given run directories' stores (pipeline.critic), for `eval --select critic`."""

from __future__ import annotations

from mlx_repair.commands import add_model_arguments, run_job
from mlx_repair.config import CRITIC_KINDS


def add_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories of mine or eval runs (eval --split train --samples N) whose samples are the labels")
    add_model_arguments(parser)
    parser.add_argument("--kind", choices=CRITIC_KINDS,
                        help="'head' (the default): a logistic regression on the frozen model's hidden state; "
                             "'lora': a LoRA adapter answering yes or no, many times slower to train")
    parser.add_argument("--iters", type=int, metavar="N", help="training steps (default: head 500, lora three epochs)")
    parser.add_argument("--learning-rate", type=float, metavar="LR", help="default: head 1e-2, lora 1e-4")
    parser.add_argument("--out", metavar="DIR", help="critic folder (default: adapters/critic-<model>-<settings hash>)")


def run(args) -> int:
    from mlx_repair.pipeline.critic import train_critic_job
    from mlx_repair.training.critic import CriticConfig

    flags = {"kind": args.kind, "iters": args.iters, "learning_rate": args.learning_rate}
    critic = CriticConfig(**{key: value for key, value in flags.items() if value is not None})
    return run_job(
        args, "train-critic", lambda config, console: train_critic_job(config, args.run_dirs, critic, args.out, console),
        done=lambda out: print(f"critic: {out}"),
    )
