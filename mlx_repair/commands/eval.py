"""`mlx-repair eval`: measure a model (optionally with an adapter) on one side of a problem
set (pipeline.evaluate); `--fresh` measures it on a second, unleaked set beside it, and
`--select` chooses among each problem's samples."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_repair.commands import add_model_arguments, add_repair_prompt_argument, add_sampling_arguments, add_sandbox_arguments
from mlx_repair.config import SELECT_STRATEGIES

SIDES = ("eval", "train", "all")


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder to apply to the model")
    parser.add_argument("--fresh", metavar="PROBLEMS", help="also evaluate on this set ('fresh': 30 problems we wrote, or a JSONL) and show it beside --problems")
    parser.add_argument("--split", default="eval", choices=SIDES, help="side of the train/eval split (default: eval)")
    parser.add_argument("--limit", dest="run.limit", metavar="N", type=int, help="only the first N problems of that side")
    add_sampling_arguments(parser)
    add_repair_prompt_argument(parser)
    add_sandbox_arguments(parser)
    parser.add_argument("--no-repair", action="store_true", help="cold pass@1 only: skip repair and resampling")
    parser.add_argument(
        "--select", dest="select.strategies", metavar="STRATEGY",
        help=f"choose one of each problem's --samples drafts (at a --temperature above 0) by {', '.join(SELECT_STRATEGIES)} "
        "(comma-separated) or 'all', and report each choice's pass@1 beside cold pass@1 and pass@N, with the "
        "problems it moved against the first sample; selection sees only the visible cases ('critic': a trained "
        "critic's score, with its AUROC on these samples; 'all' includes it when --critic is given)",
    )
    parser.add_argument("--critic", dest="select.critic", metavar="DIR", help="the critic folder `mlx-repair train-critic` wrote, for --select critic")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    parser.add_argument("--run-dir", metavar="DIR", help="store the run here (default: runs/eval-<model>-<settings hash>)")


def run(args) -> int:
    from mlx_repair.config import config_from_args
    from mlx_repair.pipeline.evaluate import evaluate_with_fresh

    config = config_from_args(args)
    result = evaluate_with_fresh(
        config, args.split, args.fresh, adapter=args.adapter, repair=not args.no_repair, run_dir=args.run_dir
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
