"""What the core reports while it works. The loop, evaluation and training are generators
of these dataclasses (as mlx-lm's `stream_generate` yields responses); the CLI prints them
and the TUI draws them. Nothing here knows about either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlx_repair.store import Attempt, Pair


@dataclass(frozen=True)
class StageStarted:
    stage: str  # "eval-base", "mine", "train", "eval-adapter", ...
    total: int = 0  # units of work in the stage, when known


@dataclass(frozen=True)
class StageFinished:
    stage: str
    seconds: float
    peak_memory_gb: float = 0.0


@dataclass(frozen=True)
class Generating:
    """The model is about to write `count` outputs of one kind (drafts, repairs, ...)."""

    kind: str
    task_ids: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class AttemptFinished:
    """One model output has been run in the sandbox and stored (or found stored)."""

    attempt: Attempt
    resumed: bool = False


@dataclass(frozen=True)
class PairSaved:
    pair: Pair
    counts: dict = field(default_factory=dict)  # pairs per kind so far


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    generated_tokens: int = 0
    tokens_per_second: float = 0.0


@dataclass(frozen=True)
class TrainStep:
    iteration: int
    loss: float
    tokens_per_second: float
    peak_memory_gb: float
    validation_loss: float | None = None


@dataclass(frozen=True)
class Log:
    message: str
