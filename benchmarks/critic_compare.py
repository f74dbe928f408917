"""Which critic: a head on the frozen model's hidden state, or a LoRA adapter answering
yes or no (training/critic.py). Each kind trains on the same train-side samples and is
measured on the same eval-side samples, in the same run:
- validation AUROC (held-out train-side problems) and AUROC on every eval-side sample,
  against its verdict on all cases;
- the critic's selected pass@1 against the first sample's and pass@N (the oracle), with
  the problems it fixed and broke and an exact McNemar p;
- wall time to train (model loading and, for the head, reading the samples included)
  and to score the eval side, and peak memory.
The eval side is scored with `selection.select_samples`, as `eval --select critic` does;
it records the critic's picks in the eval run's store as that would.

On the packaged Qwen 0.5B (train-side samples from `mine` or `eval --split train
--samples N`, eval-side ones from `eval --samples N --no-repair`; a quiet machine, and
hours for the lora kind):

    .venv/bin/python benchmarks/critic_compare.py --train-dirs RUN_DIR [RUN_DIR ...] \
        --eval-dir RUN_DIR --out-dir DIR

On a tiny random model with a planted signal (tests/tiny_critic.py; under a minute):

    .venv/bin/python benchmarks/critic_compare.py --planted --out-dir DIR --seeds 0,1,2
"""

import argparse
import json
import sys
import time
from pathlib import Path

from mlx_repair.model import blas

print(blas.preload())  # before mlx.core is imported

import mlx.core as mx  # noqa: E402

from mlx_repair.config import CRITIC_KINDS, DEFAULT_MODEL, Config  # noqa: E402
from mlx_repair.console import Console  # noqa: E402
from mlx_repair.evaluation.metrics import format_rate  # noqa: E402
from mlx_repair.evaluation.selection import select_samples  # noqa: E402
from mlx_repair.mining.store import Store  # noqa: E402
from mlx_repair.pipeline.critic import train_critic_job  # noqa: E402
from mlx_repair.pipeline.stages import problems_for  # noqa: E402
from mlx_repair.training.critic import CriticConfig, load_critic  # noqa: E402
from mlx_repair.training.manifest import MANIFEST_FILE  # noqa: E402

PLANTED_PROBLEMS = 60
PLANTED_SAMPLES = 6


def planted(out_dir: Path, seed: int) -> tuple[Config, list[str], str]:
    """A tiny model, the planted problems, a store of samples of all of them (the critic
    reads the train side's) and one of the eval side's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tiny_critic import planted_problem_file, planted_store
    from tiny_models import build_tiny_model

    config = Config()
    config.run.model = str(build_tiny_model(out_dir / "tiny-model"))
    config.run.problems = str(planted_problem_file(out_dir / "planted.jsonl", PLANTED_PROBLEMS))
    train, _ = problems_for(config, "train")
    evals, _ = problems_for(config, "eval")
    stores = out_dir / f"stores-{seed}"
    train_dir = planted_store(stores / "train", train + evals, PLANTED_SAMPLES, seed=2 * seed)
    return config, [str(train_dir)], str(planted_store(stores / "eval", evals, PLANTED_SAMPLES, seed=2 * seed + 1))


def measure(config, train_dirs, eval_dir, critic: CriticConfig, out: Path) -> dict:
    """Train one critic and measure it on the eval run's samples."""
    mx.reset_peak_memory()
    started = time.perf_counter()
    train_critic_job(config, train_dirs, critic, out, Console())
    trained = time.perf_counter() - started
    evals, _ = problems_for(config, "eval")
    with Store.open(eval_dir) as store:
        store.select_run("eval")
        evals = [p for p in evals if store.attempts(p.task_id)]
        started = time.perf_counter()
        selection = select_samples(evals, store, None, ("first", "critic"), load_critic(out).scores)
    results = {r.strategy: r for r in selection.results}
    manifest = json.loads((out / MANIFEST_FILE).read_text())["critic"]
    return {
        "kind": critic.kind, "seed": critic.seed, "valid_auroc": manifest["valid_auroc"],
        "train_samples": manifest["samples"]["train"], "eval_auroc": selection.critic["auroc"],
        "eval_samples": selection.critic["samples"], "n": results["first"].n, "samples_per_problem": selection.samples,
        "first": results["first"].passed, "critic": results["critic"].passed, "oracle": results["oracle"].passed,
        "fixed": results["critic"].fixed, "broken": results["critic"].broken, "p_value": results["critic"].p_value,
        "train_seconds": round(trained, 1), "score_seconds": round(time.perf_counter() - started, 1),
        "peak_memory_gb": round(mx.get_peak_memory() / 1e9, 2),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| kind | seed | valid AUROC | eval AUROC (samples) | first pass@1 | critic pass@1 | fixed / broken | McNemar p "
        f"| pass@N | train s | score s | peak GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        valid = "-" if r["valid_auroc"] is None else f"{r['valid_auroc']:.3f}"
        auroc = "-" if r["eval_auroc"] is None else f"{r['eval_auroc']:.3f}"
        lines.append(
            f"| {r['kind']} | {r['seed']} | {valid} | {auroc} ({r['eval_samples']}) | {format_rate(r['first'] / r['n'], r['n'])} "
            f"| {format_rate(r['critic'] / r['n'], r['n'])} | {len(r['fixed'])} / {len(r['broken'])} | {r['p_value']:.3g} "
            f"| {format_rate(r['oracle'] / r['n'], r['n'])} | {r['train_seconds']} | {r['score_seconds']} | {r['peak_memory_gb']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dirs", nargs="+", help="run directories whose train-side samples train the critics")
    parser.add_argument("--eval-dir", help="an eval run directory with N drafts per eval-side problem")
    parser.add_argument("--planted", action="store_true", help="a tiny random model and planted stores instead")
    parser.add_argument("--out-dir", required=True, help="one critic folder per kind and seed, and results.json")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--problems", default="humaneval")
    parser.add_argument("--kinds", default=",".join(CRITIC_KINDS))
    parser.add_argument("--seeds", default="0", help="critic seeds (the validation split, initial weights), comma-separated")
    parser.add_argument("--lora-iters", type=int, help="the lora kind's steps (default: its epochs)")
    parser.add_argument("--lora-learning-rate", type=float, help="the lora kind's learning rate (default: its own)")
    args = parser.parse_args()
    if not args.planted and not (args.train_dirs and args.eval_dir):
        parser.error("give --train-dirs and --eval-dir, or --planted")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        if args.planted:
            config, train_dirs, eval_dir = planted(out_dir, seed)
        else:
            config, train_dirs, eval_dir = Config(), args.train_dirs, args.eval_dir
            config.run.model, config.run.problems = args.model, args.problems
        for kind in args.kinds.split(","):
            lora = kind == "lora"
            critic = CriticConfig(kind=kind, seed=seed, iters=args.lora_iters if lora else None,
                                  learning_rate=args.lora_learning_rate if lora else None)
            rows.append(measure(config, train_dirs, eval_dir, critic, out_dir / f"critic-{kind}-{seed}"))
            (out_dir / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
