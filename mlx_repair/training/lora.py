"""Train a LoRA (or DoRA) adapter on the mined pairs with mlx-lm's tuner, resumably.

`train_adapter` is a generator of events (`TrainStep` on each loss report, `Log` for
notices), the way the rest of the core reports progress. It writes to `out_dir`:
- adapters.safetensors + adapter_config.json: what `mlx_lm.load(path, adapter_path=...)`
  and `mlx_lm.generate --adapter-path` read;
- manifest.json (`training.manifest`);
- checkpoint.safetensors (`training.checkpoints`).

Why not `mlx_lm.tuner.train`: it cannot resume. It saves adapter weights only (not the
optimizer state), restarts the step count, and draws its batch order from numpy's global
RNG, which its own validation passes also consume, so a restarted run would see other
batches. The loop below is mlx-lm's `train` cut down to what we use, built from its
pieces (`linear_to_lora_layers`, `default_loss`, `iterate_batches`, `evaluate`,
`grad_checkpoint`, a compiled step over model, optimizer and RNG state), plus:
- the batch order of epoch e is `iterate_batches(..., seed=f(seed, e))`, so the order
  depends only on (seed, step) and a resumed run skips to its position;
- the RNG (dropout) is seeded per step from (seed, step);
- logits are computed for the answer positions only (`answer_loss`): the same loss as
  `default_loss`, with less memory (the prompt's logits are masked out anyway);
- `objective = "preference"`: a passing and a failing answer per record, DPO's loss
  against the base (training/preference.py) instead of the answers' likelihood;
- every `save_every` steps, a checkpoint;
- early stopping: the adapter written is the one with the best validation loss, and
  training stops once it has not improved for `patience` validations (mlx-lm's trainer
  only reports validation loss); `weights = "last"` trains all `iters` and writes the last
  step's weights instead.
A re-run with the same settings continues from the checkpoint and ends with the same
adapter as an uninterrupted run, up to float noise.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from mlx_repair.errors import UserError
from mlx_repair.events import Log, TrainStep
from mlx_repair.mining.dataset import (
    INFO_FILE,
    TRAIN_FILE,
    VALID_FILE,
    Dataset,
    data_hash,
    read_jsonl,
    tokenize,
    write_dataset,
)
from mlx_repair.training.checkpoints import (
    CHECKPOINT_FILE,
    RunState,
    atomic_write_text,
    load_checkpoint,
    run_fingerprint,
    save_adapter,
    save_checkpoint,
)
from mlx_repair.training import preference
from mlx_repair.training.config import TrainConfig, fit_config
from mlx_repair.training.logits import answer_logits, answer_start
from mlx_repair.training.manifest import MANIFEST_FILE, build_manifest

ADAPTER_CONFIG_FILE = "adapter_config.json"


def train_adapter(
    model,
    data,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    base_model: str | None = None,
    callback=None,
    extra: dict | None = None,
    quantize: int | None = None,
) -> Iterator[TrainStep | Log]:
    """Train an adapter into `out_dir`, resuming from its checkpoint if it has one.

    model: a model spec for `models.load_model`, or a loaded (model, tokenizer) pair
        (which gets the adapter layers added); `base_model` names the latter's spec for
        the manifest. data: a folder holding train.jsonl/valid.jsonl (as
        `dataset.write_dataset` writes them), or a `dataset.Dataset` (written to out_dir).
    callback: an optional mlx-lm `TrainingCallback`, called with mlx-lm's report dicts.
    extra: more top-level manifest entries (the run's problem split, the command, ...).
    quantize: bits to quantize the base model to before the adapters go on (QLoRA; a
        loaded pair is quantized in place); recorded in the manifest and the checkpoint's
        fingerprint, so a float checkpoint never resumes on a quantized base.

    Yields a `TrainStep` per report (tokens/s counts answer tokens, as mlx-lm does);
    iteration 0 carries only the validation loss before training (its loss is NaN).
    Returns (as the generator's value) the manifest dict.
    """
    import mlx.core as mx

    from mlx_repair.model.resolve import quantize_warning

    started = time.perf_counter()
    mx.reset_peak_memory()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if warning := quantize_warning(quantize):
        yield Log(warning)
    model, tokenizer, base_model = _load(model, base_model, quantize)
    data_dir, data_info = _data(data, out_dir)
    config = config or TrainConfig()
    train_set, valid_set, notes = _examples(data_dir, tokenizer, config)
    config, more_notes = fit_config(config, len(train_set), len(model.layers), getattr(model, "model_type", None))
    for note in notes + more_notes:
        yield Log(note)

    mx.random.seed(config.seed)  # the adapter's initial weights
    add_adapters(model, config)
    fingerprint = run_fingerprint(config, base_model, data_info["sha256"], quantize)
    if config.objective == "preference":  # before a checkpoint moves the adapter off zero
        reference_file = out_dir / preference.REFERENCE_FILE
        key = preference.reference_key(base_model, data_info["sha256"], quantize, config.max_seq_length)
        train_set, valid_set = yield from preference.with_reference(
            model, train_set, valid_set, config.batch_size, reference_file, key
        )
    objective = _objective(model, train_set, valid_set, config)
    write_adapter_config(out_dir, config, base_model)
    optimizer = _optimizer(config)
    run = load_checkpoint(out_dir / CHECKPOINT_FILE, model, optimizer, fingerprint)
    if run is None:
        yield Log(f"{out_dir / CHECKPOINT_FILE}: from other settings or data; training afresh")
        run = RunState()
    elif run.step:
        yield Log(f"resuming from step {run.step} of {config.iters}")

    yield from _loop(model, optimizer, objective, config, run, out_dir, fingerprint, callback)
    if config.weights == "last":  # also when a finished run is re-run with weights = "last"
        save_adapter(out_dir, model)
    seconds = time.perf_counter() - started
    manifest = build_manifest(config, base_model, quantize, data_info, run, seconds, mx.get_peak_memory()) | (extra or {})
    # adapters.safetensors is this step's: the best validation's, or the last step's
    # (weights = "last", or no validation set)
    best = config.weights == "best" and run.best_step is not None
    manifest["metrics"]["adapter_step"] = run.best_step if best else run.step
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _load(model, base_model: str | None, quantize: int | None):
    """(model, tokenizer, spec): load a spec as float32 on CPU, or take a loaded pair;
    then quantize it when asked."""
    from mlx_repair.model.resolve import load_model, quantize_model

    if isinstance(model, (str, Path)):
        loaded, tokenizer = load_model(str(model))
        base_model = base_model or str(model)
    else:
        loaded, tokenizer = model
    if quantize is not None:
        quantize_model(loaded, quantize)
    return loaded, tokenizer, base_model


def _data(data, out_dir: Path) -> tuple[Path, dict]:
    """The folder with the JSONL, and its dataset.json record (or just its hash)."""
    if isinstance(data, Dataset):
        return out_dir, write_dataset(data, out_dir).info
    folder = Path(data)
    if not (folder / TRAIN_FILE).is_file():
        raise UserError(f"{folder}: no {TRAIN_FILE} here; write the dataset first (dataset.prepare_dataset)")
    info_path = folder / INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return folder, {**info, "sha256": data_hash(folder)}


def _examples(data_dir: Path, tokenizer, config: TrainConfig) -> tuple[list, list, list[str]]:
    """Tokenized, prompt-masked training and validation examples (for the preference
    objective, `preference.PreferenceExample`s), and notes on drops."""
    notes = []
    sets = []
    encode = preference.tokenize_preferences if config.objective == "preference" else tokenize
    for name in (TRAIN_FILE, VALID_FILE):
        examples, dropped = encode(read_jsonl(data_dir / name), tokenizer, config.max_seq_length)
        if dropped:
            notes.append(f"{name}: {dropped} records longer than {config.max_seq_length} tokens left out")
        sets.append(examples)
    if not sets[0]:
        raise UserError(
            f"{data_dir / TRAIN_FILE}: no record fits in max_seq_length={config.max_seq_length}; raise it"
        )
    return sets[0], sets[1], notes


def add_adapters(model, config: TrainConfig) -> None:
    """Freeze the model and put LoRA/DoRA layers on its last `num_layers` blocks."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    use_dora = config.fine_tune_type == "dora"
    linear_to_lora_layers(model, config.num_layers, config.lora_parameters, use_dora=use_dora)


def write_adapter_config(out_dir: Path, config: TrainConfig, base_model: str | None) -> None:
    """adapter_config.json in the shape mlx-lm's `load_adapters` reads."""
    from mlx_lm.utils import save_config

    adapter_config = {
        "fine_tune_type": config.fine_tune_type,
        "num_layers": config.num_layers,
        "lora_parameters": config.lora_parameters,
        "model": base_model,
    }
    temp = out_dir / f".{ADAPTER_CONFIG_FILE}.{os.getpid()}.tmp"
    save_config(adapter_config, temp)
    os.replace(temp, out_dir / ADAPTER_CONFIG_FILE)


@dataclass
class Objective:
    """What a training step minimises, on which batches, and the validation loss."""

    loss: Callable  # (model, *batch arrays, start) -> (loss, answer tokens)
    batches: Callable  # start step -> tuples of batch arrays, the second mlx-lm's lengths
    validate: Callable | None  # () -> mean validation loss; None without validation records


def _objective(model, train_set, valid_set, config: TrainConfig) -> Objective:
    """Supervised (mlx-lm's loss on the answers), or the preference objective (its
    examples scored by `preference.with_reference`)."""
    from mlx_lm.tuner.trainer import iterate_batches

    if config.objective == "preference":
        return Objective(
            preference.preference_loss(model, config.beta, config.nll_weight, config.per_token_margin),
            partial(_epochs, partial(preference.preference_batches, train_set, config.batch_size), len(train_set), config),
            preference.validation(model, valid_set, config) if valid_set else None,
        )
    batches = partial(iterate_batches, train_set, config.batch_size, config.max_seq_length)
    return Objective(
        answer_loss(model),
        partial(_epochs, lambda seed: batches(seed=seed), len(train_set), config),
        partial(_validate, model, valid_set, config) if valid_set else None,
    )


def _optimizer(config: TrainConfig):
    import mlx.optimizers as optim

    return optim.Adam(learning_rate=config.learning_rate)


def _loop(model, optimizer, objective: Objective, config, run, out_dir, fingerprint, callback):
    """Steps from `run.step` to `config.iters`: report, validate, checkpoint. With a
    validation set (and `weights = "best"`), adapters.safetensors holds the weights of the
    best validation so far (step 0, the base model itself, included), and training stops
    once `patience` validations in a row have not beaten it."""
    import mlx.core as mx

    step = _step_function(model, optimizer, objective.loss, config)
    validate = objective.validate
    if validate and run.step == 0:
        run.initial_val_loss = validate()
        _keep_if_best(run, 0, run.initial_val_loss, out_dir, model, config)
        before = TrainStep(0, math.nan, 0.0, mx.get_peak_memory() / 1e9, run.initial_val_loss)
        yield _report(run, before, callback)
    window = _Window()
    for arrays in objective.batches(run.step):
        if run.step >= config.iters or _patience_spent(run, config):
            break
        run.step += 1
        mx.random.seed(_seed(config.seed, run.step))  # dropout masks depend on (seed, step) only
        tic = time.perf_counter()
        loss, tokens = step(*arrays, answer_start(arrays[1]))
        mx.eval(model.state, optimizer.state, loss, tokens)
        seconds = time.perf_counter() - tic
        run.seconds += seconds
        window.add(loss.item(), int(tokens.item()), seconds)
        last = run.step == config.iters
        evaluate_now = validate is not None and (run.step % config.steps_per_eval == 0 or last)
        if evaluate_now or last or run.step % config.steps_per_report == 0:
            run.trained_tokens += window.tokens
            val_loss = validate() if evaluate_now else None
            if val_loss is not None:
                _keep_if_best(run, run.step, val_loss, out_dir, model, config)
            yield _report(run, window.event(run.step, val_loss), callback, optimizer)
            window = _Window()
        stopping = last or _patience_spent(run, config)
        if stopping or run.step % config.save_every == 0:
            if validate is None:  # nothing to choose the best by: the latest weights
                save_adapter(out_dir, model)
            save_checkpoint(out_dir, model, optimizer, run, fingerprint)
        if stopping and not last:
            yield Log(
                f"stopped early at step {run.step}: {run.validations_since_best} validations without a new best; "
                f"the adapter is step {run.best_step}'s (validation loss {run.best_val_loss:.3f})"
            )


def _keep_if_best(run: RunState, step: int, loss: float, out_dir: Path, model, config: TrainConfig) -> None:
    if run.validated(step, loss) and config.weights == "best":
        save_adapter(out_dir, model)


def _patience_spent(run: RunState, config: TrainConfig) -> bool:
    return config.weights == "best" and config.patience is not None and run.validations_since_best >= config.patience


def _step_function(model, optimizer, loss, config: TrainConfig):
    """One optimizer step on one batch, compiled over model, optimizer and RNG state
    (as `mlx_lm.tuner.train` does); the last argument, `start`, is where the batch's
    answers begin."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import grad_checkpoint

    loss_and_grad = nn.value_and_grad(model, loss)
    if config.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    state = [model.state, optimizer.state, mx.random.state]

    def step(*arrays_and_start):
        (value, tokens), grad = loss_and_grad(model, *arrays_and_start)
        optimizer.update(model, grad)
        return value, tokens

    model.train()
    return mx.compile(step, inputs=state, outputs=state) if config.compile else step


def answer_loss(model):
    """mlx-lm's `default_loss`, with logits for the answer positions only
    (`logits.answer_logits`): the same loss, with less memory and time."""
    from mlx_lm.tuner.trainer import default_loss

    logits_of = answer_logits(model)

    def loss(model, batch, lengths, start):
        # default_loss on the batch from `start`, with logits of the whole input's states.
        return default_loss(lambda _: logits_of(model, batch, start), batch[:, start:], lengths - start)

    return loss


def _epochs(epoch_batches, train_records: int, config: TrainConfig, start_step: int):
    """Batches epoch after epoch from step `start_step` on: epoch e is
    `epoch_batches(seed)` with a seed of its own, so the order depends on (seed, step)
    alone and nothing else that touches numpy's global RNG (validation does) can change it."""
    per_epoch = train_records // config.batch_size
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        for index, batch in enumerate(epoch_batches(_seed(config.seed, epoch))):
            if index >= skip:
                yield batch
        epoch, skip = epoch + 1, 0


def _seed(seed: int, counter: int) -> int:
    return (seed * 1_000_003 + counter) % 2**32


def _validate(model, valid_set, config: TrainConfig) -> float:
    """Mean validation loss over the same batches every time (a fixed seed)."""
    from mlx_lm.tuner.trainer import evaluate, iterate_batches

    loss = evaluate(
        model,
        valid_set,
        batch_size=min(config.batch_size, len(valid_set)),
        num_batches=config.val_batches,
        max_seq_length=config.max_seq_length,
        iterate_batches=partial(iterate_batches, seed=config.seed),
    )
    model.train()
    return loss


@dataclass
class _Window:
    """Training losses and tokens since the last report."""

    losses: float = 0.0
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, loss: float, tokens: int, seconds: float) -> None:
        self.losses += loss
        self.steps += 1
        self.tokens += tokens
        self.seconds += seconds

    def event(self, step: int, val_loss: float | None) -> TrainStep:
        import mlx.core as mx

        return TrainStep(
            iteration=step,
            loss=self.losses / self.steps,
            tokens_per_second=self.tokens / self.seconds if self.seconds else 0.0,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            validation_loss=val_loss,
        )


def _report(run: RunState, event: TrainStep, callback, optimizer=None) -> TrainStep:
    """Record the event in the history and pass it to an mlx-lm callback, in its format.
    Tokens are those the loss counts (the answers), as in mlx-lm's reports."""
    run.history.append(asdict(event))
    if callback is not None and event.validation_loss is not None:
        callback.on_val_loss_report({"iteration": event.iteration, "val_loss": event.validation_loss})
    if callback is not None and event.iteration > 0:
        callback.on_train_loss_report(
            {
                "iteration": event.iteration,
                "train_loss": event.loss,
                "learning_rate": optimizer.learning_rate.item(),
                "tokens_per_second": event.tokens_per_second,
                "trained_tokens": run.trained_tokens,
                "peak_memory": event.peak_memory_gb,
            }
        )
    return event
