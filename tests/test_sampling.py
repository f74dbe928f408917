"""Batched sampling on real tiny MLX models of both architectures (plain KV cache and the
hybrid Gated-DeltaNet cache): counts, greedy equality with mlx-lm's single stream,
seeds, max_tokens, stop checks, EOS, and sequences that finish independently."""

import mlx_lm
import pytest
from mlx_lm import stream_generate

from mlx_repair.generation.sampling import SamplingConfig, SamplingStats, sample

TEXTS = ["def foo(x):\n    return", "import math\n\nclass Solution:\n    def solve(self, text", "x"]


@pytest.fixture(params=["qwen2", "qwen3_5"])
def tiny(request):
    """(model, tokenizer, prompts) for each architecture; a fresh tokenizer per test."""
    fixture = "tiny_model_dir" if request.param == "qwen2" else "tiny_qwen35_dir"
    folder = request.getfixturevalue(fixture)
    model, tokenizer = mlx_lm.load(str(folder))
    return model, tokenizer, [tokenizer.encode(text) for text in TEXTS]


def single_stream(model, tokenizer, prompt, max_tokens):
    """mlx-lm's own greedy generation of one prompt, as token ids without EOS."""
    responses = list(stream_generate(model, tokenizer, prompt, max_tokens=max_tokens))
    tokens = [r.token for r in responses]
    return tokens[:-1] if responses[-1].finish_reason == "stop" else tokens


def by_key(samples):
    return {(s.prompt_index, s.sample_index): s for s in samples}


def test_n_samples_for_every_prompt_and_stats(tiny):
    model, tokenizer, prompts = tiny
    stats = SamplingStats()
    config = SamplingConfig(max_tokens=6, temperature=1.0)
    samples = list(sample(model, tokenizer, prompts, n=4, config=config, stats=stats))
    assert sorted(by_key(samples)) == [(p, k) for p in range(3) for k in range(4)]
    eos = sum(s.finish_reason == "eos" for s in samples)  # decoded, but not in token_ids
    assert stats.generated_tokens == sum(s.num_tokens for s in samples) + eos
    assert stats.prompt_tokens == sum(map(len, prompts)) and stats.tokens_per_second > 0
    assert stats.peak_memory_gb > 0
    # Each part of the decoding steps is timed, and together they are no more than the
    # decoding time (the rest is prefill and the caller's time between samples).
    parts = (stats.merge_seconds, stats.model_seconds, stats.choose_seconds, stats.loop_seconds)
    assert all(part > 0 for part in parts)
    assert sum(parts) <= stats.seconds - stats.prefill_seconds
    once = stats.generated_tokens
    list(sample(model, tokenizer, prompts, n=4, config=config, stats=stats))
    assert stats.generated_tokens == 2 * once  # one stats object totals several calls


@pytest.mark.parametrize("prefill_per_step", [0, 1, 256])  # the batch filled at once, or step by step
def test_greedy_is_deterministic_and_equals_single_stream_generate(tiny, prefill_per_step):
    model, tokenizer, prompts = tiny
    # 3 prompts x 2 samples: some wait
    config = SamplingConfig(max_tokens=12, batch_size=4, prefill_per_step=prefill_per_step)
    samples = by_key(sample(model, tokenizer, prompts, n=2, config=config))
    for p, prompt in enumerate(prompts):
        expected = single_stream(model, tokenizer, prompt, max_tokens=12)
        assert samples[p, 0].token_ids == samples[p, 1].token_ids == expected
        # Decoded whole: mlx-lm's streaming detokenizer would drop the leading space.
        assert samples[p, 0].text == tokenizer.decode(expected)


def test_every_sample_records_the_log_probability_of_each_token(tiny):
    """Greedy samples carry mlx-lm's own log-probabilities of the tokens they chose, one per
    token, and their mean; a finished sequence's EOS is not one of them."""
    model, tokenizer, prompts = tiny
    samples = by_key(sample(model, tokenizer, prompts, n=2, config=SamplingConfig(max_tokens=12, batch_size=4)))
    for p, prompt in enumerate(prompts):
        responses = list(stream_generate(model, tokenizer, prompt, max_tokens=12))
        expected = [r.logprobs[r.token].item() for r in responses][: samples[p, 0].num_tokens]
        for k in range(2):
            got = samples[p, k].logprobs
            assert len(got) == samples[p, k].num_tokens and all(value <= 0 for value in got)
            assert got == pytest.approx(expected, abs=1e-4)
            assert samples[p, k].mean_logprob == pytest.approx(sum(got) / len(got))


def test_seeds_reproduce_and_differ(tiny):
    model, tokenizer, prompts = tiny

    def texts(seed):
        config = SamplingConfig(temperature=1.0, top_p=0.95, max_tokens=10, seed=seed)
        samples = sample(model, tokenizer, prompts, n=3, config=config)
        return {key: s.text for key, s in by_key(samples).items()}

    assert texts(1) == texts(1)
    assert texts(1) != texts(2)


def test_decoding_starts_after_the_first_prompt_and_later_prompts_join_the_batch(tiny):
    """The first token comes after one prompt's prefill, not after every prompt's; then one
    prompt joins per decoding step when the budget is one prompt's worth."""
    model, tokenizer, prompts = tiny
    tokenizer.eos_token_ids = set()  # every sequence decodes all of its max_tokens
    prompts = prompts * 2  # 6 prompts, 12 sequences, all fitting in the batch
    stats, seen = SamplingStats(), []
    first_token_after = []  # prompt tokens prefilled when the first token was decoded

    def on_text(prompt_index, sample_index, text, num_tokens):
        seen.append(("token", prompt_index, sample_index))
        if not first_token_after:
            first_token_after.append(stats.prompt_tokens)

    def on_prefill(done, tokens):
        seen.append(("prefill", done, tokens))

    config = SamplingConfig(max_tokens=10, prefill_per_step=1)
    list(sample(model, tokenizer, prompts, n=2, config=config, stats=stats, on_text=on_text, on_prefill=on_prefill))
    assert first_token_after == [len(prompts[0])] < [sum(map(len, prompts))]
    prefills = [(i, event) for i, event in enumerate(seen) if event[0] == "prefill"]
    totals = [sum(map(len, prompts[:k])) for k in range(1, 7)]
    assert [event[1:] for _, event in prefills] == list(zip(range(1, 7), totals))
    # Between two prefills, one decoding step: at most one token per sequence, one for each
    # of the first prompt's (mlx-lm hands out a new sequence's first token a step later).
    for (start, _), (end, _) in zip(prefills, prefills[1:]):
        step = seen[start + 1 : end]
        assert len(set(step)) == len(step) and {("token", 0, 0), ("token", 0, 1)} <= set(step)


def test_prefilling_every_prompt_first_is_the_zero_budget(tiny):
    """prefill_per_step=0: the whole batch is prefilled before the first token (the schedule
    the benchmark compares against)."""
    model, tokenizer, prompts = tiny
    seen = []
    config = SamplingConfig(max_tokens=4, prefill_per_step=0)
    on_text = lambda *args: seen.append("token")  # noqa: E731
    on_prefill = lambda done, tokens: seen.append("prefill")  # noqa: E731
    list(sample(model, tokenizer, prompts, n=2, config=config, on_text=on_text, on_prefill=on_prefill))
    assert seen[:4] == ["prefill"] * 3 + ["token"]


@pytest.mark.parametrize("prefill_per_step", [0, 256])
def test_the_batch_never_holds_more_sequences_than_batch_size(tiny, prefill_per_step):
    """3 prompts x 2 samples in a batch of 4: the last prompt joins only once two of the
    sequences decoding have finished (each after max_tokens)."""
    model, tokenizer, prompts = tiny
    tokenizer.eos_token_ids = set()
    finished, at_prefill = [], []
    on_text = lambda p, k, text, num_tokens: finished.append((p, k)) if num_tokens == 5 else None  # noqa: E731
    on_prefill = lambda done, tokens: at_prefill.append(len(finished))  # noqa: E731
    config = SamplingConfig(max_tokens=5, batch_size=4, prefill_per_step=prefill_per_step)
    list(sample(model, tokenizer, prompts, n=2, config=config, on_text=on_text, on_prefill=on_prefill))
    assert at_prefill == [0, 0, 2 if prefill_per_step else 4]


def test_stop_checks_and_max_tokens_finish_sequences_independently(tiny):
    model, tokenizer, prompts = tiny
    stop_early = lambda text: 3 if len(text) >= 5 else None  # noqa: E731 - a stand-in stop check
    config = SamplingConfig(max_tokens=15)
    stops = [stop_early, None]
    samples = list(sample(model, tokenizer, prompts[:2], n=2, config=config, stops=stops))
    short = [s for s in samples if s.prompt_index == 0]
    long = [s for s in samples if s.prompt_index == 1]
    assert samples[:2] == short  # yielded as soon as they finished
    assert all(s.finish_reason == "stop" and len(s.text) == 3 for s in short)
    assert all(s.num_tokens < 15 for s in short)
    # The sequences left in the batch are unaffected by the ones that left it.
    alone = single_stream(model, tokenizer, prompts[1], max_tokens=15)
    assert all(s.finish_reason == "length" and s.token_ids == alone for s in long)
    assert all(s.num_tokens == 15 for s in long)


def test_eos_ends_a_sample_without_the_eos_token(tiny):
    model, tokenizer, prompts = tiny
    greedy = single_stream(model, tokenizer, prompts[0], max_tokens=8)
    eos = next(t for t in greedy if t != greedy[0])  # a token the model will produce
    tokenizer.eos_token_ids = {eos}
    (only,) = sample(model, tokenizer, prompts[:1], n=1, config=SamplingConfig(max_tokens=8))
    assert only.finish_reason == "eos"
    assert only.token_ids == greedy[: greedy.index(eos)]


class CountingDecodes:
    """The tokenizer, counting calls to decode."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.decodes = 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def decode(self, tokens):
        self.decodes += 1
        return self.tokenizer.decode(tokens)


def test_a_listener_sees_every_sequence_grow_token_by_token(tiny):
    model, tokenizer, prompts = tiny
    seen = {}

    def on_text(prompt_index, sample_index, text, num_tokens):
        seen.setdefault((prompt_index, sample_index), []).append((text, num_tokens))

    stop_early = lambda text: 3 if len(text) >= 5 else None  # noqa: E731 - a stand-in stop check
    config = SamplingConfig(max_tokens=12)
    samples = by_key(sample(model, tokenizer, prompts[:2], n=2, config=config, stops=[stop_early, None], on_text=on_text))
    assert sorted(seen) == sorted(samples)
    for key, done in samples.items():
        texts = [text for text, _ in seen[key]]
        assert [n for _, n in seen[key]] == list(range(1, done.num_tokens + 1))
        assert texts == [tokenizer.decode(done.token_ids[:n]) for n in range(1, done.num_tokens + 1)]
        assert all(later.startswith(text) for text, later in zip(texts, texts[1:]))
        # The last text is the whole output; the stop check cuts the sample's text from it.
        assert texts[-1] == tokenizer.decode(done.token_ids) and texts[-1].startswith(done.text)
    assert {s.finish_reason for s in samples.values()} == {"stop", "length"}


def test_without_a_stop_check_or_listener_text_is_decoded_once_per_sample(tiny):
    model, tokenizer, prompts = tiny
    counting = CountingDecodes(tokenizer)
    samples = list(sample(model, counting, prompts, n=2, config=SamplingConfig(max_tokens=8)))
    assert counting.decodes == len(samples)
