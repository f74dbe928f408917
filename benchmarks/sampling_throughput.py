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

Real Qwen 0.5B decodes a few tokens per second single stream on a 2-core CPU, so the
defaults take several minutes there; a tiny test model takes seconds:
    .venv/bin/python benchmarks/sampling_throughput.py                      # packaged Qwen
    .venv/bin/python benchmarks/sampling_throughput.py --model smollm2-135m-instruct
    .venv/bin/python benchmarks/sampling_throughput.py --model path/to/mlx-folder --n 8
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
from dataclasses import asdict, dataclass

import mlx.core as mx
from mlx_lm import stream_generate
from mlx_lm.sample_utils import make_sampler

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
    wall_ratio: float = 1.0  # tokens/s against the single stream's
    decode_ratio: float = 1.0

    @property
    def wall_rate(self) -> float:
        return self.tokens / self.seconds

    @property
    def decode_rate(self) -> float:
        return self.tokens / self.decode_seconds


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model spec or MLX folder (default: the packaged Qwen)")
    parser.add_argument("--batch-sizes", default="1,8,16,32", help="comma-separated batch sizes")
    parser.add_argument("--n", type=int, default=1, help="samples per prompt sharing one prefill")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens generated per sequence")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument(
        "--top-p", type=float, default=1.0, help="below 1 adds a full-vocabulary sort per token"
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    return parser


def load(spec: str | None):
    """The model through mlx_repair.model.resolve (packaged names, GGUF, folders), or, before
    that module exists, an MLX folder through mlx_lm.load."""
    try:
        from mlx_repair.model.resolve import DEFAULT_MODEL, load_model
    except ImportError:
        if spec is None:
            raise SystemExit("--model PATH is required until mlx_repair.model.resolve exists")
        import mlx_lm

        return spec, *mlx_lm.load(spec)
    spec = spec or DEFAULT_MODEL
    return spec, *load_model(spec)


def single_stream(model, tokenizer, prompt: list[int], max_tokens: int, sampler) -> Row:
    mx.reset_peak_memory()
    start = time.perf_counter()
    stream = stream_generate(model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler)
    responses = list(stream)
    seconds = time.perf_counter() - start
    last = responses[-1]  # mlx-lm's own decode rate leaves prompt processing out
    decode = last.generation_tokens / last.generation_tps
    return Row("stream_generate", 1, 1, len(responses), seconds, decode, last.peak_memory)


def batched(model, tokenizer, prompts: list[list[int]], n: int, config: SamplingConfig) -> Row:
    mx.reset_peak_memory()
    stats = SamplingStats()
    for _ in sample(model, tokenizer, prompts, n=n, config=config, stats=stats):
        pass
    decode = stats.seconds - stats.prefill_seconds
    batch = len(prompts) * n
    tokens, seconds, peak = stats.generated_tokens, stats.seconds, stats.peak_memory_gb
    return Row("sample", batch, len(prompts), tokens, seconds, decode, peak)


def print_table(rows: list[Row]) -> None:
    print(f"\n{'method':<16}{'batch':>6}{'prompts':>8}{'tokens':>8}{'seconds':>9}", end="")
    print(f"{'wall tok/s':>12}{'vs single':>10}{'decode tok/s':>14}{'vs single':>10}{'peak GB':>9}")
    for r in rows:
        print(
            f"{r.method:<16}{r.batch:>6}{r.prompts:>8}{r.tokens:>8}{r.seconds:>9.1f}"
            f"{r.wall_rate:>12.1f}{r.wall_ratio:>9.1f}x{r.decode_rate:>14.1f}"
            f"{r.decode_ratio:>9.1f}x{r.peak_memory_gb:>9.2f}"
        )


def main() -> None:
    args = setup_arg_parser().parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if any(b % args.n for b in batch_sizes):
        raise SystemExit(f"every batch size must be a multiple of --n {args.n}")
    began = time.perf_counter()
    spec, model, tokenizer = load(args.model)
    tokenizer.eos_token_ids = set()  # every sequence generates exactly max_tokens
    problems = load_problems("humaneval")[: max(batch_sizes) // args.n]
    prompts = [encode(tokenizer, draft_prompt(tokenizer, problem)) for problem in problems]
    sampler = make_sampler(args.temperature, args.top_p)
    print(f"model {spec} | BLAS {BLAS} | {platform.machine()} | max_tokens {args.max_tokens}")
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
        row = batched(model, tokenizer, prompts[: batch // args.n], args.n, config)
        row.wall_ratio = row.wall_rate / base.wall_rate
        row.decode_ratio = row.decode_rate / base.decode_rate
        rows.append(row)
    print_table(rows)
    elapsed = time.perf_counter() - began
    print(f"\ntotal time {elapsed:.0f} s (model loading and warm-up included)")
    if args.json:
        settings = {"model": spec, "blas": BLAS, "max_tokens": args.max_tokens, "n": args.n}
        settings |= {"temperature": args.temperature, "top_p": args.top_p, "seconds": elapsed}
        with open(args.json, "w") as out:
            json.dump(settings | {"rows": [asdict(r) for r in rows]}, out, indent=2)


if __name__ == "__main__":
    main()
