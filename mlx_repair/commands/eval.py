"""`mlx-repair eval`: measure a model (optionally with an adapter) on one side of a problem set.

By default every problem gets one greedy draft; each failing draft gets one repair turn
(feedback from the visible cases, verified on all cases) and one independent resample at
the same cost, so that `repair_pass@1` is read beside its budget-matched baseline
`resample_pass@2`. The run is stored under runs/ and resumes when re-run.

With `--fresh` the same model is measured, with the same settings, on a second set that
it cannot have seen in training (such as our own `fresh` problems), and the two results
are shown side by side: a score that holds only on the leaked benchmark is memory.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mlx_repair.commands import add_model_arguments

SIDES = ("eval", "train", "all")


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder to apply to the model")
    parser.add_argument("--problems", dest="run.problems", metavar="PROBLEMS", help="'humaneval', 'fresh' or a HumanEval/MBPP-format JSONL")
    parser.add_argument("--fresh", metavar="PROBLEMS", help="also evaluate on this set ('fresh': 30 problems we wrote, or a JSONL) and show it beside --problems")
    parser.add_argument("--split", default="eval", choices=SIDES, help="side of the train/eval split (default: eval)")
    parser.add_argument("--limit", dest="run.limit", metavar="N", type=int, help="only the first N problems of that side")
    parser.add_argument("--samples", dest="sampling.samples", metavar="N", type=int, help="drafts per problem (pass@k needs >= 2k)")
    parser.add_argument("--temperature", dest="sampling.temperature", metavar="T", type=float, help="0 is greedy (default)")
    parser.add_argument("--max-tokens", dest="sampling.max_tokens", metavar="N", type=int, help="per model output")
    parser.add_argument("--no-repair", action="store_true", help="cold pass@1 only: skip repair and resampling")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    parser.add_argument("--run-dir", metavar="DIR", help="store the run here (default: runs/eval-<model>-<settings hash>)")


def run(args) -> int:
    from mlx_repair.config import config_from_args
    from mlx_repair.console import Console

    config = config_from_args(args)
    console = Console()
    options = dict(adapter=args.adapter, repair=not args.no_repair, console=console)
    result = evaluate_model(config, args.split, run_dir=args.run_dir, **options)
    if args.fresh:
        fresh_config = replace(config, run=replace(config.run, problems=args.fresh))
        # An explicit --run-dir holds the main run's store; the fresh run needs its own.
        fresh_dir = args.run_dir and f"{Path(args.run_dir)}-fresh"
        result["fresh"] = evaluate_model(fresh_config, args.split, run_dir=fresh_dir, **options)
        show_side_by_side(result, result["fresh"], console)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def evaluate_model(config, side: str, adapter=None, repair: bool = True, run_dir=None, console=None) -> dict:
    """Run (or resume) the evaluation loop and return the result dict that --json writes."""
    from mlx_repair.console import Console
    from mlx_repair.evaluation.metrics import summarize
    from mlx_repair.mining.loop import LoopConfig
    from mlx_repair.runs import run_stage
    from mlx_repair.mining.store import Store

    console = console or Console()
    loop_config = LoopConfig(
        samples=config.sampling.samples,
        rounds=1 if repair else 0,
        resample=repair,
        save_pairs=False,
        stage="eval",
    )
    done = run_stage(config, "eval", side, loop_config, console, adapter, run_dir, repair=repair)
    with Store.open(done.directory) as store:
        store.select_run("eval")
        metrics, rows = summarize(store, done.problems)
    writer = done.writer
    result = {
        "model": writer.name,
        "adapter": adapter,
        "problems": config.run.problems,
        "side": side,
        "n": len(rows),
        "metrics": metrics,
        "per_problem": [r.to_dict() for r in rows],
        "split": done.split.to_dict(),
        "sampling": writer.sampling_for("draft"),
        "seconds": round(done.seconds, 1),
        "generated_tokens": writer.stats.generated_tokens,
        "tokens_per_second": round(writer.stats.tokens_per_second, 2),
        "peak_memory_gb": round(writer.stats.peak_memory_gb, 2),
        "run_dir": str(done.directory),
    }
    show_result(result, rows, console)
    return result


def show_result(result: dict, rows, console) -> None:
    from mlx_repair.evaluation.metrics import format_metric, gains_over_cold

    n = result["n"]
    console.line(f"{result['model']} on {result['problems']} ({result['side']} side, n={n}), run in {result['run_dir']}")
    for key, value in result["metrics"].items():
        console.line("  " + format_metric(key, value, n))
    for attr, label, metric in (("repair", "repair", "repair_pass@1"), ("resample", "resampling", "resample_pass@2")):
        if metric in result["metrics"]:
            gained = gains_over_cold(rows, attr)
            console.line(f"  gained over cold by {label}: {len(gained)} problems {' '.join(gained)}".rstrip())
    console.line(
        f"  {result['generated_tokens']} tokens generated in {result['seconds']:.0f}s "
        f"({result['tokens_per_second']:.1f} tok/s while generating), peak {result['peak_memory_gb']:.1f} GB"
    )


def show_side_by_side(result: dict, fresh: dict, console) -> None:
    """Leaked vs fresh: each metric of both sets on one line, each rate with its own n."""
    from mlx_repair.evaluation.metrics import format_metric, format_value

    console.line(f"{result['model']}, {result['side']} side: leaked vs fresh")
    console.line(f"  {'problems':<36} {result['problems']:<33}| {fresh['problems']}")
    for key, value in result["metrics"].items():
        if key in fresh["metrics"]:
            leaked = format_metric(key, value, result["n"])
            console.line(f"  {leaked:<70}| {format_value(fresh['metrics'][key], fresh['n'])}")
