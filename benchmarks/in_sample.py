"""Does the recipe learn what it is shown? The same adapter measured on the problems it
trained on and on problems it never saw.

Every adapter of the recipe sweep was judged on held-out problems only, and none moved
them; that alone cannot tell a recipe that learns nothing from one that learns its
training problems and does not carry it over. This trains one adapter on a mining run's
records for a fixed number of steps (no early stopping, so it goes well past the best
validation loss) and evaluates the base and the last step's weights with sampled cold
chains on both sides of the split, reporting each slice problem by problem: the train
side's problems that gave training records ("trained"), the rest of the train side (the
validation problems and those no sample solved), and the eval side. With --add-mine-dir
the records of a second mining run (problems written for practice, or invented) join the
training side: does training on more distinct problems carry to the eval side? Every
stage resumes: re-run the same command to continue.

    .venv/bin/python benchmarks/in_sample.py --mine-dir RUN_DIR --out-dir DIR --iters 320
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mlx_repair.model import blas

print(blas.preload())  # before mlx.core is imported

from mlx_repair.config import DEFAULT_MODEL, Config  # noqa: E402
from mlx_repair.console import Console  # noqa: E402
from mlx_repair.evaluation.compare import SCORES, compare_results  # noqa: E402
from mlx_repair.pipeline.evaluate import evaluate_model  # noqa: E402
from mlx_repair.pipeline.stages import problems_for  # noqa: E402
from mlx_repair.pipeline.train import mined_dataset, mix_of, train_config_of, train_stage, with_added_run  # noqa: E402


def sliced(result: dict, tasks: set[str]) -> dict:
    """The result restricted to `tasks`, its metrics recomputed from the per-problem scores."""
    rows = [row for row in result["per_problem"] if row["task_id"] in tasks]
    scored = [(metric, key) for metric, key in SCORES.items() if all(row[key] is not None for row in rows)]
    metrics = {metric: sum(row[key] for row in rows) / len(rows) for metric, key in scored}
    return {"per_problem": rows, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mine-dir", required=True, help="the mining run directory (train side)")
    parser.add_argument("--out-dir", required=True, help="the adapter folders and results.json")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--problems", default="humaneval")
    parser.add_argument("--repair-prompt", default="facts", help="the records' repair prompt mode")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument("--iters", type=int, default=320, help="training steps (all of them: no early stopping)")
    parser.add_argument("--samples", type=int, default=4, help="cold drafts per problem")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0, help="training seed: the adapter's initial weights and the data order")
    parser.add_argument(
        "--steps-per-eval", type=int, default=10, help="steps between validation losses (they never change the weights)"
    )
    parser.add_argument(
        "--sides", default="train,eval", help="the sides of the split to evaluate, comma-separated ('' for none)"
    )
    parser.add_argument(
        "--add-mine-dir", action="append", default=[], help="another mining run whose records all join the training side (repeatable)"
    )
    parser.add_argument(
        "--add-problems", action="append", default=[], help="the problems each --add-mine-dir was mined on (a JSONL, invented:RUN_DIR)"
    )
    args = parser.parse_args()
    if len(args.add_mine_dir) != len(args.add_problems):
        parser.error("give one --add-problems for each --add-mine-dir")

    config = Config()
    config.run.model, config.run.problems, config.repair.prompt = args.model, args.problems, args.repair_prompt
    config.train.preset = "cpu"
    eval_config = replace(config, sampling=replace(config.sampling, samples=args.samples, temperature=args.temperature))
    out_dir = Path(args.out_dir)
    console = Console()

    mined, split = problems_for(config, "train")
    dataset = mined_dataset(mined, Path(args.mine_dir), mix_of(config))
    added = {}
    for mine_dir, problems in zip(args.add_mine_dir, args.add_problems):
        dataset, more = with_added_run(config, dataset, mine_dir, problems)
        added[mine_dir] = {"counts": more.counts["train"], "problems": len(more.trained_problems)}
        print(f"added from {mine_dir}: {json.dumps(added[mine_dir])}")
    trained_tasks = dataset.trained_problems
    print(f"dataset: {json.dumps(dataset.counts)}; from {len(trained_tasks)} problems", flush=True)
    train_config = replace(
        train_config_of(config), learning_rate=args.learning_rate, scale=args.scale, iters=args.iters, weights="last",
        seed=args.seed, steps_per_eval=args.steps_per_eval,
    )
    name = f"lr{args.learning_rate:g}-scale{args.scale:g}-iters{args.iters}-last"
    name += f"-seed{args.seed}" if args.seed else ""
    name += "".join(f"-plus-{Path(mine_dir).name}" for mine_dir in args.add_mine_dir)
    trained = train_stage(config, split, dataset, out_dir / name, train_config, console)
    adapter = out_dir / name

    results = {
        "dataset": dataset.counts,
        "added": added,
        "train_problems": sorted(trained_tasks),
        "validation_losses": trained.validation_losses,
        "best_step": trained.manifest["metrics"]["best_step"],
        "samples": args.samples,
        "temperature": args.temperature,
        "slices": {},
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for side in filter(None, args.sides.split(",")):
        base = evaluate_model(eval_config, side, repair=False, console=console)
        adapted = evaluate_model(eval_config, side, adapter=str(adapter), repair=False, console=console)
        every = {row["task_id"] for row in base["per_problem"]}
        slices = {"eval side": every} if side == "eval" else {
            "trained": every & trained_tasks, "train side, not trained": every - trained_tasks
        }
        for label, tasks in slices.items():
            (cold,) = compare_results(sliced(base, tasks), sliced(adapted, tasks))
            results["slices"][label] = {"n": len(tasks), "against_base": cold.describe(), "fixed": cold.fixed,
                                        "broken": cold.broken, "p_value": cold.p_value, "base": cold.a, "adapter": cold.b}
            print(f"{label}: {cold.describe()}", flush=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
