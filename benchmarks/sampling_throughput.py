"""Decoding throughput of `mlx_repair.generation.sampling.sample` at batch 1, 32, 64 and 128,
beside what the model call alone allows and beside mlx-lm, all in the same process: the bare
model forward at the same batch, mlx-lm's `batch_generate` and its single-stream
`stream_generate`.

Each batch size runs `batch / n` HumanEval draft prompts with n samples each (n samples of
one prompt share its prefill; n = 1 at batch 1). EOS is ignored so that every sequence
decodes exactly --max-tokens. `sample` runs the chat stop checks the writer runs,
evaluated after every token but never cutting, so its rows pay for them. The bare forward
feeds one token per row over a plain KV cache as long as an average sequence while
decoding (the prompts' mean length plus half of --max-tokens), with no sampling and no
Python loop around it: no sampling loop can beat it (`sample`'s batch cache also pads
prompts of different lengths, which the bare forward does not). `batch_generate` decodes
the same prompts, each prefilled once beforehand and shared by its n samples. Under the
table, each `sample` row's decoding time by part: the model call, choosing the tokens,
the loop around them (detokenising, stop checks) and merging joining prompts' caches into
the batch (and dropping finished rows), as `SamplingStats` times them.

The machine may be shared, so at each batch size the variants are alternated --repeats
times and each one's median run (by decode rate) is kept. Columns: decode tok/s (prompt
processing left out); "of bare", the rate against the bare forward's at the same batch
(the goal for `sample`: 0.85 at every batch); "of cache", against "bare, batch cache"; "vs single", against `stream_generate`'s
decode rate in the same rounds; "vs mlx-lm", against `batch_generate`'s; wall tok/s
counts `sample`'s prefill too (what a user waits for; with few tokens per prompt,
prefill dominates it); "first s", when the first sample finished. --prefill-per-step
0,256 gives one `sample` row per prefill schedule (0: every prompt before the first
decoding step). The GEMM rates at the MLP's shape tell machines apart.

Real Qwen 0.5B decodes a few tokens per second single-stream on a 2-core CPU, so a full
run takes tens of minutes there; SmolLM2 with a few tokens takes minutes:
    .venv/bin/python benchmarks/sampling_throughput.py --repeats 3 --json out.json   # packaged Qwen
    .venv/bin/python benchmarks/sampling_throughput.py --model smollm2-135m-instruct --max-tokens 16
    .venv/bin/python benchmarks/sampling_throughput.py --batch-sizes 32 --max-tokens 256 \
        --prefill-per-step 0,256 --repeats 3
"""

from __future__ import annotations

try:  # OpenBLAS must be loaded before mlx.core is imported (benchmarks/results/blas_speedup.md)
    from mlx_repair.model import blas

    BLAS = blas.preload().name
except ImportError:
    BLAS = "reference (mlx_repair.model.blas not available)"

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace

import mlx.core as mx
from mlx_lm import batch_generate, stream_generate
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from mlx_repair.config import DEFAULT_MODEL
from mlx_repair.generation.prompts import draft_prompt, encode
from mlx_repair.generation.sampling import SamplingConfig, SamplingStats, _Batch, sample
from mlx_repair.generation.stops import StopCheck, stop_check
from mlx_repair.model.resolve import load_model
from mlx_repair.problems import load_problems

BARE = "bare forward"
BARE_BATCH_CACHE = "bare, batch cache"
PARTS = ("model", "choose", "loop", "merge")  # of a `sample` decoding step, as SamplingStats times them
SINGLE = "stream_generate"
MLX_LM = "batch_generate"


@dataclass
class Row:
    method: str
    batch: int
    prompts: int
    tokens: int
    decode_seconds: float
    seconds: float = 0.0  # `sample`: prefill included
    first_sample_seconds: float = 0.0  # `sample`: prefill included
    peak_memory_gb: float = 0.0
    of_bare: float = 0.0  # decode rate against the bare forward's at this batch
    of_batch_cache: float = 0.0  # against the bare forward's over the same prompts' batch cache
    vs_single: float = 0.0  # against stream_generate's
    vs_mlx_lm: float = 0.0  # against batch_generate's
    # `sample`: seconds of its decoding steps by part (SamplingStats: merge, model, choose, loop)
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def decode_rate(self) -> float:
        return self.tokens / self.decode_seconds

    @property
    def wall_rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="packaged name, .gguf, MLX folder (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,32,64,128", help="comma-separated batch sizes")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt sharing one prefill (at most the batch)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens decoded per sequence")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument(
        "--top-p", type=float, default=1.0, help="below 1 adds a full-vocabulary sort per token"
    )
    parser.add_argument(
        "--prefill-per-step",
        default=str(SamplingConfig.prefill_per_step),
        help="comma-separated prefill schedules for `sample` (prompt tokens between decoding steps; 0: all first)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds per batch size, variants alternated; medians kept")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser


def single_stream(model, tokenizer, prompt: list[int], max_tokens: int, sampler) -> Row:
    """mlx-lm's own decode rate, prompt processing left out."""
    last = None
    for last in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler):
        pass
    return Row(SINGLE, 1, 1, last.generation_tokens, last.generation_tokens / last.generation_tps)


def bare_forward(model, batch: int, context: int, steps: int) -> Row:
    """The model call alone: one token per row per step over a `context`-token KV cache."""
    cache = make_prompt_cache(model)
    model(mx.array([[1] * context] * batch), cache=cache)
    mx.eval([c.state for c in cache])
    step = mx.array([[2]] * batch)
    mx.eval(model(step, cache=cache))
    start = time.perf_counter()
    for _ in range(steps):
        mx.eval(model(step, cache=cache))
    return Row(BARE, batch, 0, batch * steps, time.perf_counter() - start)


def bare_batch_cache(model, caches: list[list], n: int, steps: int) -> Row:
    """The model call alone over the prompts' caches merged as `sample` merges them (rows
    left-padded to the longest prompt and masked, each prompt's repeated n times): what the
    model call allows for these very prompts, with no sampling and no loop around it."""
    batch = _Batch()
    for cache in caches:
        batch.join(cache, [None] * n, token=2)  # merging copies the cache: the prompt's stays as it was
    batch.merge()
    mx.eval(batch.logits(model))
    start = time.perf_counter()
    for _ in range(steps):
        mx.eval(batch.logits(model))
    return Row(BARE_BATCH_CACHE, len(caches) * n, len(caches), len(caches) * n * steps, time.perf_counter() - start)


def sampled(model, tokenizer, prompts, n: int, config: SamplingConfig, stops: list[StopCheck]) -> Row:
    mx.reset_peak_memory()
    stats = SamplingStats()
    start, first = time.perf_counter(), 0.0
    for _ in sample(model, tokenizer, prompts, n=n, config=config, stops=stops, stats=stats):
        first = first or time.perf_counter() - start
    decode = stats.seconds - stats.prefill_seconds
    parts = {part: getattr(stats, f"{part}_seconds") for part in PARTS}
    return Row(
        f"sample p{config.prefill_per_step}", len(prompts) * n, len(prompts), stats.generated_tokens, decode,
        stats.seconds, first, stats.peak_memory_gb, parts=parts,
    )


def mlx_lm_batch(model, tokenizer, prompts, caches, n: int, max_tokens: int, sampler) -> Row:
    """batch_generate on the same prompts, each prefilled once (`caches`) and shared by n."""
    mx.reset_peak_memory()
    batch = len(prompts) * n
    response = batch_generate(
        model, tokenizer, [prompt[-1:] for prompt in prompts for _ in range(n)], max_tokens=max_tokens,
        prompt_caches=[cache for cache in caches for _ in range(n)], sampler=sampler,
        completion_batch_size=batch, prefill_batch_size=batch,
    )
    stats = response.stats
    decode = stats.generation_tokens / stats.generation_tps
    return Row(MLX_LM, batch, len(prompts), stats.generation_tokens, decode, peak_memory_gb=stats.peak_memory)


def prefilled(model, prompt: list[int]) -> list:
    """The cache after all but the last prompt token, as `sample` makes it."""
    cache = make_prompt_cache(model)
    model(mx.array(prompt[:-1])[None], cache=cache)
    mx.eval([c.state for c in cache])
    return cache


def never_cut(check: StopCheck) -> StopCheck:
    """The stop check's work after every token, without its cut: every row decodes max_tokens."""

    def evaluated(text: str) -> None:
        check(text)

    return evaluated


def measure_batch(model, tokenizer, problems, batch: int, schedules: list[int], args) -> list[Row]:
    """One row per variant at this batch size: each one's median of `args.repeats` rounds."""
    n = min(args.n, batch)
    chosen = problems[: batch // n]
    prompts = [encode(tokenizer, draft_prompt(tokenizer, problem)) for problem in chosen]
    stops = [never_cut(stop_check(problem, chat=True)) for problem in chosen]
    caches = [prefilled(model, prompt) for prompt in prompts]
    context = round(statistics.mean(map(len, prompts))) + args.max_tokens // 2
    sampler = make_sampler(args.temperature, args.top_p)
    config = SamplingConfig(args.temperature, args.top_p, args.max_tokens, batch_size=batch)
    variants = {
        SINGLE: lambda: single_stream(model, tokenizer, prompts[0], args.max_tokens, sampler),
        BARE: lambda: bare_forward(model, batch, context, args.max_tokens),
        BARE_BATCH_CACHE: lambda: bare_batch_cache(model, caches, n, args.max_tokens),
        **{
            f"sample p{s}": lambda s=s: sampled(model, tokenizer, prompts, n, replace(config, prefill_per_step=s), stops)
            for s in schedules
        },
        MLX_LM: lambda: mlx_lm_batch(model, tokenizer, prompts, caches, n, args.max_tokens, sampler),
    }
    bare_forward(model, batch, context, 2)  # warm-up: kernels for this batch's shapes
    runs: dict[str, list[Row]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            runs[name].append(run())
    rows = {name: _median(found) for name, found in runs.items()}
    for row in rows.values():
        row.of_bare = row.decode_rate / rows[BARE].decode_rate
        row.of_batch_cache = row.decode_rate / rows[BARE_BATCH_CACHE].decode_rate
        row.vs_single = row.decode_rate / rows[SINGLE].decode_rate
        row.vs_mlx_lm = row.decode_rate / rows[MLX_LM].decode_rate
    return list(rows.values())


def _median(rows: list[Row]) -> Row:
    return sorted(rows, key=lambda r: r.decode_rate)[(len(rows) - 1) // 2]


def gemm_rate(rows: int, inner: int, outer: int, repeats: int = 20) -> float:
    """GFLOP/s of one float32 matmul of the MLP's shape (decode_bound.py uses it too)."""
    a, w = mx.random.normal((rows, inner)), mx.random.normal((outer, inner))
    mx.eval(a, w)
    for _ in range(3):
        mx.eval(a @ w.T)
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ w.T)
    return 2 * rows * inner * outer * repeats / (time.perf_counter() - start) / 1e9


def print_table(rows: list[Row]) -> None:
    print(f"\n{'method':<16}{'batch':>6}{'prompts':>8}{'tokens':>8}{'decode tok/s':>14}{'of bare':>9}{'of cache':>10}", end="")
    print(f"{'vs single':>11}{'vs mlx-lm':>11}{'wall tok/s':>12}{'first s':>9}{'peak GB':>9}")
    for r in rows:
        print(
            f"{r.method:<16}{r.batch:>6}{r.prompts:>8}{r.tokens:>8}{r.decode_rate:>14.1f}{r.of_bare:>9.2f}{r.of_batch_cache:>10.2f}"
            f"{r.vs_single:>10.1f}x{r.vs_mlx_lm:>10.2f}x{r.wall_rate:>12.1f}{r.first_sample_seconds:>9.1f}"
            f"{r.peak_memory_gb:>9.2f}"
        )
    for r in rows:
        if r.parts:  # the rest of the decoding time: joining prompts between steps, the caller
            shares = [f"{part} {seconds / r.decode_seconds:.0%}" for part, seconds in r.parts.items()]
            rest = 1 - sum(r.parts.values()) / r.decode_seconds
            print(f"  {r.method} at batch {r.batch}, decoding time: {', '.join(shares)}, other {rest:.0%}")


def main() -> None:
    args = setup_arg_parser().parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    schedules = [int(s) for s in args.prefill_per_step.split(",")]
    began = time.perf_counter()
    model, tokenizer = load_model(args.model)
    tokenizer.eos_token_ids = set()  # every sequence decodes exactly max_tokens
    problems = load_problems("humaneval")
    shape = (model.args.hidden_size, model.args.intermediate_size)
    print(f"model {args.model} | BLAS {BLAS} | {platform.machine()} | max_tokens {args.max_tokens} | n {args.n}")
    print(" | ".join(f"GEMM {rows}x{shape[0]}x{shape[1]}: {gemm_rate(rows, *shape):.1f} GFLOP/s" for rows in (32, 256)))
    rows = []
    for batch in batch_sizes:
        found = measure_batch(model, tokenizer, problems, batch, schedules, args)
        print_table(found)
        rows += found
    best = max((r for r in rows if r.method.startswith("sample")), key=lambda r: r.decode_rate)
    print(f"\nbest `sample` batch: {best.batch}, {best.decode_rate:.1f} tok/s, {best.vs_single:.1f}x single-stream")
    elapsed = time.perf_counter() - began
    print(f"total time {elapsed:.0f} s (model loading and warm-up included)")
    if args.json:
        settings = {"model": args.model, "blas": BLAS, "max_tokens": args.max_tokens, "n": args.n, "repeats": args.repeats}
        settings |= {"temperature": args.temperature, "top_p": args.top_p, "seconds": elapsed}
        with open(args.json, "w") as out:
            json.dump(settings | {"rows": [asdict(r) for r in rows]}, out, indent=2)


if __name__ == "__main__":
    main()
