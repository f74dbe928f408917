"""Is a head critic's signal in its features at all? Cross-validation on the hidden states a
`train-critic --kind head` run cached, no model call.

The head reads the model's final hidden state where the answer would start. Selection
ranks one problem's samples only, so what matters is how well a score ranks those: the
AUROC within a problem (`evaluation.stats.within_group_auroc`), not over all samples,
where knowing which problems are hard already scores well. This fits L2-regularised
logistic regressions on the cached features (standardised, Newton's method, numpy) at
several strengths, with k-fold cross-validation by problem over the critic's training
problems and on its held-out validation problems, and prints both AUROCs for each: if
no strength ranks within a problem above chance, the head's training settings are not
what is missing.

    .venv/bin/python benchmarks/critic_head_features.py --critic adapters/critic-qwen-head \
        --stores /work/runs/mine-train84-n4
"""

import argparse

import numpy as np
from mlx_lm.utils import load_tokenizer

from mlx_repair.config import Config
from mlx_repair.evaluation.stats import auroc, within_group_auroc
from mlx_repair.model.resolve import resolve_model
from mlx_repair.pipeline.critic import critic_examples
from mlx_repair.pipeline.stages import problems_for
from mlx_repair.training.critic import FEATURES_FILE, CriticConfig, _key, critic_tokens, split_examples


def features_of(args):
    """(X, labels, task ids) of the training and validation sides, as `train-critic` split
    them, from its features cache."""
    import mlx.core as mx

    config = Config()
    config.run.model, config.run.problems = args.model, args.problems
    problems = {p.task_id: p for p in problems_for(config, "train")[0]}
    examples, _ = critic_examples(args.stores, set(problems))
    tokenizer = load_tokenizer(resolve_model(args.model).path)  # the weights are not needed
    cached = mx.load(f"{args.critic}/{FEATURES_FILE}")
    sides = []
    for side in split_examples(examples, CriticConfig()):
        kept = [(cached[k], e) for e in side if (k := _key(critic_tokens(tokenizer, problems[e.task_id], e.code)[0])) in cached]
        sides.append((
            np.stack([np.array(x) for x, _ in kept]), np.array([e.passed for _, e in kept], float),
            np.array([e.task_id for _, e in kept]),
        ))
    return sides


def fit(x: np.ndarray, y: np.ndarray, strength: float, steps: int = 30):
    """A scorer: logistic regression with `strength` x |w|^2 / 2 added to the mean loss."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = strength * np.eye(z.shape[1])
    penalty[-1, -1] = 1e-9  # the bias goes unpenalised
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) / len(y) + penalty @ w
        hessian = (z.T * (p * (1 - p) / len(y))) @ z + penalty
        w -= np.linalg.solve(hessian, gradient)
    return lambda x_: np.hstack([(x_ - mean) / std, np.ones((len(x_), 1))]) @ w


def measures(scores: np.ndarray, y: np.ndarray, tasks: np.ndarray) -> tuple[float, float]:
    groups = [(scores[tasks == t].tolist(), (y[tasks == t] == 1).tolist()) for t in np.unique(tasks)]
    return auroc(scores.tolist(), (y == 1).tolist()), within_group_auroc(groups)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critic", required=True, help="a head critic folder (its features cache is read)")
    parser.add_argument("--stores", nargs="+", required=True, help="the run directories it was trained on")
    parser.add_argument("--model", default=Config().run.model)
    parser.add_argument("--problems", default="humaneval")
    parser.add_argument("--strengths", default="0.001,0.01,0.1,1,10,100,1000")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    (x, y, tasks), (vx, vy, vtasks) = features_of(args)
    for name, (labels, ids) in {"train side": (y, tasks), "validation": (vy, vtasks)}.items():
        both = sum(0 < labels[ids == t].mean() < 1 for t in np.unique(ids))
        print(f"{name}: {len(labels)} samples ({int(labels.sum())} passing) of {len(set(ids))} problems, "
              f"{both} of them with both labels")
    print(f"{x.shape[1]} features; 'within': the mean AUROC over the problems with both labels")
    folds = np.array_split(np.random.default_rng(0).permutation(np.unique(tasks)), args.folds)
    print(f"{'L2':>8}  {'cv AUROC':>9}  {'cv within':>10}  {'valid AUROC':>12}  {'valid within':>13}")
    for strength in map(float, args.strengths.split(",")):
        cross = []
        for fold in folds:
            held = np.isin(tasks, fold)
            cross.append(measures(fit(x[~held], y[~held], strength)(x[held]), y[held], tasks[held]))
        valid = measures(fit(x, y, strength)(vx), vy, vtasks)
        overall, within = np.nanmean(np.array(cross, dtype=float), axis=0)
        print(f"{strength:>8g}  {overall:>9.3f}  {within:>10.3f}  {valid[0]:>12.3f}  {valid[1]:>13.3f}")


if __name__ == "__main__":
    main()
