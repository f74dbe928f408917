"""The training recipe sweep: LoRA adapters trained on the same mined pairs with several
(learning rate, scale) settings, each with early stopping, and each measured by cold
pass@1 on the eval side against the base model, problem by problem.

For each setting it records the best validation loss and its step, whether training
stopped early, the training time, cold pass@1 with n, and the problems fixed and broken
against the base with an exact McNemar p. With --repair-turn each adapter is evaluated as
`mlx-repair train` evaluates it (one repair turn and the budget-matched resample beside the
cold draft): the same run, so `mlx-repair train --out FOLDER` resumes it, and every metric
gets its comparison with the base. With --control garbage the adapter learns from as many
garbage pairs (a failing draft "fixed" by another failing draft) as there are repair
pairs, in the same recipe: the control that tells learning from the repair pairs apart
from learning the format alone. With --add-mine-dir the records of a second mining run (the
problems the model invented, say) join the training side, the validation records staying
the first run's: the comparison of an adapter with and without them. Every stage resumes (the adapters from their
checkpoints, the evaluations from their stores): re-run the same command to continue.

    .venv/bin/python benchmarks/recipe_sweep.py --mine-dir RUN_DIR --out-dir DIR \
        --settings 5e-6:20,1e-5:20,5e-5:20 --repair-prompt facts
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

from mlx_repair.model import blas

print(blas.preload())  # before mlx.core is imported

from mlx_repair.config import DEFAULT_MODEL, Config  # noqa: E402
from mlx_repair.console import Console  # noqa: E402
from mlx_repair.evaluation.compare import compare_results  # noqa: E402
from mlx_repair.mining.store import CONTROL_KINDS, REPAIR_PROVENANCES  # noqa: E402
from mlx_repair.pipeline.evaluate import evaluate_model  # noqa: E402
from mlx_repair.pipeline.stages import problems_for  # noqa: E402
from mlx_repair.pipeline.train import mined_dataset, mix_of, train_config_of, train_stage, with_added_run  # noqa: E402
from mlx_repair.training.config import OBJECTIVES  # noqa: E402


def settings(text: str) -> list[tuple[float, float]]:
    return [tuple(float(x) for x in item.split(":")) for item in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mine-dir", required=True, help="the mining run directory (train side)")
    parser.add_argument("--out-dir", required=True, help="one adapter folder per setting, and results.json")
    parser.add_argument("--settings", default="5e-6:20,1e-5:20,5e-5:20", help="learning_rate:scale, comma-separated")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--problems", default="humaneval")
    parser.add_argument("--repair-prompt", default="code", help="the records' repair prompt mode")
    parser.add_argument("--eval-limit", type=int, help="only the first N eval-side problems")
    parser.add_argument("--iters", type=int, default=100, help="training steps at most (early stopping may end sooner)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument(
        "--answer-docstrings", action="store_true", help="answers keep the docstrings the prompt holds (the old records)"
    )
    parser.add_argument(
        "--control", choices=CONTROL_KINDS, help="train on as many same-shape garbage pairs as there are repair pairs"
    )
    parser.add_argument(
        "--pairs-per-problem", type=int, default=2, help="records of each kind per mined problem, at most (train's cap)"
    )
    parser.add_argument(
        "--repair-provenance", choices=REPAIR_PROVENANCES, help="train on repair pairs of this provenance only"
    )
    parser.add_argument(
        "--objective", choices=OBJECTIVES, default="sft", help="sft, or preference (DPO: a passing over a failing answer)"
    )
    parser.add_argument("--beta", type=float, help="the preference objective's DPO beta")
    parser.add_argument("--nll-weight", type=float, help="weight of the passing answer's NLL in the preference loss")
    parser.add_argument("--samples", type=int, default=1, help="drafts per eval problem (chains, with --repair-turn)")
    parser.add_argument("--temperature", type=float, default=0.0, help="the eval's sampling temperature")
    parser.add_argument(
        "--add-mine-dir", help="a second mining run (e.g. of invented problems) whose records all join the training side"
    )
    parser.add_argument("--add-problems", help="the problems --add-mine-dir was mined on (e.g. invented:RUN_DIR)")
    parser.add_argument(
        "--repair-turn", action="store_true", help="evaluate each adapter with its repair turn and resample, as train does"
    )
    args = parser.parse_args()

    config = Config()
    config.run.model, config.run.problems = args.model, args.problems
    config.repair.prompt, config.train.preset, config.train.iters = args.repair_prompt, args.preset, args.iters
    config.train.answer_docstrings = args.answer_docstrings
    config.train.pairs_per_problem = args.pairs_per_problem
    config.train.repair_provenance = args.repair_provenance
    config.train.objective, config.train.beta, config.train.nll_weight = args.objective, args.beta, args.nll_weight
    eval_config = replace(
        config, run=replace(config.run, limit=args.eval_limit),
        sampling=replace(config.sampling, samples=args.samples, temperature=args.temperature),
    )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console()

    mined, split = problems_for(config, "train")
    dataset = mined_dataset(mined, Path(args.mine_dir), replace(mix_of(config), control=args.control))
    added = None
    if args.add_mine_dir:
        if not args.add_problems:
            raise SystemExit("--add-mine-dir needs --add-problems (the problems it was mined on)")
        dataset, added = with_added_run(config, dataset, args.add_mine_dir, args.add_problems, args.control)
        problems = len(added.trained_problems)
        print(f"added from {args.add_mine_dir}: {json.dumps(added.counts['train'])} ({problems} problems)")
    print(f"dataset: {json.dumps(dataset.counts)}; valid problems {len(dataset.valid_tasks)}")
    # The base with its repair turn, as `train` evaluates it: the same run (and store) as
    # `mlx-repair eval` with these settings, so that one is resumed, not redone.
    base = evaluate_model(eval_config, "eval", console=console)
    results_file = out_dir / "results.json"
    earlier = json.loads(results_file.read_text()) if results_file.exists() else {}  # other settings' runs
    results = {"base": base["metrics"], "n": base["n"], "settings": earlier.get("settings", {})}
    for learning_rate, scale in settings(args.settings):
        train_config = replace(train_config_of(config), learning_rate=learning_rate, scale=scale)
        name = f"lr{learning_rate:g}-scale{scale:g}" + ("" if args.answer_docstrings else "-no-docstrings")
        name += f"-control-{args.control}" if args.control else ""
        name += f"-cap{args.pairs_per_problem}-iters{args.iters}" if args.pairs_per_problem != 2 else ""
        name += f"-plus-{Path(args.add_mine_dir).name}" if added else ""
        name += f"-{args.repair_provenance}-only" if args.repair_provenance else ""
        if args.objective == "preference":
            name += f"-preference-beta{train_config.beta:g}-nll{train_config.nll_weight:g}"
        folder = out_dir / name
        manifest = train_stage(config, split, dataset, folder, train_config, console).manifest
        adapted = evaluate_model(eval_config, "eval", adapter=str(folder), repair=args.repair_turn, console=console)
        compared = {c.metric: c for c in compare_results(base, adapted)}
        cold = compared["cold_pass@1"]
        metrics = manifest["metrics"]
        results["settings"][name] = {
            "learning_rate": learning_rate,
            "repair_turn": args.repair_turn,
            "answer_docstrings": args.answer_docstrings,
            "control": args.control,
            "dataset": dataset.counts,
            "pairs_per_problem": args.pairs_per_problem,
            "repair_provenance": args.repair_provenance,
            "objective": args.objective,
            "beta": train_config.beta if args.objective == "preference" else None,
            "nll_weight": train_config.nll_weight if args.objective == "preference" else None,
            "eval_samples": args.samples,
            "eval_temperature": args.temperature,
            "added": {"mine_dir": args.add_mine_dir, "counts": added.counts["train"]} if added else None,
            "scale": scale,
            "best_step": metrics["best_step"],
            "best_val_loss": metrics["best_val_loss"],
            "initial_val_loss": metrics["initial_val_loss"],
            "steps": metrics["iterations"],
            "stopped_early": metrics["stopped_early"],
            "train_seconds": round(metrics["train_seconds"], 1),
            "cold_pass@1": adapted["metrics"]["cold_pass@1"],
            "fixed": cold.fixed,
            "broken": cold.broken,
            "p_value": cold.p_value,
            "against_base": {metric: c.describe() for metric, c in compared.items()},
        }
        results_file.write_text(json.dumps(results, indent=1) + "\n")
        for comparison in compared.values():
            print(f"{name}: {comparison.describe()}", flush=True)


if __name__ == "__main__":
    main()
