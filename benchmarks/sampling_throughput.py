"""Aggregate generation throughput of `mlx_repair.generation.sampling.sample` at batch 1, 8, 16, 32
against mlx-lm's single-stream `stream_generate`: same model, same process, same sampler.

Generation on a CPU is memory bound, so a batch reads the weights once for many
sequences; the issue's goal is >= 8x at batch 32 on the packaged Qwen 0.5B, and a
0.8B-class model within 6 GB of peak memory. Each batch size runs `batch / n` HumanEval
draft prompts with `n` samples each (n = 1: every sequence pays its own prefill, the
drafting case; n = 8: one prefill shared by 8 samples, the sampling case). EOS is
ignored so that every sequence generates exactly --max-tokens and rows compare equal work.

Two rates per row: "wall" counts prefill time too (what a user waits for; with few
generated tokens per prompt it is dominated by prefill), "decode" leaves it out (the
batching gain itself). Peak memory includes the weights.

`--prefill-per-step 0,256` compares prefill schedules in the same run: 0 prefills every
prompt before the first decoding step; 256 (the default) starts decoding after the first
prompt and prefills about 256 prompt tokens between steps. "first s" is when the first
sample finished; "vs first schedule" is the wall rate against the first schedule listed,
at the same batch size. `--repeats` alternates the schedules that many times and keeps
each one's median run. Use a realistic --max-tokens for this (HumanEval drafts average
~280 tokens): with 32, a handful of extra, partly filled steps weigh more than they do
in a real run.

Real Qwen 0.5B decodes a few tokens per second single stream on a 2-core CPU, so the
defaults take several minutes there; a tiny test model takes seconds:
    .venv/bin/python benchmarks/sampling_throughput.py                      # packaged Qwen
    .venv/bin/python benchmarks/sampling_throughput.py --model smollm2-135m-instruct
    .venv/bin/python benchmarks/sampling_throughput.py --model path/to/mlx-folder --n 8
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
import time
from dataclasses import asdict, dataclass, replace

import mlx.core as mx
from mlx_lm import stream_generate
from mlx_lm.sample_utils import make_sampler

from mlx_repair.config import DEFAULT_MODEL
from mlx_repair.model.resolve import load_model
from mlx_repair.problems import load_problems
from mlx_repair.generation.prompts import draft_prompt, encode
from mlx_repair.generation.sampling import SamplingConfig, SamplingStats, sample


@dataclass
class Row:
    method: str
    batch: int
    prompts: int
    tokens: int
    seconds: float  # prefill included
    decode_seconds: float
    peak_memory_gb: float
    first_sample_seconds: float = 0.0  # prefill included
    wall_ratio: float = 1.0  # tokens/s against the single stream's
    decode_ratio: float = 1.0
    schedule_ratio: float = 1.0  # wall tokens/s against the first schedule's at this batch

    @property
    def wall_rate(self) -> float:
        return self.tokens / self.seconds

    @property
    def decode_rate(self) -> float:
        return self.tokens / self.decode_seconds


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="packaged name, .gguf, MLX folder (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,8,16,32", help="comma-separated batch sizes")
    parser.add_argument("--n", type=int, default=1, help="samples per prompt sharing one prefill")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per sequence")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument(
        "--top-p", type=float, default=1.0, help="below 1 adds a full-vocabulary sort per token"
    )
    parser.add_argument(
        "--prefill-per-step",
        default=str(SamplingConfig.prefill_per_step),
        help="comma-separated prefill schedules to compare (prompt tokens between decoding steps; 0: all first)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per batch size and schedule, alternated; median kept")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser


def single_stream(model, tokenizer, prompt: list[int], max_tokens: int, sampler) -> Row:
    mx.reset_peak_memory()
    start = time.perf_counter()
    stream = stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler)
    responses = list(stream)
    seconds = time.perf_counter() - start
    last = responses[-1]  # mlx-lm's own decode rate leaves prompt processing out
    decode = last.generation_tokens / last.generation_tps
    return Row("stream_generate", 1, 1, len(responses), seconds, decode, last.peak_memory, seconds)


def batched(model, tokenizer, prompts: list[list[int]], n: int, config: SamplingConfig) -> Row:
    mx.reset_peak_memory()
    stats = SamplingStats()
    start, first = time.perf_counter(), 0.0
    for _ in sample(model, tokenizer, prompts, n=n, config=config, stats=stats):
        first = first or time.perf_counter() - start
    decode = stats.seconds - stats.prefill_seconds
    batch = len(prompts) * n
    tokens, seconds, peak = stats.generated_tokens, stats.seconds, stats.peak_memory_gb
    method = f"sample p{config.prefill_per_step}"
    return Row(method, batch, len(prompts), tokens, seconds, decode, peak, first)


def compare_schedules(model, tokenizer, prompts, n: int, config: SamplingConfig, schedules: list[int], repeats: int) -> list[Row]:
    """One row per schedule at this batch size: the median (by wall rate) of `repeats` runs,
    the schedules alternated so that a machine getting busier slows them alike."""
    runs: dict[int, list[Row]] = {s: [] for s in schedules}
    for _ in range(repeats):
        for schedule in schedules:
            runs[schedule].append(batched(model, tokenizer, prompts, n, replace(config, prefill_per_step=schedule)))
    rows = [_median(runs[s]) for s in schedules]
    for row in rows:
        row.schedule_ratio = row.wall_rate / rows[0].wall_rate
    return rows


def _median(rows: list[Row]) -> Row:
    return sorted(rows, key=lambda r: r.wall_rate)[(len(rows) - 1) // 2]


def print_table(rows: list[Row]) -> None:
    print(f"\n{'method':<16}{'batch':>6}{'prompts':>8}{'tokens':>8}{'seconds':>9}{'first s':>9}", end="")
    print(f"{'wall tok/s':>12}{'vs single':>10}{'decode tok/s':>14}{'vs single':>10}{'peak GB':>9}", end="")
    print(f"{'vs first schedule':>19}")
    for r in rows:
        print(
            f"{r.method:<16}{r.batch:>6}{r.prompts:>8}{r.tokens:>8}{r.seconds:>9.1f}{r.first_sample_seconds:>9.1f}"
            f"{r.wall_rate:>12.1f}{r.wall_ratio:>9.1f}x{r.decode_rate:>14.1f}"
            f"{r.decode_ratio:>9.1f}x{r.peak_memory_gb:>9.2f}{r.schedule_ratio:>18.3f}x"
        )


def main() -> None:
    args = setup_arg_parser().parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    schedules = [int(s) for s in args.prefill_per_step.split(",")]
    if any(b % args.n for b in batch_sizes):
        raise SystemExit(f"every batch size must be a multiple of --n {args.n}")
    began = time.perf_counter()
    model, tokenizer = load_model(args.model)
    tokenizer.eos_token_ids = set()  # every sequence generates exactly max_tokens
    problems = load_problems("humaneval")[: max(batch_sizes) // args.n]
    prompts = [encode(tokenizer, draft_prompt(tokenizer, problem)) for problem in problems]
    sampler = make_sampler(args.temperature, args.top_p)
    print(f"model {args.model} | BLAS {BLAS} | {platform.machine()} | max_tokens {args.max_tokens}")
    average = sum(map(len, prompts)) / len(prompts)
    print(f"prompts: HumanEval draft prompts ({average:.0f} tokens on average), n={args.n} each")

    # Warm-up: MLX compiles CPU kernels with g++ on first use; keep that out of the timings.
    warm_up = SamplingConfig(args.temperature, args.top_p, max_tokens=2)
    list(sample(model, tokenizer, prompts[:2], n=1, config=warm_up))
    single_stream(model, tokenizer, prompts[0], 2, sampler)

    base = single_stream(model, tokenizer, prompts[0], args.max_tokens, sampler)
    rows = [base]
    for batch in batch_sizes:
        config = SamplingConfig(args.temperature, args.top_p, args.max_tokens, batch_size=batch)
        for row in compare_schedules(model, tokenizer, prompts[: batch // args.n], args.n, config, schedules, args.repeats):
            row.wall_ratio = row.wall_rate / base.wall_rate
            row.decode_ratio = row.decode_rate / base.decode_rate
            rows.append(row)
    print_table(rows)
    elapsed = time.perf_counter() - began
    print(f"\ntotal time {elapsed:.0f} s (model loading and warm-up included)")
    if args.json:
        settings = {"model": args.model, "blas": BLAS, "max_tokens": args.max_tokens, "n": args.n, "repeats": args.repeats}
        settings |= {"temperature": args.temperature, "top_p": args.top_p, "seconds": elapsed}
        with open(args.json, "w") as out:
            json.dump(settings | {"rows": [asdict(r) for r in rows]}, out, indent=2)


if __name__ == "__main__":
    main()
