"""A critic: how likely a sample is to pass its tests, learned from execution labels.

Every judged sample is a labelled example: problem + code -> passed every case, hidden
ones included, or not. Generator + executor + critic is the published recipe (a 1.5B
model drew 50 samples and a critic trained on such labels picked one: 58.4% -> 65.0% on
MBPP); `evaluation.selection`'s `critic` strategy picks the sample scored highest.

Both kinds keep the base model frozen and read the same prompt (`critic_messages`: the
problem, the code, "Does this code pass its tests?"):
- `head`: a logistic regression on the base model's final hidden state where the answer
  would start. The model reads each example once (cached in the critic's folder, so a
  killed run resumes where it stopped); the head then trains in seconds, full batch.
  The samples of one problem share the start of their prompt (the system turn and the
  problem, about half of it): `last_states` reads it once per problem, then the samples'
  own tokens in one batch.
- `lora`: a LoRA adapter trained by `lora.train_adapter` to answer "yes" or "no" (the
  answer is the assistant turn, the only part its loss counts); the score is
  P(yes) / (P(yes) + P(no)) at the answer's first token.
The default kind was chosen by measurement (benchmarks/results/critic_compare.md).

Validation is by problem: the held-out problems' samples never train the critic, and
their AUROC (`evaluation.stats.auroc`) is the manifest's measure of it, over all of them
and within each problem (the one selection depends on).

A critic folder holds critic.json (kind, base model), its weights (head.safetensors, or
the adapter files), manifest.json and, for a head, the features cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from mlx_repair.config import CRITIC_KINDS
from mlx_repair.errors import UserError
from mlx_repair.events import Log, TrainStep
from mlx_repair.evaluation.stats import auroc, within_group_auroc
from mlx_repair.generation.prompts import words
from mlx_repair.mining.dataset import Dataset, MixConfig, split_tasks
from mlx_repair.problems import Problem
from mlx_repair.training.checkpoints import RunState, atomic_safetensors, atomic_write_text
from mlx_repair.training.config import TrainConfig, preset
from mlx_repair.training.manifest import MANIFEST_FILE, build_manifest

CRITIC_FILE = "critic.json"
HEAD_FILE = "head.safetensors"
FEATURES_FILE = "features.safetensors"
QUESTION = "Does this code pass its tests? Answer yes or no."
ANSWERS = ("yes", "no")  # the assistant turn of a passing and of a failing sample
FEATURES_SAVE_EVERY = 16  # examples read between two saves of the features cache
HEAD_ITERS = 500
LORA_EPOCHS = 3.0
HEAD_STEPS_PER_EVAL = 25
READ_BATCH = 8  # samples read together after their shared start (one problem's, at eval --samples 8)


@dataclass(frozen=True)
class Example:
    """One judged sample: the problem it answers, its code, and whether it passed all cases."""

    task_id: str
    code: str
    passed: bool


@dataclass
class CriticConfig:
    """Critic settings. `iters` and `learning_rate` default per kind: a head takes 500
    full-batch steps at 1e-2; a LoRA critic three epochs at 1e-4 (at batch 1 on a CPU;
    one epoch was not enough on the planted signal, benchmarks/results/critic_compare.md)."""

    kind: str = CRITIC_KINDS[0]  # "head" or "lora"
    iters: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.01  # head: AdamW's, against fitting a few problems' samples
    rank: int = 8  # lora
    layers: int = 8  # lora: the last N transformer blocks get adapters
    valid_fraction: float = 0.2  # share of the problems held out for validation
    patience: int = 5  # validations without a new best validation loss before stopping
    max_seq_length: int = 2048  # longer examples are left out of training
    seed: int = 0

    def __post_init__(self):
        if self.kind not in CRITIC_KINDS:
            raise UserError(f"critic kind must be one of {', '.join(CRITIC_KINDS)}, got {self.kind!r}")
        if self.iters is not None and self.iters < 1:
            raise UserError(f"critic iters must be at least 1, got {self.iters}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(f"critic valid_fraction must be in [0, 1), got {self.valid_fraction}")


def critic_messages(problem: Problem, code: str) -> list[dict]:
    """The chat turn the critic answers: the problem as the generator saw it, a sample."""
    said = words(problem)
    user = (
        f"A {said.name} function to complete:\n\n```{said.fence}\n{problem.prompt.rstrip()}\n```\n\n"
        f"A candidate solution:\n\n```{said.fence}\n{code.rstrip()}\n```\n\n{QUESTION}"
    )
    return [{"role": "system", "content": said.system}, {"role": "user", "content": user}]


def critic_record(problem: Problem, example: Example) -> dict:
    """A chat record for mlx-lm: the critic's turn, and the answer the label gives."""
    answer = ANSWERS[0] if example.passed else ANSWERS[1]
    messages = [*critic_messages(problem, example.code), {"role": "assistant", "content": answer}]
    return {"messages": messages, "task_id": example.task_id, "language": problem.subject, "passed": example.passed}


def critic_tokens(tokenizer, problem: Problem, code: str) -> tuple[list[int], tuple[int, int]]:
    """The prompt's token ids, and the first token of "yes" and of "no" after it, encoded
    exactly as training encodes a record (mlx-lm's `ChatDataset`)."""
    from mlx_lm.tuner.datasets import ChatDataset

    chat = ChatDataset([], tokenizer, mask_prompt=True)
    encoded = [chat.process(critic_record(problem, Example("", code, passed))) for passed in (True, False)]
    (yes, offset), (no, _) = encoded
    return yes[:offset], (yes[offset], no[offset])


def split_examples(examples: list[Example], config: CriticConfig) -> tuple[list[Example], list[Example]]:
    """(train, valid): whole problems held out, by the seeded hash the pair dataset uses.
    One label only on the training side is a one-line error: nothing to tell apart."""
    tasks = sorted({e.task_id for e in examples})
    _, valid_tasks = split_tasks(tasks, MixConfig(valid_fraction=config.valid_fraction, seed=config.seed))
    held_out = set(valid_tasks)
    train = [e for e in examples if e.task_id not in held_out]
    valid = [e for e in examples if e.task_id in held_out]
    if len({e.passed for e in train}) < 2:
        label = "passed" if train and train[0].passed else "failed"
        raise UserError(
            f"all {len(train)} training samples {label}: a critic learns from passing and failing samples "
            "of the same kind of problem; sample more per problem at a temperature (--samples, --temperature)"
        )
    return train, valid


def train_critic(
    model_spec: str, problems: dict[str, Problem], examples: list[Example], out_dir: str | Path,
    config: CriticConfig | None = None, quantize: int | None = None, extra: dict | None = None,
) -> Iterator[TrainStep | Log]:
    """Train a critic of `config.kind` on `examples` (split by problem) into `out_dir`, on
    the base model quantized to `quantize` bits when given. Yields training events;
    returns the manifest, whose "critic" entry holds the split, the label counts and the
    validation AUROC."""
    config = config or CriticConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, valid = split_examples(examples, config)
    train_kind = _train_head if config.kind == "head" else _train_lora
    manifest = yield from train_kind(model_spec, quantize, problems, train, valid, out_dir, config)
    settings = {"kind": config.kind, "base_model": model_spec, "quantize": quantize}
    atomic_write_text(out_dir / CRITIC_FILE, json.dumps(settings, indent=2) + "\n")
    manifest |= (extra or {}) | {"critic": {
        "kind": config.kind,
        "split": {"train": _tasks(train), "valid": _tasks(valid)},
        "samples": side_counts(train, valid),
        **valid_aurocs(out_dir, problems, valid),
    }}
    atomic_write_text(out_dir / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def valid_aurocs(critic_dir: Path, problems: dict[str, Problem], valid: list[Example]) -> dict:
    """The saved critic's AUROC on the held-out problems' samples, over all of them and
    within each problem (`evaluation.stats.within_group_auroc`); None (and no model
    loaded) when they have one label only."""
    measures = {"valid_auroc": None, "valid_within_problem_auroc": None, "valid_problems_with_both": 0}
    if len({e.passed for e in valid}) < 2:
        return measures
    critic = load_critic(critic_dir)
    groups = [
        (critic.scores(problems[task], [e.code for e in chosen]), [e.passed for e in chosen])
        for task, chosen in _by_problem(valid).items()
    ]
    within, both = within_group_auroc(groups)
    scores, labels = [s for g, _ in groups for s in g], [p for _, l in groups for p in l]
    return measures | {"valid_auroc": auroc(scores, labels), "valid_within_problem_auroc": within,
                       "valid_problems_with_both": both}


def _by_problem(examples: list[Example]) -> dict[str, list[Example]]:
    grouped: dict[str, list[Example]] = {}
    for e in examples:
        grouped.setdefault(e.task_id, []).append(e)
    return grouped


def _tasks(examples: list[Example]) -> list[str]:
    return sorted({e.task_id for e in examples})


def side_counts(train: list[Example], valid: list[Example]) -> dict[str, dict[str, int]]:
    """Passing and failing samples on each side of the split."""
    return {side: {"passed": sum(e.passed for e in chosen), "failed": sum(not e.passed for e in chosen)}
            for side, chosen in (("train", train), ("valid", valid))}


def _train_lora(model_spec, quantize, problems, train, valid, out_dir, config):
    """The yes/no records through the LoRA loop (`lora.train_adapter`), which writes the
    adapter, its checkpoints and the manifest, and resumes."""
    from mlx_repair.training.lora import train_adapter

    dataset = Dataset(
        train=[critic_record(problems[e.task_id], e) for e in train],
        valid=[critic_record(problems[e.task_id], e) for e in valid],
        train_tasks=_tasks(train), valid_tasks=_tasks(valid), counts=side_counts(train, valid), config=asdict(config),
    )
    return (yield from train_adapter(model_spec, dataset, out_dir, lora_config(config), quantize=quantize))


def lora_config(config: CriticConfig) -> TrainConfig:
    """The LoRA loop's settings for a critic: the machine's preset, `LORA_EPOCHS` unless
    `iters` is set, validation often enough for early stopping to act within an epoch, on
    at most 16 records (each a forward pass: ~10 s for Qwen 0.5B on a 2-core CPU)."""
    return replace(
        preset("auto"), rank=config.rank, num_layers=config.layers, learning_rate=config.learning_rate or 1e-4,
        iters=config.iters or 1, epochs=None if config.iters else LORA_EPOCHS, steps_per_eval=50, steps_per_report=10,
        val_batches=16, patience=config.patience, max_seq_length=config.max_seq_length, seed=config.seed,
    )


def _train_head(model_spec, quantize, problems, train, valid, out_dir, config):
    """Read every example once with the frozen model (resumably), then fit the head."""
    import mlx.core as mx

    from mlx_repair.model.resolve import load_model

    started = time.perf_counter()
    mx.reset_peak_memory()
    config = replace(config, iters=config.iters or HEAD_ITERS)
    model, tokenizer = load_model(model_spec, quantize=quantize)
    prompts = {e: critic_tokens(tokenizer, problems[e.task_id], e.code)[0] for e in train + valid}
    fitting = [e for e in train + valid if len(prompts[e]) <= config.max_seq_length]
    groups = [[prompts[e] for e in chosen] for chosen in _by_problem(fitting).values()]
    source = json.dumps({"model": model_spec, "quantize": quantize})
    features = yield from read_features(model, groups, out_dir / FEATURES_FILE, source)
    read = {e: features[_key(prompts[e])] for e in fitting}
    (train_x, train_y), (valid_x, valid_y) = (_matrix(read, side) for side in (train, valid))
    if train_x is None:
        raise UserError(f"no training sample fits in max_seq_length={config.max_seq_length}; raise it")
    run = RunState()
    head = yield from _fit_head(train_x, train_y, valid_x, valid_y, config, run)
    atomic_safetensors(out_dir / HEAD_FILE, head)
    data_info = {"sha256": _examples_hash(train + valid), "counts": side_counts(train, valid)}
    manifest = build_manifest(config, model_spec, quantize, data_info, run, time.perf_counter() - started, mx.get_peak_memory())
    if valid_x is not None:
        constant = constant_loss(train_y, valid_y)
        manifest["metrics"]["constant_val_loss"] = constant
        yield Log(f"critic head: best validation loss {run.best_val_loss:.3f} (step {run.best_step}); "
                  f"always guessing the training side's pass rate scores {constant:.3f}")
    return manifest


def constant_loss(train_y, valid_y) -> float:
    """The validation loss of a critic that ignores the code and always answers the
    training side's pass rate: the head's loss means something only below it."""
    rate = min(max(float(sum(train_y)) / len(train_y), 1e-6), 1 - 1e-6)
    passed = float(sum(valid_y)) / len(valid_y)
    return -(passed * math.log(rate) + (1 - passed) * math.log(1 - rate))


def read_features(model, groups: list[list[list[int]]], cache: Path, source: str):
    """{key of the prompt: its `last_states`} for every prompt (grouped by problem), read
    with the model and saved to `cache` every few prompts, so that a killed run reads
    only what is left. `source` names the model: a cache another model wrote is read again."""
    import mlx.core as mx

    features, metadata = mx.load(str(cache), return_metadata=True) if cache.is_file() else ({}, {})
    if metadata.get("source") != source:
        features = {}
    todo = [list({_key(ids): ids for ids in group if _key(ids) not in features}.values()) for group in groups]
    total, done, saved = sum(map(len, todo)), 0, 0
    if features:
        yield Log(f"critic: {len(features)} samples read before, {total} to read")
    started = time.perf_counter()
    for group in filter(None, todo):
        features.update(zip(map(_key, group), last_states(model, group)))
        done += len(group)
        if done - saved >= FEATURES_SAVE_EVERY or done == total:
            atomic_safetensors(cache, features, {"source": source})
            saved = done
            yield Log(f"critic: read {done}/{total} samples ({time.perf_counter() - started:.0f}s)")
    return features


def last_states(model, prompts: list[list[int]], logits: bool = False) -> list:
    """At each prompt's last token, where the answer would start: the final hidden state,
    or with `logits` the model's output. The prompts' common start is read once; their
    own tokens go on from it together, `READ_BATCH` at a time (right-padded: a causal
    model's state at a prompt's last token never sees the padding after it)."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    from mlx_repair.training.logits import backbone_and_head

    split = backbone_and_head(model) if logits else None
    backbone = getattr(model, "language_model", model).model  # qwen3_5 wraps its text model
    shared = os.path.commonprefix(prompts)[: min(map(len, prompts)) - 1]
    cache = make_prompt_cache(model)
    if shared:
        backbone(mx.array([shared]), cache=cache)
        mx.eval([c.state for c in cache])
    states = []
    for first in range(0, len(prompts), READ_BATCH):
        rests = [ids[len(shared):] for ids in prompts[first : first + READ_BATCH]]
        width = max(map(len, rests))
        batch = mx.array([rest + [0] * (width - len(rest)) for rest in rests])
        copies = make_prompt_cache(model)
        if shared:
            for copy, kept in zip(copies, cache):
                copy.state = _rows(kept.state, len(rests))
        last = mx.array([len(rest) - 1 for rest in rests])
        if logits and split is None:  # a model that is not head(backbone(x)): the whole output
            out = model(batch, cache=copies)[mx.arange(len(rests)), last]
        else:
            out = backbone(batch, cache=copies)[mx.arange(len(rests)), last]
            out = split[1](out) if logits else out
        out = out.astype(mx.float32)
        mx.eval(out)
        states += list(out)
    return states


def _rows(state, n: int):
    """A cache's state with each array repeated to `n` rows (the batch axis is the first
    in every mlx-lm cache), in the same nesting; offsets and None kept."""
    import mlx.core as mx

    if isinstance(state, mx.array):
        return mx.repeat(state, n, axis=0)
    if isinstance(state, (list, tuple)):
        return type(state)(_rows(value, n) for value in state)
    return state


def _key(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def _matrix(read: dict, examples: list[Example]):
    """(features stacked, labels) of the examples that were read ({example: features});
    (None, []) when none was."""
    import mlx.core as mx

    kept = [e for e in examples if e in read]
    return (mx.stack([read[e] for e in kept]), [e.passed for e in kept]) if kept else (None, [])


def _examples_hash(examples: list[Example]) -> str:
    return hashlib.sha256(json.dumps([asdict(e) for e in examples], sort_keys=True).encode()).hexdigest()


def _fit_head(train_x, train_y, valid_x, valid_y, config: CriticConfig, run: RunState):
    """A logistic regression on standardised features, full batch with AdamW. With a
    validation side, the weights kept are those of the best validation loss, and it stops
    after `patience` validations without a new best. Returns the head's arrays."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    mx.random.seed(config.seed)  # the head's initial weights
    head = nn.Linear(train_x.shape[1], 1)
    optimizer = optim.AdamW(learning_rate=config.learning_rate or 1e-2, weight_decay=config.weight_decay)
    train = ((train_x - mean) / std, mx.array(train_y, dtype=mx.float32))
    valid = ((valid_x - mean) / std, mx.array(valid_y, dtype=mx.float32)) if valid_x is not None else None
    loss_and_grad = nn.value_and_grad(head, _head_loss)
    best = dict(head.parameters())
    for step in range(1, config.iters + 1):
        tic = time.perf_counter()
        loss, grad = loss_and_grad(head, *train)
        optimizer.update(head, grad)
        mx.eval(head.parameters(), optimizer.state, loss)
        run.step, run.seconds = step, run.seconds + time.perf_counter() - tic
        if step % HEAD_STEPS_PER_EVAL and step != config.iters:
            continue
        val_loss = _head_loss(head, *valid).item() if valid else None
        if val_loss is None or run.validated(step, val_loss):
            best = dict(head.parameters())
        yield _head_step(run, step, loss.item(), val_loss)
        if run.validations_since_best >= config.patience:
            yield Log(f"critic head: stopped at step {step}; kept step {run.best_step}'s "
                      f"(validation loss {run.best_val_loss:.3f})")
            break
    return {"weight": best["weight"], "bias": best["bias"], "mean": mean, "std": std}


def _head_loss(head, x, y):
    import mlx.nn as nn

    return nn.losses.binary_cross_entropy(head(x).squeeze(-1), y, reduction="mean")


def _head_step(run: RunState, step: int, loss: float, val_loss: float | None) -> TrainStep:
    import mlx.core as mx

    event = TrainStep(step, loss, 0.0, mx.get_peak_memory() / 1e9, val_loss)
    run.history.append(asdict(event))
    return event


@dataclass
class Critic:
    """A trained critic, loaded: `scores(problem, codes)` are its probabilities that each
    sample of one problem passes, from the head when it has one, else from the adapted
    model's yes and no."""

    model: object
    tokenizer: object
    head: dict | None = None

    def scores(self, problem: Problem, codes: list[str]) -> list[float]:
        import mlx.core as mx

        encoded = [critic_tokens(self.tokenizer, problem, code) for code in codes]
        prompts = [ids for ids, _ in encoded]
        if self.head is not None:
            x = (mx.stack(last_states(self.model, prompts)) - self.head["mean"]) / self.head["std"]
            return mx.sigmoid((x @ self.head["weight"].T).squeeze(-1) + self.head["bias"]).tolist()
        answers = mx.array(encoded[0][1])  # the tokens of "yes" and "no"
        logits = mx.stack(last_states(self.model, prompts, logits=True))[:, answers]
        return mx.softmax(logits, axis=-1)[:, 0].tolist()


def load_critic(path: str | Path) -> Critic:
    """A critic folder (as `train_critic` writes it) with its base model loaded."""
    import mlx.core as mx

    from mlx_repair.model.resolve import load_model

    path = Path(path)
    if not (path / CRITIC_FILE).is_file():
        raise UserError(f"{path}: no {CRITIC_FILE} here, so not a critic; train one with `mlx-repair train-critic`")
    settings = json.loads((path / CRITIC_FILE).read_text())
    adapter = path if settings["kind"] == "lora" else None
    model, tokenizer = load_model(settings["base_model"], adapter_path=adapter, quantize=settings["quantize"])
    return Critic(model, tokenizer, None if adapter else dict(mx.load(str(path / HEAD_FILE))))
