"""`mlx-repair eval`: measure a model (optionally with an adapter) on one side of a problem set.

By default every problem gets one greedy draft; each failing draft gets one repair turn
(feedback from the visible cases, verified on all cases) and one independent resample at
the same cost, so that `repair_pass@1` is read beside its budget-matched baseline
`resample_pass@2`. The run is stored under runs/ and resumes when re-run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SIDES = ("eval", "train", "all")


def add_arguments(parser) -> None:
    parser.add_argument("--model", dest="run.model", metavar="MODEL", help="packaged name, .gguf file, model folder or hub id")
    parser.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder to apply to the model")
    parser.add_argument("--problems", dest="run.problems", metavar="PROBLEMS", help="'humaneval' or a HumanEval/MBPP-format JSONL")
    parser.add_argument("--split", default="eval", choices=SIDES, help="side of the train/eval split (default: eval)")
    parser.add_argument("--limit", dest="run.limit", metavar="N", type=int, help="only the first N problems of that side")
    parser.add_argument("--samples", dest="sampling.samples", metavar="N", type=int, help="drafts per problem (pass@k needs >= 2k)")
    parser.add_argument("--temperature", dest="sampling.temperature", metavar="T", type=float, help="0 is greedy (default)")
    parser.add_argument("--max-tokens", dest="sampling.max_tokens", metavar="N", type=int, help="per model output")
    parser.add_argument("--no-repair", action="store_true", help="cold pass@1 only: skip repair and resampling")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    parser.add_argument("--run-dir", metavar="DIR", help="store the run here (default: runs/eval-<model>-<settings hash>)")


def run(args) -> int:
    from mlx_repair import blas
    from mlx_repair.config import config_from_args

    blas.preload()
    config = config_from_args(args)
    result = evaluate_model(config, args.split, adapter=args.adapter, repair=not args.no_repair, run_dir=args.run_dir)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def evaluate_model(config, side: str, adapter=None, repair: bool = True, run_dir=None, console=None) -> dict:
    """Run (or resume) the evaluation loop and return the result dict that --json writes."""
    from mlx_repair.console import Console
    from mlx_repair.evaluate import format_metric, gains_over_cold, summarize
    from mlx_repair.events import StageFinished, StageStarted
    from mlx_repair.loop import LoopConfig, run_loop
    from mlx_repair.runs import load_writer, problems_for, run_dir as default_run_dir, sandbox_pool, settings_of
    from mlx_repair.store import Store

    console = console or Console()
    problems, split = problems_for(config, side)
    settings = settings_of(config, side=side, adapter=adapter, repair=repair)
    directory = default_run_dir(config, "eval", settings, run_dir)
    started = time.perf_counter()
    writer = load_writer(config, adapter, progress=console.import_progress)
    loop_config = LoopConfig(
        samples=config.sampling.samples,
        rounds=1 if repair else 0,
        resample=repair,
        save_pairs=False,
        stage="eval",
    )
    with Store.open(directory) as store, sandbox_pool(config) as pool:
        store.start_run("eval", writer.name, config.run.problems, settings, split.to_dict())
        console.show(StageStarted("eval", len(problems)))
        console.follow(run_loop(problems, writer, pool, store, loop_config))
        seconds = time.perf_counter() - started
        console.show(StageFinished("eval", seconds, writer.stats.peak_memory_gb))
        metrics, rows = summarize(store, problems)
    n = len(problems)
    console.line(f"{writer.name} on {config.run.problems} ({side} side, n={n}), run in {directory}")
    for key, value in metrics.items():
        console.line("  " + format_metric(key, value, n))
    for attr, label in (("repair", "repair"), ("resample", "resampling")):
        gained = gains_over_cold(rows, attr)
        if any(getattr(r, attr) is not None for r in rows):
            console.line(f"  problems gained over cold by {label}: {len(gained)} {' '.join(gained)}")
    console.line(
        f"  {writer.stats.generated_tokens} tokens in {seconds:.0f}s "
        f"({writer.stats.tokens_per_second:.1f} tok/s while generating), peak {writer.stats.peak_memory_gb:.1f} GB"
    )
    return {
        "model": writer.name,
        "adapter": adapter,
        "problems": config.run.problems,
        "side": side,
        "n": n,
        "metrics": metrics,
        "per_problem": [r.to_dict() for r in rows],
        "split": split.to_dict(),
        "sampling": writer.sampling_for("draft"),
        "seconds": round(seconds, 1),
        "generated_tokens": writer.stats.generated_tokens,
        "peak_memory_gb": round(writer.stats.peak_memory_gb, 2),
        "run_dir": str(directory),
    }
