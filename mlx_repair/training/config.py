"""Training settings: `TrainConfig`, the named presets, and the config a given dataset
and model allow."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mlx_repair.errors import UserError

FINE_TUNE_TYPES = ("lora", "dora")
# What training minimises: the answers' negative log-likelihood (mlx-lm's loss), or DPO's
# preference loss between a passing and a failing answer (training/preference.py).
OBJECTIVES = ("sft", "preference")
WEIGHTS = ("best", "last")  # which step's weights the adapter is


# Settings that must be at least 1.
POSITIVE_FIELDS = (
    "rank", "iters", "batch_size", "max_seq_length", "steps_per_report", "steps_per_eval", "save_every",
)


@dataclass
class TrainConfig:
    """LoRA settings. The defaults suit tens to hundreds of pairs on a GPU Mac; see
    `PRESETS["cpu"]` for a 2-core CPU."""

    fine_tune_type: str = "lora"  # "lora" or "dora"
    rank: int = 8
    # mlx-lm's scale (not PEFT's alpha): the LoRA update is multiplied by it.
    scale: float = 20.0
    dropout: float = 0.0
    # The last `num_layers` transformer blocks get adapters (-1: all); fewer layers also
    # means a shorter backward pass.
    num_layers: int = 16
    # mlx-lm's default; chosen by a sweep (benchmarks/results/learning_signal_qwen0.5b.md).
    learning_rate: float = 1e-5
    iters: int = 100
    epochs: float | None = None  # when set, iters = ceil(epochs * train records / batch_size)
    batch_size: int = 4
    # Longer records are dropped, not truncated (truncation would cut the answer).
    max_seq_length: int = 2048
    # Recompute each block in the backward pass: slower, far less memory. Qwen3.5-0.8B
    # (whose Gated DeltaNet trains as a per-token loop) needs it to stay under 10 GB:
    # 7.4 instead of 13.5 GB in float32 (benchmarks/results/train_throughput.md).
    grad_checkpoint: bool = False
    # Compile the step as mlx-lm does (faster on Qwen 0.5B). Hybrid models (qwen3_5's
    # Gated DeltaNet) compile slower and with more memory on CPU: RECURRENT_TRAINING.
    compile: bool = True
    seed: int = 0
    steps_per_report: int = 10
    # Validation this often: early stopping keeps the best of these.
    steps_per_eval: int = 10
    val_batches: int = -1  # -1: the whole validation set
    # Validations in a row without a new best validation loss before training stops
    # (None: train all `iters`; weights = "last" trains them all too).
    patience: int | None = 3
    # Which weights the adapter is: "best" (the best validation loss) or "last" (the last
    # step's, after all `iters`: no early stopping). Past its best validation loss the
    # recipe keeps learning its training problems (65% -> 88% cold on them at 320 steps,
    # benchmarks/results/learning_signal_qwen0.5b.md), which a user's own set may want.
    weights: str = "best"
    save_every: int = 10
    objective: str = "sft"  # OBJECTIVES; "preference" needs records with a rejected answer
    # The preference objective compares the answers' log-probability gains over the base
    # per answer token (True) or per answer (False: DPO's original). Per answer, a general
    # drift that lifts every token a little lifts the longer answer more: on Qwen 0.5B,
    # after 25 steps, held-out failing answers (mostly the longer ones) had gained 3.1
    # nats and passing ones 0.7 (benchmarks/results/learning_signal_qwen0.5b.md).
    per_token_margin: bool = True
    # The preference objective's beta: how far the margin may move before the loss
    # saturates (DPO's usual 0.1 for whole answers; per-token margins are ~100x smaller,
    # so 2.0, as SimPO's length-normalised margins use).
    beta: float = 2.0
    # Weight of the passing answer's token NLL added to the preference loss (1.0, as in
    # iterative reasoning preference optimisation): keeps its likelihood from falling.
    nll_weight: float = 1.0

    def __post_init__(self):
        if self.fine_tune_type not in FINE_TUNE_TYPES:
            raise UserError(f"fine_tune_type must be one of {FINE_TUNE_TYPES}, got {self.fine_tune_type!r}")
        if self.weights not in WEIGHTS:
            raise UserError(f"train weights must be one of {WEIGHTS}, got {self.weights!r}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"train objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.beta <= 0 or self.nll_weight < 0:
            raise UserError(f"train beta must be above 0 and nll_weight 0 or more, got {self.beta} and {self.nll_weight}")
        for name in POSITIVE_FIELDS:
            if getattr(self, name) < 1:
                raise UserError(f"train {name} must be at least 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise UserError(f"train patience must be at least 1 (or unset), got {self.patience}")

    @property
    def lora_parameters(self) -> dict:
        return {"rank": self.rank, "scale": self.scale, "dropout": self.dropout}


PRESETS = {
    "default": TrainConfig(),
    # A 2-core CPU: at most 60 steps at batch 1 over the last 8 blocks (~15-20 s each for
    # a 0.5B model), validation on 8 records every 10 steps, a checkpoint every 5; early
    # stopping ends it sooner once validation stops improving
    # (benchmarks/results/measurement_notes.md).
    "cpu": TrainConfig(
        num_layers=8, iters=60, batch_size=1,
        steps_per_report=5, steps_per_eval=10, val_batches=8, save_every=5,
    ),
}


def preset_name(name: str) -> str:
    """"auto" is "cpu" when MLX runs on the CPU, else "default"; other names pass through."""
    if name != "auto":
        return name
    import mlx.core as mx

    return "cpu" if mx.default_device() == mx.cpu else "default"


def preset(name: str, **overrides) -> TrainConfig:
    """A named preset (or "auto") with some fields overridden (None values are ignored)."""
    name = preset_name(name)
    if name not in PRESETS:
        raise UserError(f"unknown train preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


# Architectures whose training must checkpoint gradients and skip mx.compile: mlx-lm runs
# Gated DeltaNet as a per-token loop in training and keeps every token's state for the
# backward pass (a Qwen3.5-0.8B shape peaked at 13.5 GB without checkpointing, 7.4 GB
# with it; compiling it was slower and tripled memory on the tiny model).
RECURRENT_TRAINING = ("qwen3_5",)


def fit_config(
    config: TrainConfig, train_records: int, model_layers: int, model_type: str | None = None
) -> tuple[TrainConfig, list[str]]:
    """The config this data and model allow: batch no larger than the data, adapters on
    no more layers than exist, iters from epochs, gradient checkpointing where the
    architecture needs it. Returns it with notes on each change."""
    notes = []
    if model_type in RECURRENT_TRAINING and (config.compile or not config.grad_checkpoint):
        notes.append(f"{model_type}: training with gradient checkpointing and without mx.compile, to bound memory")
        config = replace(config, grad_checkpoint=True, compile=False)
    if config.batch_size > train_records:
        notes.append(f"batch size {config.batch_size} > {train_records} training records: using {train_records}")
        config = replace(config, batch_size=train_records)
    if config.num_layers == -1 or config.num_layers > model_layers:
        config = replace(config, num_layers=model_layers)
    if config.epochs is not None:
        batches_per_epoch = train_records // config.batch_size
        config = replace(config, iters=max(1, math.ceil(config.epochs * batches_per_epoch)))
    return config, notes
