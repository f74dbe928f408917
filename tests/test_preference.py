"""The preference objective on a tiny model: per-answer log-probabilities, DPO's loss at
the start (log 2 plus the chosen answers' NLL), training that widens the margin between
passing and failing answers, and a resumed run that ends where an uninterrupted one does."""

import json
import math

import pytest

from mlx_repair.events import Log, TrainStep
from mlx_repair.mining.dataset import MixConfig, TRAIN_FILE, read_jsonl
from mlx_repair.training.config import TrainConfig
from mlx_repair.training.logits import answer_start
from mlx_repair.training.lora import add_adapters
from mlx_repair.training.preference import (
    answer_logprobs,
    preference_batches,
    preference_loss,
    tokenize_preferences,
    with_reference,
)
from test_train import FAST, mined_data, private_cache, run  # noqa: F401 (a fixture)

PREFERENCE = dict(FAST, objective="preference")


@pytest.fixture(scope="module")
def preference_dir(tmp_path_factory):
    return mined_data(tmp_path_factory.mktemp("preferences"), MixConfig(valid_fraction=0.2, preference=True))


def _examples(model_dir, data_dir, scores_file=None):
    from mlx_lm import load

    model, tokenizer = load(str(model_dir))
    add_adapters(model, TrainConfig(num_layers=2))
    examples, dropped = tokenize_preferences(read_jsonl(data_dir / TRAIN_FILE), tokenizer, 2048)
    assert examples and dropped == 0
    scored, _ = _scored(model, examples, scores_file or data_dir.parent / "scores.json")
    return model, scored


def _scored(model, examples, path, key="k"):
    """with_reference run to its end: the scored train examples, and the Log messages."""
    logs = []
    generator = with_reference(model, examples, [], 3, path, key)
    while True:
        try:
            logs.append(next(generator).message)
        except StopIteration as done:
            return done.value[0], logs


def test_answer_logprobs_sum_the_answer_tokens_log_softmax(tiny_model_dir, preference_dir):
    import mlx.core as mx

    model, examples = _examples(tiny_model_dir, preference_dir)
    example = examples[0]
    for tokens, offset, reference in ((example.chosen, example.chosen_offset, example.reference[0]),
                                      (example.rejected, example.rejected_offset, example.reference[1])):
        logits = model(mx.array([tokens[:-1]]))[0]
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        expected = sum(logprobs[i - 1, tokens[i]].item() for i in range(offset, len(tokens)))
        assert reference == pytest.approx(expected, abs=1e-3)
    batch, lengths, _ = next(preference_batches(examples[:1], 1, seed=0))
    summed, counts = answer_logprobs(model)(model, batch, lengths, answer_start(lengths))
    assert counts.tolist() == [len(example.chosen) - example.chosen_offset, len(example.rejected) - example.rejected_offset]
    assert summed.tolist() == pytest.approx(list(example.reference), abs=1e-3)


def test_the_loss_starts_at_log_two_plus_the_chosen_nll(tiny_model_dir, preference_dir):
    import mlx.core as mx

    model, examples = _examples(tiny_model_dir, preference_dir)
    model.eval()
    batch, lengths, reference = next(preference_batches(examples, 2, seed=1))
    assert batch.shape[0] == 4 and reference.shape == (4,)
    chosen = reference[0::2].sum().item() / (lengths[0::2, 1] - lengths[0::2, 0]).sum().item()
    pure, _ = preference_loss(model, beta=0.1, nll_weight=0.0)(model, batch, lengths, reference, answer_start(lengths))
    mixed, tokens = preference_loss(model, beta=0.1, nll_weight=2.0)(model, batch, lengths, reference, answer_start(lengths))
    assert pure.item() == pytest.approx(math.log(2), abs=1e-4)  # the adapter is zero: no margin yet
    assert mixed.item() == pytest.approx(math.log(2) - 2.0 * chosen, abs=1e-3)
    assert tokens.item() == (lengths[:, 1] - lengths[:, 0]).sum().item()
    # chosen answers 0.5 nats per token above the reference, rejected ones level with it
    counts = (lengths[:, 1] - lengths[:, 0]).astype(reference.dtype)
    shifted = reference - mx.array([0.5, 0.0, 0.5, 0.0]) * counts
    start = answer_start(lengths)
    per_token, _ = preference_loss(model, beta=2.0, nll_weight=0.0)(model, batch, lengths, shifted, start)
    assert per_token.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))), abs=1e-3)
    whole, _ = preference_loss(model, 0.1, 0.0, per_token=False)(model, batch, lengths, shifted, start)
    margins = [0.1 * 0.5 * counts[i].item() for i in (0, 2)]
    assert whole.item() == pytest.approx(sum(math.log1p(math.exp(-m)) for m in margins) / 2, abs=1e-3)


def test_preference_training_widens_the_margin_and_resumes(tiny_model_dir, preference_dir, tmp_path):
    import mlx.core as mx
    from mlx_lm import load

    config = TrainConfig(iters=12, patience=None, nll_weight=0.0, **{**PREFERENCE, "learning_rate": 3e-3})
    out = tmp_path / "preference"
    events, manifest = run(str(tiny_model_dir), preference_dir, out, config)
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps[0].validation_loss == pytest.approx(math.log(2), abs=1e-3)
    assert steps[-1].iteration == 12 and steps[-1].loss < math.log(2)
    assert manifest["train_config"]["objective"] == "preference"

    # the adapter prefers the passing answers over the failing ones it was shown
    base, examples = _examples(tiny_model_dir, preference_dir)
    adapted, _ = load(str(tiny_model_dir), adapter_path=str(out))
    batch, lengths, reference = next(preference_batches(examples, len(examples), seed=0))
    logprobs, tokens = answer_logprobs(adapted)(adapted, batch, lengths, answer_start(lengths))
    gain = (logprobs - reference) / tokens
    assert mx.mean(gain[0::2] - gain[1::2]).item() > 0

    # stopped at step 6 and resumed: the same adapter as the uninterrupted run
    half = tmp_path / "resumed"
    run(str(tiny_model_dir), preference_dir, half, TrainConfig(**{**config.__dict__, "iters": 6}))
    events, _ = run(str(tiny_model_dir), preference_dir, half, config)
    assert any(isinstance(e, Log) and "resuming from step 6" in e.message for e in events)
    assert not any(isinstance(e, Log) and "scoring" in e.message for e in events)  # reference.json read back
    whole, again = mx.load(str(out / "adapters.safetensors")), mx.load(str(half / "adapters.safetensors"))
    assert all(mx.allclose(whole[name], again[name], atol=1e-5).item() for name in whole)


def test_preference_records_are_required_for_the_preference_objective(tiny_model_dir, tmp_path):
    from mlx_repair.errors import UserError

    data = mined_data(tmp_path, MixConfig(valid_fraction=0.2))
    with pytest.raises(UserError, match="rejected"):
        run(str(tiny_model_dir), data, tmp_path / "out", TrainConfig(iters=2, **PREFERENCE))
    with pytest.raises(UserError, match="objective"):
        TrainConfig(objective="rl")
    assert json.loads((data / "dataset.json").read_text())["mix"]["preference"] is False


def test_reference_scores_are_saved_and_a_killed_scoring_continues(tiny_model_dir, preference_dir, tmp_path):
    path = tmp_path / "reference.json"
    model, examples = _examples(tiny_model_dir, preference_dir, path)
    saved = json.loads(path.read_text())
    assert saved["key"].startswith("k ") and [tuple(s) for s in saved["scores"]] == [e.reference for e in examples]
    # killed after two records (the first one's scores marked): those two are read back
    path.write_text(json.dumps({"key": saved["key"], "scores": [[-1.0, -2.0], saved["scores"][1]]}))
    again, logs = _scored(model, examples, path)
    assert "(2 scored before)" in logs[0]
    # Scored again, in batches of other records than the first time: equal up to float32
    # rounding (the padded width of a batch changes the matmuls' blocking).
    rescored = [pytest.approx(e.reference, rel=1e-5) for e in examples]
    assert again[0].reference == (-1.0, -2.0) and [e.reference for e in again[1:]] == rescored[1:]
    # another run's scores (another key), or the same records split otherwise, are not used
    fresh, _ = _scored(model, examples, path, key="other")
    assert fresh[0].reference == rescored[0]
    path.write_text(json.dumps({"key": saved["key"], "scores": [[-1.0, -2.0]] * len(examples)}))
    fewer, _ = _scored(model, examples[1:], path)
    assert fewer[0].reference == rescored[1]
