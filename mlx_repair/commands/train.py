"""`mlx-repair train`: the whole job in one command (pipeline.train). Every flag but
--out and --tui can also be set in the config file's [run], [sampling], [repair] and
[train] tables."""

from __future__ import annotations

import shlex
import sys

from mlx_repair.commands import add_mining_arguments, add_model_arguments, add_sandbox_arguments, run_job
from mlx_repair.config import TrainSection
from mlx_repair.mining.store import CONTROL_KINDS
from mlx_repair.training.config import OBJECTIVES, WEIGHTS, TrainConfig


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--preset", dest="train.preset", choices=("auto", "cpu", "default"),
                        help="stage sizes and training steps: 'cpu' fits a 2-core CPU; auto (the default) picks it without Metal")
    parser.add_argument("--limit", dest="train.eval_limit", type=int, metavar="N", help="evaluate on the first N eval-side problems")
    parser.add_argument("--mine-limit", dest="train.mine_limit", type=int, metavar="N", help="mine the first N train-side problems")
    parser.add_argument("--mine-dir", dest="train.mine_dir", metavar="DIR",
                        help="mine in this run directory (default: runs/mine-<model>-<settings hash>): a `mlx-repair mine` "
                             "run with the same settings is reused, and with --rounds raised its repairs are added")
    parser.add_argument("--invent", dest="invent.count", type=int, metavar="N",
                        help="also mine N problems the model invents for itself (mlx-repair invent), never evaluated on")
    add_mining_arguments(parser)
    add_sandbox_arguments(parser)
    parser.add_argument("--iters", dest="train.iters", type=int, metavar="N", help="training steps")
    parser.add_argument("--rank", dest="train.rank", type=int, metavar="R", help="LoRA rank")
    parser.add_argument("--layers", dest="train.layers", type=int, metavar="N", help="adapt the last N transformer blocks (-1: all)")
    parser.add_argument("--learning-rate", dest="train.learning_rate", type=float, metavar="LR")
    parser.add_argument("--scale", dest="train.scale", type=float, metavar="S", help="LoRA scale (mlx-lm's, not PEFT's alpha)")
    parser.add_argument("--patience", dest="train.patience", type=int, metavar="N",
                        help="stop after N validations without a new best validation loss; the best adapter is kept")
    parser.add_argument("--weights", dest="train.weights", choices=WEIGHTS,
                        help="the adapter's weights: best (default) by validation loss, or the last step's after "
                             "all --iters (no early stopping): past its best validation loss an adapter keeps "
                             "learning its training problems")
    parser.add_argument("--batch-size", dest="train.batch_size", type=int, metavar="N", help="training batch size")
    parser.add_argument("--dora", dest="train.dora", action="store_true", default=None, help="train DoRA instead of LoRA")
    parser.add_argument("--min-pairs", dest="train.min_pairs", type=int, metavar="N",
                        help=f"train only with at least N mined repair pairs (default {TrainSection.min_pairs}): "
                             "a few records are memorised, which breaks more than it teaches")
    parser.add_argument("--objective", dest="train.objective", choices=OBJECTIVES,
                        help="sft (default): learn the passing answers; preference: prefer each passing answer "
                             "over a failing one to the same prompt (DPO against the base model)")
    parser.add_argument("--beta", dest="train.beta", type=float, metavar="B",
                        help=f"the preference objective's beta, on per-token margins (default {TrainConfig.beta})")
    parser.add_argument("--control", dest="train.control", choices=CONTROL_KINDS, help="also train on same-shape garbage pairs (the control)")
    parser.add_argument("--out", metavar="DIR", help="adapter folder (default: adapters/<model>-<settings hash>)")
    parser.add_argument("--tui", action="store_true", help="watch the run in the terminal UI (q stops it; re-run to resume)")


def run(args) -> int:
    from mlx_repair.pipeline.train import train_pipeline

    command = "mlx-repair " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return run_job(args, "train", lambda config, console: train_pipeline(config, command, args.out, console), done=_show_paths)


def _show_paths(report) -> None:
    from mlx_repair.training.checkpoints import ADAPTER_FILE

    if (report.parent / ADAPTER_FILE).is_file():
        print(f"adapter: {report.parent}")
    print(f"report:  {report}")
