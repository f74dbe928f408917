"""Train a LoRA (or DoRA) adapter on the mined pairs with mlx-lm's tuner, resumably.

`train_adapter` is a generator of events (`TrainStep` on each loss report, `Log` for
notices), the way the rest of the core reports progress. It writes to `out_dir`:
- adapters.safetensors + adapter_config.json: what `mlx_lm.load(path, adapter_path=...)`
  and `mlx_lm.generate --adapter-path` read;
- manifest.json: base model, the sha256 of its weights and its quantization, data hash
  and split, the config, losses, time and peak memory;
- checkpoint.safetensors: adapter weights, Adam state, step and run history.

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
  `default_loss`, with ~20% less memory on Qwen 0.5B (the prompt's logits are masked
  out anyway);
- every `save_every` steps, the adapter, the optimizer state and the step are written
  to one file, atomically (temp file, then `os.replace`), so SIGKILL at any moment
  leaves the previous checkpoint or the new one, never half of one.
A re-run with the same settings continues from the checkpoint and ends with the same
adapter as an uninterrupted run, up to float noise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Iterator

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
from mlx_repair.errors import UserError
from mlx_repair.events import Log, TrainStep

ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
MANIFEST_FILE = "manifest.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "mlx-repair-checkpoint-1"
FINE_TUNE_TYPES = ("lora", "dora")
# Settings that do not change the weights a run ends with (how long it runs aside), so a
# re-run may change them and still resume.
POSITIVE_FIELDS = (
    "rank", "iters", "batch_size", "max_seq_length", "steps_per_report", "steps_per_eval", "save_every",
)
NOT_IN_FINGERPRINT = ("iters", "epochs", "steps_per_report", "steps_per_eval", "val_batches", "save_every")


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
    # Ten times mlx-lm's default: with tens of pairs a run is a few dozen steps.
    learning_rate: float = 1e-4
    iters: int = 100
    epochs: float | None = None  # when set, iters = ceil(epochs * train records / batch_size)
    batch_size: int = 4
    # Longer records are dropped, not truncated (truncation would cut the answer).
    max_seq_length: int = 2048
    # Recompute each block in the backward pass: slower, far less memory. Qwen3.5-0.8B
    # (whose Gated DeltaNet trains as a per-token loop) needs it to stay under 10 GB:
    # 7.4 instead of 13.5 GB in float32 (benchmarks/results/train_throughput.md).
    grad_checkpoint: bool = False
    # Compile the step as mlx-lm does (~10% faster on Qwen 0.5B here). Hybrid models
    # (qwen3_5's Gated DeltaNet) compiled slower and with 3x the memory on CPU: turn off.
    compile: bool = True
    seed: int = 0
    steps_per_report: int = 10
    steps_per_eval: int = 50
    val_batches: int = -1  # -1: the whole validation set
    save_every: int = 10

    def __post_init__(self):
        if self.fine_tune_type not in FINE_TUNE_TYPES:
            raise UserError(f"fine_tune_type must be one of {FINE_TUNE_TYPES}, got {self.fine_tune_type!r}")
        for name in POSITIVE_FIELDS:
            if getattr(self, name) < 1:
                raise UserError(f"train {name} must be at least 1, got {getattr(self, name)}")

    @property
    def lora_parameters(self) -> dict:
        return {"rank": self.rank, "scale": self.scale, "dropout": self.dropout}


PRESETS = {
    "default": TrainConfig(),
    # A 2-core CPU: a Qwen 0.5B f32 step at batch 1 takes ~15-20 s on a quiet machine
    # (answer-only logits; several times that when other work shares the cores), so 20
    # steps over the last 8 blocks: ~5-7 minutes. Validation on 2 records at the start
    # and the end only; a checkpoint every 4 steps (about a minute of work at risk).
    "cpu": TrainConfig(
        num_layers=8, iters=20, batch_size=1,
        steps_per_report=2, steps_per_eval=20, val_batches=2, save_every=4,
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


@dataclass
class RunState:
    """What a checkpoint carries besides tensors: where the run is, and its history."""

    step: int = 0
    seconds: float = 0.0  # in training steps, over all sessions
    trained_tokens: int = 0
    initial_val_loss: float | None = None
    history: list = field(default_factory=list)  # TrainStep dicts


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
    write_adapter_config(out_dir, config, base_model)
    optimizer = _optimizer(config)
    fingerprint = _fingerprint(config, base_model, data_info["sha256"], quantize)
    run = load_checkpoint(out_dir / CHECKPOINT_FILE, model, optimizer, fingerprint)
    if run is None:
        yield Log(f"{out_dir / CHECKPOINT_FILE}: from other settings or data; training afresh")
        run = RunState()
    elif run.step:
        yield Log(f"resuming from step {run.step} of {config.iters}")

    yield from _loop(model, optimizer, train_set, valid_set, config, run, out_dir, fingerprint, callback)
    seconds = time.perf_counter() - started
    manifest = _manifest(config, base_model, quantize, data_info, run, seconds, mx.get_peak_memory()) | (extra or {})
    _atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
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
    """Tokenized, prompt-masked training and validation examples, and notes on drops."""
    notes = []
    sets = []
    for name in (TRAIN_FILE, VALID_FILE):
        examples, dropped = tokenize(read_jsonl(data_dir / name), tokenizer, config.max_seq_length)
        if dropped:
            notes.append(f"{name}: {dropped} records longer than {config.max_seq_length} tokens left out")
        sets.append(examples)
    if not sets[0]:
        raise UserError(
            f"{data_dir / TRAIN_FILE}: no record fits in max_seq_length={config.max_seq_length}; raise it"
        )
    return sets[0], sets[1], notes


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


def _optimizer(config: TrainConfig):
    import mlx.optimizers as optim

    return optim.Adam(learning_rate=config.learning_rate)


def _fingerprint(config: TrainConfig, base_model: str | None, data_sha256: str, quantize: int | None) -> str:
    """What must match for a checkpoint to be resumed: model, data and trajectory settings.
    `quantize` is left out when unset, so checkpoints from before the option still match."""
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in NOT_IN_FINGERPRINT}
    key = {"model": base_model, "data": data_sha256, "config": settings}
    if quantize is not None:
        key["quantize"] = quantize
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


# ---- the loop ---------------------------------------------------------------------------


def _loop(model, optimizer, train_set, valid_set, config, run, out_dir, fingerprint, callback):
    """Steps from `run.step` to `config.iters`: report, validate, checkpoint."""
    import mlx.core as mx

    step = _step_function(model, optimizer, config)
    validate = partial(_validate, model, valid_set, config) if valid_set else None
    if validate and run.step == 0:
        run.initial_val_loss = validate()
        before = TrainStep(0, math.nan, 0.0, mx.get_peak_memory() / 1e9, run.initial_val_loss)
        yield _report(run, before, callback)
    window = _Window()
    for batch, lengths in _batches(train_set, config, run.step):
        if run.step >= config.iters:
            break
        run.step += 1
        mx.random.seed(_seed(config.seed, run.step))  # dropout masks depend on (seed, step) only
        tic = time.perf_counter()
        loss, tokens = step(batch, lengths, _answer_start(lengths))
        mx.eval(model.state, optimizer.state, loss, tokens)
        seconds = time.perf_counter() - tic
        run.seconds += seconds
        window.add(loss.item(), int(tokens.item()), seconds)
        last = run.step == config.iters
        evaluate_now = validate is not None and (run.step % config.steps_per_eval == 0 or last)
        if evaluate_now or last or run.step % config.steps_per_report == 0:
            run.trained_tokens += window.tokens
            val_loss = validate() if evaluate_now else None
            yield _report(run, window.event(run.step, val_loss), callback, optimizer)
            window = _Window()
        if last or run.step % config.save_every == 0:
            save_checkpoint(out_dir, model, optimizer, run, fingerprint)


def _step_function(model, optimizer, config: TrainConfig):
    """One optimizer step on one batch, compiled over model, optimizer and RNG state
    (as `mlx_lm.tuner.train` does); `start` is where the batch's answers begin."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.trainer import grad_checkpoint

    loss_and_grad = nn.value_and_grad(model, answer_loss(model))
    if config.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    state = [model.state, optimizer.state, mx.random.state]

    def step(batch, lengths, start):
        (loss, tokens), grad = loss_and_grad(model, batch, lengths, start)
        optimizer.update(model, grad)
        return loss, tokens

    model.train()
    return mx.compile(step, inputs=state, outputs=state) if config.compile else step


def answer_loss(model):
    """mlx-lm's `default_loss`, with the vocabulary projection computed only from `start`
    (before the first answer token) on: the prompt is masked, so its logits are never
    used, and with a 150k-250k vocabulary they are most of a step's memory and much of
    its time. The projection is split off only when the model's forward is checked to
    be exactly `head(backbone(x))`; otherwise the full forward runs."""
    from mlx_lm.tuner.trainer import default_loss

    split = _backbone_and_head(model)
    if split is None:
        return lambda model, batch, lengths, start: default_loss(model, batch, lengths)
    backbone, head = split

    def loss(model, batch, lengths, start):
        # default_loss on the batch from `start`, with logits of the whole input's states.
        hidden = backbone(batch[:, :-1])
        return default_loss(lambda _: head(hidden[:, start:]), batch[:, start:], lengths - start)

    return loss


def _backbone_and_head(model):
    """(backbone, vocabulary projection) if the model's output is their composition."""
    import mlx.core as mx

    language_model = getattr(model, "language_model", model)  # qwen3_5 wraps its text model
    backbone = getattr(language_model, "model", None)
    embedding = getattr(backbone, "embed_tokens", None)
    heads = [getattr(language_model, "lm_head", None), getattr(embedding, "as_linear", None)]
    probe = mx.array([[1, 2, 3, 4]])
    training = model.training
    model.eval()  # no dropout while comparing
    expected = model(probe)
    found = None
    if backbone is not None:
        candidates = (head for head in heads if head is not None)
        found = next((h for h in candidates if mx.allclose(h(backbone(probe)), expected).item()), None)
    model.train(training)
    return None if found is None else (backbone, found)


def _answer_start(lengths) -> int:
    """The position before the batch's first answer token, rounded down to a multiple of
    32 so the compiled step sees few distinct values."""
    first_answer = min(int(offset) for offset in lengths[:, 0].tolist())
    return max(0, (first_answer - 1) // 32 * 32)


def _batches(train_set, config: TrainConfig, start_step: int):
    """mlx-lm's batches, epoch after epoch, from step `start_step` on. Epoch e is shuffled
    with a seed of its own, so the order depends on (seed, step) alone and nothing else
    that touches numpy's global RNG (validation does) can change it."""
    from mlx_lm.tuner.trainer import iterate_batches

    per_epoch = len(train_set) // config.batch_size
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        seed = _seed(config.seed, epoch)
        batches = iterate_batches(train_set, config.batch_size, config.max_seq_length, seed=seed)
        for index, batch in enumerate(batches):
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


# ---- checkpoints ------------------------------------------------------------------------


def save_checkpoint(out_dir: Path, model, optimizer, run: RunState, fingerprint: str) -> None:
    """Adapter weights (also as adapters.safetensors, so a killed run leaves a usable
    adapter), optimizer state and run state, each file replaced atomically. The
    checkpoint is written last: it is the one a resume trusts."""
    from mlx.utils import tree_flatten

    adapter = dict(tree_flatten(model.trainable_parameters()))
    arrays = {f"adapter.{k}": v for k, v in adapter.items()}
    arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    metadata = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "run": json.dumps(asdict(run))}
    _atomic_safetensors(out_dir / ADAPTER_FILE, adapter)
    _atomic_safetensors(out_dir / CHECKPOINT_FILE, arrays, metadata)


def load_checkpoint(path: Path, model, optimizer, fingerprint: str) -> RunState | None:
    """Restore adapter and optimizer from `path`; a fresh RunState when there is none,
    None when it belongs to other settings."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    if not path.is_file():
        return RunState()
    arrays, metadata = mx.load(str(path), return_metadata=True)
    if metadata.get("format") != CHECKPOINT_FORMAT or metadata.get("fingerprint") != fingerprint:
        return None
    model.load_weights(_with_prefix(arrays, "adapter."), strict=False)
    optimizer.state = tree_unflatten(_with_prefix(arrays, "optimizer."))
    return RunState(**json.loads(metadata["run"]))


def _with_prefix(arrays: dict, prefix: str) -> list[tuple[str, object]]:
    return [(k.removeprefix(prefix), v) for k, v in arrays.items() if k.startswith(prefix)]


def _atomic_safetensors(path: Path, arrays: dict, metadata: dict | None = None) -> None:
    import mlx.core as mx

    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    mx.save_safetensors(str(temp), arrays, metadata=metadata or {})
    os.replace(temp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


# ---- the manifest -----------------------------------------------------------------------


def _manifest(config, base_model, quantize, data_info: dict, run: RunState, seconds: float, peak_bytes: int) -> dict:
    import mlx.core as mx
    import mlx_lm

    val_losses = [h["validation_loss"] for h in run.history if h["validation_loss"] is not None]
    train_losses = [h["loss"] for h in run.history if h["iteration"] > 0]
    return {
        "base_model": base_model_info(base_model, quantize),
        "data": data_info,
        "train_config": asdict(config),
        "metrics": {
            "iterations": run.step,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "initial_val_loss": run.initial_val_loss,
            "final_val_loss": val_losses[-1] if val_losses else None,
            "trained_tokens": run.trained_tokens,
            "train_seconds": run.seconds,
            "wall_seconds": seconds,  # this session: loading and validation included
            "peak_memory_gb": peak_bytes / 1e9,
        },
        "history": [{k: _json_number(v) for k, v in h.items()} for h in run.history],
        "versions": {"mlx": mx.__version__, "mlx_lm": mlx_lm.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _json_number(value):
    """NaN (the loss of the report before training) is not JSON: null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def base_model_info(spec: str | None, quantize: int | None = None) -> dict:
    """The base model's spec, folder and the sha256 of each weights file, and how training
    quantized it in memory (None: it trained on the weights as they are)."""
    from mlx_repair.config import QUANTIZE_GROUP_SIZE
    from mlx_repair.model.resolve import resolve_model

    quantization = None if quantize is None else {"bits": quantize, "group_size": QUANTIZE_GROUP_SIZE}
    if spec is None:
        return {"spec": None, "quantization": quantization}
    resolved = resolve_model(spec)
    files = sorted(resolved.path.glob("*.safetensors"))
    return {
        "spec": spec,
        "name": resolved.name,
        "source": resolved.source,
        "path": str(resolved.path),
        "weights_sha256": {f.name: file_sha256(f) for f in files},
        "quantization": quantization,
    }


def file_sha256(path: Path) -> str:
    """sha256 of a (large) file, cached by path, size and mtime: a 2 GB model hashes once."""
    from mlx_repair.model.resolve import cache_root

    cache_path = cache_root().parent / "sha256-cache.json"
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as source:
            while chunk := source.read(1 << 22):
                digest.update(chunk)
        cache[key] = digest.hexdigest()
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(cache_path, json.dumps(cache, indent=1))
    return cache[key]
