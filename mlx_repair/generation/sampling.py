"""Batched sampling: many prompts x many samples per decoding step, over mlx-lm's BatchGenerator.

One sequence at a time leaves most of a model call's work unused: batch 32 decodes
several times the tokens per second of a single stream
(benchmarks/results/sampling_throughput.md), so every model call should carry as many
sequences as fit. `sample` keeps mlx-lm's continuous batching full: each prompt is prefilled once and
its KV cache handed to all n samples (mlx-lm copies caches when it merges them into a
batch), a finished sequence leaves the batch at once (EOS, the caller's stop check, or
max_tokens) and the next prompt takes its place. Samples are yielded as they finish, so
the repair loop can sandbox one while the rest are still generating.

Prefilling a batch's prompts costs minutes on a CPU (a prompt token costs about what a
generated one does), so decoding does not wait for all of them: the first prompt is
prefilled alone and decodes at once, and later prompts join the running batch a few
hundred prompt tokens between two decoding steps (`prefill_per_step`).

Every sample carries the log-probability of each of its tokens under the model (before
temperature or top-p reshape the distribution), so that a selector can prefer the most
likely of several samples (evaluation/selection.py).

Reproducible: the same prompts, n and config give the same samples. Which sequences
share a batch, and from which step, depends on that input too, so changing n,
batch_size or prefill_per_step changes the random draws of temperature sampling (greedy
decoding does not depend on it, up to float rounding in batched matmuls).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import mlx.core as mx
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from mlx_repair.generation.stops import StopCheck

PREFILL_STEP = 2048

# Told (prompt_index, sample_index, text so far, tokens so far) after each token.
OnText = Callable[[int, int, str, int], None]
# Told (prompts prefilled, prompt tokens prefilled) by this call, after each prompt's prefill.
OnPrefill = Callable[[int, int], None]


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 is greedy decoding (then n > 1 gives n equal samples)
    # Nucleus sampling; 1.0 keeps the whole distribution. Below 1, mlx-lm sorts the whole
    # vocabulary every step, which is slow with large vocabularies on a CPU.
    top_p: float = 1.0
    max_tokens: int = 512  # per sample
    seed: int = 0
    batch_size: int = 32  # sequences decoded together in one model call
    # Prompt tokens prefilled between two decoding steps while sequences decode (at least
    # one prompt): few enough that tokens keep coming, enough that the batch fills in a
    # few steps. 0 prefills every prompt that fits in the batch before decoding starts.
    prefill_per_step: int = 256


@dataclass(frozen=True)
class Sample:
    """One finished sequence.

    finish_reason: "eos" (the model ended its turn), "stop" (the stop check found the
    function complete; `text` is cut there) or "length" (max_tokens reached).
    token_ids are all generated tokens except EOS, including any past the cut: the cost.
    logprobs holds the model's log-probability of each of those tokens.
    """

    prompt_index: int
    sample_index: int
    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[float] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float | None:
        """The mean token log-probability: how likely the model found this sample, on a
        scale that does not favour short ones (None for an empty sample)."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


@dataclass
class SamplingStats:
    """Running totals, updated as samples are yielded; pass the same object to several
    `sample` calls to total them."""

    prompt_tokens: int = 0  # prefilled, once per prompt
    generated_tokens: int = 0  # every decoded token, EOS included
    seconds: float = 0.0  # wall time so far, prefill included
    prefill_seconds: float = 0.0
    peak_memory_gb: float = 0.0  # mx.get_peak_memory(): since the process started or last reset

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time: what a user waits for."""
        return self.generated_tokens / self.seconds if self.seconds else 0.0

@dataclass
class _Sequence:
    prompt_index: int
    sample_index: int
    tokenizer: object
    stop: StopCheck | None
    on_text: OnText | None = None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def add(self, token: int, logprob: float) -> int | None:
        """Append a token; return the cut position once the stop check says complete.

        The text is decoded whole rather than streamed: mlx-lm's streaming detokenizers
        drop a leading space, which would shift a continuation's indentation. One decode
        serves both the stop check and the listener; with neither, nothing is decoded."""
        self.tokens.append(token)
        self.logprobs.append(logprob)
        if self.stop is None and self.on_text is None:
            return None
        text = self.tokenizer.decode(self.tokens)
        if self.on_text is not None:
            self.on_text(self.prompt_index, self.sample_index, text, len(self.tokens))
        return self.stop(text) if self.stop else None

    def finish(self, reason: str, cut: int | None = None) -> Sample:
        text = self.tokenizer.decode(self.tokens)
        return Sample(self.prompt_index, self.sample_index, text[:cut], self.tokens, reason, self.logprobs)


def sample(
    model,
    tokenizer,
    prompts: list[list[int]],
    n: int = 1,
    config: SamplingConfig | None = None,
    stops: Sequence[StopCheck | None] | None = None,
    stats: SamplingStats | None = None,
    on_text: OnText | None = None,
    on_prefill: OnPrefill | None = None,
) -> Iterator[Sample]:
    """Yield n samples for every prompt (token ids), in the order they finish.

    `stops` holds one stop check per prompt (see `stops.stop_check`); `stats`, if given,
    is updated in place so a caller can show throughput while samples stream in;
    `on_text`, if given, sees each sequence's whole text after every token (uncut: the
    finished Sample's text may be shorter, where the stop check cut it); `on_prefill`,
    if given, hears of each prompt's prefill (the minutes before the first samples).
    """
    config = config or SamplingConfig()
    stats = stats if stats is not None else SamplingStats()
    stops = stops if stops is not None else [None] * len(prompts)
    if len(stops) != len(prompts):
        raise ValueError(f"got {len(stops)} stop checks for {len(prompts)} prompts")
    if any(not prompt for prompt in prompts):
        raise ValueError("every prompt needs at least one token")

    mx.random.seed(config.seed)
    generator = BatchGenerator(
        model,
        max_tokens=config.max_tokens,
        stop_tokens=[[token] for token in tokenizer.eos_token_ids],
        sampler=make_sampler(config.temperature, config.top_p),
        completion_batch_size=config.batch_size,
        prefill_batch_size=config.batch_size,
    )
    waiting = deque(enumerate(prompts))
    active: dict[int, _Sequence] = {}
    prompt_tokens = stats.prompt_tokens  # before this call: on_prefill counts this call's
    # Wall time, the caller's between yields included: mlx-lm evaluates the next step
    # asynchronously, so that time is not idle.
    clock = time.perf_counter()
    try:
        while waiting or active:
            for index, prompt in _next_prompts(waiting, active, config):
                for k, uid in enumerate(_insert(generator, model, prompt, n, stats)):
                    active[uid] = _Sequence(index, k, tokenizer, stops[index], on_text)
                if on_prefill is not None:
                    on_prefill(len(prompts) - len(waiting), stats.prompt_tokens - prompt_tokens)
            responses = generator.next_generated()
            stats.generated_tokens += len(responses)
            stats.seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            stats.peak_memory_gb = mx.get_peak_memory() / 1e9
            for response, logprob in zip(responses, _chosen_logprobs(responses)):
                finished = _step(active[response.uid], response, logprob, generator)
                if finished is not None:
                    del active[response.uid]
                    yield finished
    finally:
        generator.close()


def _next_prompts(waiting: deque, active: dict, config: SamplingConfig) -> Iterator[tuple[int, list[int]]]:
    """The (index, prompt) pairs to prefill before the next decoding step, taken from
    `waiting` one at a time (the caller adds each one's sequences to `active` before the
    next), while the batch has room and the budget is not spent, so at least one. With
    nothing decoding, one prompt: its first tokens come after its own prefill, not after
    the batch's; then `prefill_per_step` prompt tokens' worth per step."""
    budget = config.prefill_per_step if active else 1
    spent = 0
    while waiting and len(active) < config.batch_size and not (config.prefill_per_step and spent >= budget):
        index, prompt = waiting.popleft()
        spent += len(prompt)
        yield index, prompt


def _insert(generator: BatchGenerator, model, prompt: list[int], n: int, stats: SamplingStats) -> list[int]:
    """Prefill all but the last prompt token once, and start n sequences from that cache.

    mlx-lm merges (copies) the caches when it batches sequences, so the n samples can
    share one cache object; each feeds the last prompt token itself to get its first token.
    """
    start = time.perf_counter()
    cache = make_prompt_cache(model)
    with mx.stream(generator.stream):
        context = mx.array(prompt[:-1])
        for begin in range(0, context.size, PREFILL_STEP):
            model(context[None, begin : begin + PREFILL_STEP], cache=cache)
            mx.eval([c.state for c in cache])
    stats.prefill_seconds += time.perf_counter() - start
    stats.prompt_tokens += len(prompt)
    return generator.insert([prompt[-1:]] * n, caches=[cache] * n)


def _chosen_logprobs(responses) -> list[float]:
    """The log-probability of each response's token, read in one evaluation: each response
    carries the whole vocabulary's, and reading them one by one would wait once each."""
    if not responses:
        return []
    return mx.stack([response.logprobs[response.token] for response in responses]).tolist()


def _step(sequence: _Sequence, response, logprob: float, generator: BatchGenerator) -> Sample | None:
    """Account one generated token; the finished Sample, or None while it goes on."""
    if response.finish_reason == "stop":  # the only stop sequences mlx-lm sees are EOS
        return sequence.finish("eos")
    cut = sequence.add(response.token, logprob)
    if cut is not None:
        if response.finish_reason is None:  # still in mlx-lm's batch: free the slot now
            generator.remove([response.uid])
        return sequence.finish("stop", cut)
    if response.finish_reason == "length":
        return sequence.finish("length")
    return None
