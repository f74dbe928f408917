"""The train/eval split: each task's side decided by a stable hash of its id; problems the
model invented are always on the train side."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mlx_repair.problems import INVENTED, Problem

SPLIT_SEED = "mlx-repair-split-v1"


@dataclass(frozen=True)
class Split:
    """Which task ids may be mined and trained on, and which are kept for evaluation."""

    train: tuple[str, ...]
    eval: tuple[str, ...]
    eval_fraction: float
    seed: str = SPLIT_SEED

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "train": list(self.train),
            "eval": list(self.eval),
        }


def is_eval_task(task_id: str, eval_fraction: float, seed: str = SPLIT_SEED) -> bool:
    """Decide one task's side from a hash of its id alone, so adding or removing other
    problems never moves it, on any machine or Python version."""
    digest = hashlib.sha256(f"{seed}\0{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def split_problems(
    problems: list[Problem], eval_fraction: float = 0.5, seed: str = SPLIT_SEED
) -> Split:
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    ids = [p.task_id for p in problems]
    # Invented problems are for mining only: never on the eval side.
    evals = tuple(p.task_id for p in problems if p.origin != INVENTED and is_eval_task(p.task_id, eval_fraction, seed))
    eval_ids = set(evals)
    train = tuple(t for t in ids if t not in eval_ids)
    return Split(train=train, eval=evals, eval_fraction=eval_fraction, seed=seed)


def select(problems: list[Problem], split: Split, which: str) -> list[Problem]:
    """The problems on one side of the split: 'train', 'eval' or 'all'."""
    if which == "all":
        return list(problems)
    if which not in ("train", "eval"):
        raise ValueError(f"split must be 'train', 'eval' or 'all', got {which!r}")
    keep = set(getattr(split, which))
    return [p for p in problems if p.task_id in keep]
