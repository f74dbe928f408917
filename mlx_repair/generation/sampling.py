"""Batched sampling: many prompts x many samples per decoding step.

One sequence at a time leaves most of a model call's work unused: batch 32 decodes
several times the tokens per second of a single stream
(benchmarks/results/sampling_throughput.md), so every model call should carry as many
sequences as fit. `sample` keeps the batch full (continuous batching on mlx-lm's batch
caches, as its `BatchGenerator` does): each prompt is prefilled once and its cache merged
into the batch once per sample (merging copies it), a finished sequence leaves the batch
at once (EOS, the caller's stop check, or max_tokens) and the next prompt takes its
place. Samples are yielded as they finish, so the repair loop can sandbox one while the
rest are still generating. Each step's tokens are chosen by `choose.py`, not by
`BatchGenerator`, whose per-token work over the whole vocabulary cost as much as the
model call on a CPU.

Prefilling a batch's prompts costs minutes on a CPU (a prompt token costs about what a
generated one does), so decoding does not wait for all of them: the first prompt is
prefilled alone and decodes at once, and later prompts join the running batch a few
hundred prompt tokens between two decoding steps (`prefill_per_step`). For the same
reason a prompt that starts like one processed before (a repair or a resample starts
with its draft's system turn and problem) is prefilled from a copy of that one's cache
(`Prefixes`).

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
from mlx_lm.generate import wired_limit
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

from mlx_repair.generation.choose import make_chooser
from mlx_repair.generation.stops import StopCheck

PREFILL_STEP = 2048
CLEAR_CACHE_STEPS = 512  # as BatchGenerator: buffers of batch shapes no longer used go back

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

    prompt_tokens: int = 0  # processed, once per prompt
    reused_tokens: int = 0  # prompt tokens taken from a kept prefix instead (`Prefixes`)
    generated_tokens: int = 0  # every decoded token, EOS included
    seconds: float = 0.0  # wall time so far, prefill included
    prefill_seconds: float = 0.0
    # Where decoding steps' time goes: copying joining prompts' caches into the batch
    # (and dropping finished rows), the model call, choosing the tokens, and the loop
    # around them (detokenising, stop checks, bookkeeping).
    merge_seconds: float = 0.0
    model_seconds: float = 0.0
    choose_seconds: float = 0.0
    loop_seconds: float = 0.0
    peak_memory_gb: float = 0.0  # mx.get_peak_memory(): since the process started or last reset

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time: what a user waits for."""
        return self.generated_tokens / self.seconds if self.seconds else 0.0


@dataclass
class Prefixes:
    """Prompts processed earlier, kept so that a prompt starting with the same tokens is
    not processed again: mlx-lm's `LRUPromptCache` hands out a copy of the longest kept
    prefix's cache, cut back to the shared tokens when the cache allows (plain KV caches
    do; the recurrent state of hybrid models does not, so those reuse only whole kept
    prompts). One per model: its caches fit no other. `keep`: whether this call's prompts
    are kept for later ones as well."""

    kept: LRUPromptCache
    keep: bool = True

    def start(self, model, tokens: list[int]) -> tuple[list, int]:
        """A cache to process `tokens` into, and how many of them it already holds."""
        cache, rest = self.kept.fetch_nearest_cache(id(model), tokens) if tokens else (None, tokens)
        return (make_prompt_cache(model), 0) if cache is None else (cache, len(tokens) - len(rest))

    def add(self, model, tokens: list[int], cache: list) -> None:
        if self.keep and tokens:
            self.kept.insert_cache(id(model), tokens, cache)


@dataclass
class _Sequence:
    prompt_index: int
    sample_index: int
    tokenizer: object
    stop: StopCheck | None
    on_text: OnText | None = None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def step(self, token: int, logprob: float, eos: set[int], max_tokens: int) -> Sample | None:
        """Account one generated token; the finished Sample, or None while it goes on."""
        if token in eos:
            return self.finish("eos")
        cut = self.add(token, logprob)
        if cut is not None:
            return self.finish("stop", cut)
        if len(self.tokens) >= max_tokens:
            return self.finish("length")
        return None

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


@dataclass
class _Batch:
    """The sequences decoding together: the model's cache with one row per sequence (mlx-lm's
    batch caches, which pad rows of different lengths), and the token each row feeds next."""

    cache: list = field(default_factory=list)  # one per layer; empty while nothing decodes
    inputs: list[int] = field(default_factory=list)
    sequences: list[_Sequence] = field(default_factory=list)
    joining: list[tuple[list, int]] = field(default_factory=list)  # (prompt cache, rows) not merged in yet

    def __len__(self) -> int:
        return len(self.sequences)

    def join(self, cache: list, sequences: list[_Sequence], token: int) -> None:
        """Add sequences that start from one prompt's cache, each feeding `token` first."""
        self.joining.append((cache, len(sequences)))
        self.inputs += [token] * len(sequences)
        self.sequences += sequences

    def logits(self, model) -> mx.array:
        return model(mx.array(self.inputs)[:, None], cache=self.cache)[:, -1, :]

    def merge(self) -> None:
        """Copy the rows that joined since the last step into the batch's cache: the new
        prompts' caches merged once each, then repeated into their samples' rows by one
        gather (mlx-lm's merge copies row by row, and extending prompt by prompt copied the
        growing batch each time: seconds at batch 128)."""
        if not self.joining:
            return
        caches = [cache for cache, _ in self.joining]
        repeat = [k for k, (_, rows) in enumerate(self.joining) for _ in range(rows)]
        new = [layer.merge([cache[i] for cache in caches]) for i, layer in enumerate(caches[0])]
        if len(repeat) > len(caches):  # some prompt has several samples
            for layer in new:
                layer.filter(repeat)
        for layer, rows in zip(self.cache, new):
            layer.extend(rows)
        self.cache = self.cache or new
        self.joining = []
        mx.eval([layer.state for layer in self.cache])  # the copies' time counts as merging

    def keep(self, rows: list[int], tokens: list[int]) -> None:
        """Go on with these rows only, each feeding the token it was just given."""
        if not rows:
            self.cache = []
        elif len(rows) < len(self.sequences):
            for layer in self.cache:
                layer.filter(rows)
            mx.eval([layer.state for layer in self.cache])
        self.sequences = [self.sequences[row] for row in rows]
        self.inputs = [tokens[row] for row in rows]


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
    prefixes: Prefixes | None = None,
) -> Iterator[Sample]:
    """Yield n samples for every prompt (token ids), in the order they finish.

    `stops` holds one stop check per prompt (see `stops.stop_check`); `stats`, if given,
    is updated in place so a caller can show throughput while samples stream in;
    `on_text`, if given, sees each sequence's whole text after every token (uncut: the
    finished Sample's text may be shorter, where the stop check cut it); `on_prefill`,
    if given, hears of each prompt's prefill (the minutes before the first samples);
    `prefixes`, if given, start prompts from kept ones that they begin with.
    """
    config = config or SamplingConfig()
    stats = stats if stats is not None else SamplingStats()
    stops = stops if stops is not None else [None] * len(prompts)
    if len(stops) != len(prompts):
        raise ValueError(f"got {len(stops)} stop checks for {len(prompts)} prompts")
    if any(not prompt for prompt in prompts):
        raise ValueError("every prompt needs at least one token")

    choose = make_chooser(config.temperature, config.top_p, config.seed)
    eos = set(tokenizer.eos_token_ids)
    batch = _Batch()
    waiting = deque(enumerate(prompts))
    prompt_tokens = stats.prompt_tokens  # before this call: on_prefill counts this call's
    # Wall time, the caller's between yields included.
    clock = time.perf_counter()
    steps = 0
    with wired_limit(model):
        while waiting or batch:
            for index, prompt in _next_prompts(waiting, batch, config):
                sequences = [_Sequence(index, k, tokenizer, stops[index], on_text) for k in range(n)]
                batch.join(_prefill(model, prompt, stats, prefixes), sequences, prompt[-1])
                if on_prefill is not None:
                    on_prefill(len(prompts) - len(waiting), stats.prompt_tokens - prompt_tokens)
            started = time.perf_counter()
            batch.merge()
            merged = time.perf_counter()
            logits = batch.logits(model)
            mx.eval(logits)
            computed = time.perf_counter()
            tokens, logprobs = choose(logits)
            chosen = time.perf_counter()
            going, finished = [], []
            for row, (sequence, token, logprob) in enumerate(zip(batch.sequences, tokens, logprobs)):
                done = sequence.step(token, logprob, eos, config.max_tokens)
                if done is None:
                    going.append(row)
                else:
                    finished.append(done)
            looped = time.perf_counter()
            batch.keep(going, tokens)
            kept = time.perf_counter()
            stats.merge_seconds += merged - started + kept - looped
            stats.model_seconds += computed - merged
            stats.choose_seconds += chosen - computed
            stats.loop_seconds += looped - chosen
            stats.generated_tokens += len(tokens)
            stats.seconds += kept - clock
            clock = kept
            stats.peak_memory_gb = mx.get_peak_memory() / 1e9
            steps += 1
            if steps % CLEAR_CACHE_STEPS == 0:
                mx.clear_cache()
            yield from finished


def _next_prompts(waiting: deque, batch: _Batch, config: SamplingConfig) -> Iterator[tuple[int, list[int]]]:
    """The (index, prompt) pairs to prefill before the next decoding step, taken from
    `waiting` one at a time (the caller adds each one's sequences to `batch` before the
    next), while the batch has room and the budget is not spent, so at least one. With
    nothing decoding, one prompt: its first tokens come after its own prefill, not after
    the batch's; then `prefill_per_step` prompt tokens' worth per step."""
    budget = config.prefill_per_step if batch else 1
    spent = 0
    while waiting and len(batch) < config.batch_size and not (config.prefill_per_step and spent >= budget):
        index, prompt = waiting.popleft()
        spent += len(prompt)
        yield index, prompt


def _prefill(model, prompt: list[int], stats: SamplingStats, prefixes: Prefixes | None) -> list:
    """The model's cache after all but the last prompt token (each sample feeds that one
    itself, in its first decoding step), started from a kept prefix when there is one."""
    start = time.perf_counter()
    context = prompt[:-1]
    cache, reused = prefixes.start(model, context) if prefixes else (make_prompt_cache(model), 0)
    for begin in range(reused, len(context), PREFILL_STEP):
        model(mx.array(context[begin : begin + PREFILL_STEP])[None], cache=cache)
        mx.eval([c.state for c in cache])
    if prefixes:
        prefixes.add(model, context, cache)
    stats.prefill_seconds += time.perf_counter() - start
    stats.prompt_tokens += len(prompt) - reused
    stats.reused_tokens += reused
    return cache
