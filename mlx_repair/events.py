"""What the core reports while it works. The loop, evaluation and training are generators
of these dataclasses (as mlx-lm's `stream_generate` yields responses); the CLI prints them
and the TUI draws them. Nothing here knows about either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlx_repair.mining.store import Attempt, Pair


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
class PartialText:
    """What the model has written so far of one output, after `num_tokens` tokens: the raw
    completion, before any code is extracted or the stop check cuts it."""

    kind: str  # of the request: "draft", "repair" or "resample"
    task_id: str
    sample_index: int
    round: int
    text: str
    num_tokens: int

    @property
    def key(self) -> tuple[str, str, int, int]:
        """The key of the attempt this text will become (`Attempt.key`)."""
        return (self.task_id, self.kind, self.sample_index, self.round)


@dataclass(frozen=True)
class Prefilling:
    """The model has read `done` of the `total` prompts of one call (`prompt_tokens` tokens
    so far): on a CPU, the first minutes of a call, before any output can finish. Later
    prompts are read while the first outputs are already being written."""

    kind: str  # of the requests: "draft", "repair" or "resample"
    done: int
    total: int
    prompt_tokens: int

    def text(self) -> str:
        return f"prefilling {self.done}/{self.total} prompts ({self.prompt_tokens} tokens)"


class WritingListener:
    """Told what the model does inside one long call, to show it live: each prompt it has
    read (`on_prefill`) and each output's text, token by token (`on_text`). The writer calls
    them from the thread that runs the model, so an override should be quick and
    thread-safe. Does nothing by default (like mlx-lm's `TrainingCallback`)."""

    def on_prefill(self, prefilling: Prefilling) -> None:
        pass

    def on_text(self, partial: PartialText) -> None:
        pass


@dataclass(frozen=True)
class AttemptFinished:
    """One model output has been run in the sandbox and stored (or found stored)."""

    attempt: Attempt
    resumed: bool = False


@dataclass(frozen=True)
class Selected:
    """Each selection strategy's pick among one problem's samples (evaluation/selection.py)."""

    task_id: str
    picks: dict  # {strategy: sample index}


@dataclass(frozen=True)
class PairSaved:
    pair: Pair
    counts: dict = field(default_factory=dict)  # pairs per kind so far


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int  # drafts
    total: int
    generated_tokens: int = 0
    tokens_per_second: float = 0.0
    follow_ups_done: int = 0  # repairs and resamples, of those asked for so far
    follow_ups_total: int = 0
    seconds: float = 0.0  # since the stage started


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


def event_line(event: object) -> str | None:
    """The one line that the console and the TUI's log both show for a stage, training
    or log event (None for the events each of them draws its own way)."""
    if isinstance(event, Log):
        return event.message
    if isinstance(event, StageStarted):
        return f"== {event.stage}" + (f" ({event.total} problems)" if event.total else "")
    if isinstance(event, StageFinished):
        memory = f", peak {event.peak_memory_gb:.1f} GB" if event.peak_memory_gb else ""
        return f"== {event.stage} done in {duration(event.seconds)}{memory}"
    if isinstance(event, TrainStep):
        validation = "" if event.validation_loss is None else f" val {event.validation_loss:.3f}"
        return (
            f"iter {event.iteration:>5}  loss {event.loss:.3f}{validation}  "
            f"{event.tokens_per_second:.0f} tok/s  peak {event.peak_memory_gb:.1f} GB"
        )
    return None


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
