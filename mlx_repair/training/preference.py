"""The preference objective: learn from failing answers too, not only from passing ones.

Supervised training on the model's own passing answers changed the format of Qwen 0.5B's
answers and nothing measurable about which of them pass
(benchmarks/results/learning_signal_qwen0.5b.md): a passing answer is one the model
already writes often, so imitating it says little. What the mined store holds besides is
the failing answer to the same prompt, and the contrast between the two is the signal.

Each record is a prompt with a passing answer (`chosen`) and a failing one (`rejected`),
as `mining.dataset` writes them with `MixConfig.preference`. The loss is DPO's
(Rafailov et al. 2023): -log sigmoid(beta * (the adapter's log-probability gain over the
base on the chosen answer - its gain on the rejected one)), with the frozen base model as
the reference, plus `nll_weight` times the chosen answer's per-token negative
log-likelihood: without it, DPO can lower both answers' likelihood and the model drifts
(Pang et al. 2024, iterative reasoning preference optimisation). The base is the adapted
model before training (mlx-lm's LoRA starts with a zero update), so the reference
log-probabilities are computed once, before the first step or the checkpoint's weights,
and no second copy of the model is held.

A batch holds `batch_size` records as 2 * batch_size rows: chosen, rejected, chosen, ...
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mlx_repair.errors import UserError
from mlx_repair.events import Log
from mlx_repair.mining.dataset import tokenize
from mlx_repair.training.checkpoints import atomic_write_text
from mlx_repair.training.logits import answer_logits, answer_start

REFERENCE_FILE = "reference.json"  # the base's log-probabilities of each record's answers

PAD_TO = 32  # rows are padded to a multiple of this, as mlx-lm's batches are


@dataclass(frozen=True)
class PreferenceExample:
    """The tokens of one prompt with each answer, where each answer starts, and the
    base model's log-probability of each answer."""

    chosen: list[int]
    chosen_offset: int
    rejected: list[int]
    rejected_offset: int
    reference: tuple[float, float] = (0.0, 0.0)

    @property
    def length(self) -> int:
        return max(len(self.chosen), len(self.rejected))


def tokenize_preferences(records: list[dict], tokenizer, max_seq_length: int) -> tuple[list[PreferenceExample], int]:
    """One example per record whose both answers fit in `max_seq_length`, and how many
    were dropped (dropped, not truncated: the answers are what the loss counts)."""
    missing = sum("rejected" not in record for record in records)
    if missing:
        raise UserError(
            f"{missing} of {len(records)} records have no rejected answer: the preference objective trains on "
            "records written for it (MixConfig.preference, which `train.objective = \"preference\"` sets)"
        )
    chosen, _ = tokenize(records, tokenizer, max_seq_length=10**9)
    rejected, _ = tokenize([rejected_record(r) for r in records], tokenizer, max_seq_length=10**9)
    examples = [PreferenceExample(c, c_offset, r, r_offset) for (c, c_offset), (r, r_offset) in zip(chosen, rejected)]
    kept = [e for e in examples if e.length <= max_seq_length]
    return kept, len(examples) - len(kept)


def rejected_record(record: dict) -> dict:
    """The record with its failing answer in place of the passing one."""
    *prompt, answer = record["messages"]
    return {"messages": [*prompt, {**answer, "content": record["rejected"]}]}


def with_reference(model, train: list, valid: list, batch_size: int, path: Path, key: str):
    """Score every example's answers with the model (call it while the adapter is zero:
    these are the base's log-probabilities), yielding a `Log` now and then; returns the
    (train, valid) examples with their `reference`. The scores are saved to `path` after
    each batch under `key` (`reference_key`), so a killed run continues the scoring
    instead of starting it again: it costs a forward pass over every record."""
    import mlx.core as mx

    examples = train + valid
    key = f"{key} {len(train)}+{len(valid)}"  # the same records, split the same way
    scores = _saved_scores(path, key)
    if len(scores) < len(examples):
        yield Log(f"preference objective: scoring {len(examples)} records' answers with the base model"
                  + (f" ({len(scores)} scored before)" if scores else ""))
    logprobs = answer_logprobs(model)
    training = model.training
    model.eval()
    reported = len(scores)
    for first in range(len(scores), len(examples), batch_size):
        batch, lengths, _ = batch_arrays(examples[first : first + batch_size])
        values = logprobs(model, batch, lengths, answer_start(lengths))[0].tolist()
        scores += [values[i : i + 2] for i in range(0, len(values), 2)]
        atomic_write_text(path, json.dumps({"key": key, "scores": scores}))
        mx.clear_cache()
        if len(scores) - reported >= len(examples) / 10 and len(scores) < len(examples):
            reported = len(scores)
            yield Log(f"scored {len(scores)} of {len(examples)} records")
    model.train(training)
    scored = [replace(e, reference=tuple(score)) for e, score in zip(examples, scores)]
    return scored[: len(train)], scored[len(train) :]


def reference_key(base_model: str | None, data_sha256: str, quantize: int | None, max_seq_length: int) -> str:
    """What the reference scores depend on: the base model, the records, and which of
    them fit; not the training settings, so runs that differ only in those share them."""
    key = json.dumps([base_model, data_sha256, quantize, max_seq_length])
    return hashlib.sha256(key.encode()).hexdigest()


def _saved_scores(path: Path, key: str) -> list[list[float]]:
    if not path.is_file():
        return []
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved["scores"] if saved.get("key") == key else []


def preference_batches(examples: list[PreferenceExample], batch_size: int, seed: int):
    """One epoch of batches in an order drawn from `seed` (records of similar length
    together, as mlx-lm batches them): (tokens, lengths, reference) arrays."""
    by_length = sorted(range(len(examples)), key=lambda i: examples[i].length)
    groups = [by_length[i : i + batch_size] for i in range(0, len(by_length) - batch_size + 1, batch_size)]
    for group in np.random.default_rng(seed).permutation(len(groups)):
        yield batch_arrays([examples[i] for i in groups[group]])


def batch_arrays(examples: list[PreferenceExample]):
    """Rows chosen, rejected, chosen, ...; mlx-lm's (offset, length) per row; the
    reference log-probability per row."""
    import mlx.core as mx

    rows, lengths, reference = [], [], []
    for example in examples:
        rows += [example.chosen, example.rejected]
        lengths += [(example.chosen_offset, len(example.chosen)), (example.rejected_offset, len(example.rejected))]
        reference += list(example.reference)
    width = PAD_TO * -(-max(len(row) for row in rows) // PAD_TO)
    tokens = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return mx.array(tokens), mx.array(lengths), mx.array(reference, dtype=mx.float32)


def answer_logprobs(model):
    """(model, batch, lengths, start) -> (each row's summed log-probability of its answer
    tokens, each row's answer token count), with logits from `start` on only
    (`logits.answer_logits`). Unlike mlx-lm's `default_loss` mask, which also counts the
    padding token after each row, only the row's own tokens count: a padding token's
    log-probability would differ between the two answers and bias the margin."""
    import mlx.core as mx
    import mlx.nn as nn

    logits_of = answer_logits(model)

    def logprobs(model, batch, lengths, start):
        logits = logits_of(model, batch, start)
        targets = batch[:, start + 1 :]
        steps = mx.arange(start + 1, start + 1 + targets.shape[1])
        mask = mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])
        token_logprobs = -nn.losses.cross_entropy(logits, targets) * mask
        return token_logprobs.astype(mx.float32).sum(axis=1), mask.sum(axis=1)

    return logprobs


def preference_loss(model, beta: float, nll_weight: float, per_token: bool = True):
    """(model, batch, lengths, reference, start) -> (loss, answer tokens): DPO's loss with
    `reference` as the base's log-probabilities, plus `nll_weight` times the chosen
    answers' mean token negative log-likelihood. With `per_token`, each answer's gain
    over the base is divided by its length: see `TrainConfig.per_token_margin`."""
    import mlx.nn as nn

    logprobs_of = answer_logprobs(model)

    def loss(model, batch, lengths, reference, start):
        logprobs, tokens = logprobs_of(model, batch, lengths, start)
        gain = (logprobs - reference) / tokens if per_token else logprobs - reference
        margin = beta * (gain[0::2] - gain[1::2])
        chosen_nll = -logprobs[0::2].sum() / tokens[0::2].sum()
        return -nn.log_sigmoid(margin).mean() + nll_weight * chosen_nll, tokens.sum()

    return loss


def validation(model, examples: list[PreferenceExample], config):
    """A function giving the mean preference loss over the validation examples, one
    record per batch in one fixed order (the first `val_batches` of them, -1: all)."""
    import itertools

    import mlx.core as mx

    loss = preference_loss(model, config.beta, config.nll_weight, config.per_token_margin)
    count = len(examples) if config.val_batches < 0 else min(config.val_batches, len(examples))

    def validate() -> float:
        model.eval()
        total = 0.0
        for batch, lengths, reference in itertools.islice(preference_batches(examples, 1, config.seed), count):
            total += loss(model, batch, lengths, reference, answer_start(lengths))[0].item()
            mx.clear_cache()
        model.train()
        return total / count

    return validate
