"""The ceiling on batched sampling's speed-up: the bare model forward step (no sampling,
no stop checks, no Python loop) at batch 32 against mlx-lm's single-stream
`stream_generate`, in the same process, alternated and repeated (the machine is shared and
noisy); plus the CPU's GEMM rate at the MLP's shape. Read `sampling_throughput.py`'s
ratio against this one: no sampling loop can beat the bare forward.

    .venv/bin/python benchmarks/decode_bound.py [--repeats 3]
"""

import argparse
import statistics
import time

from mlx_repair.model import blas

print(blas.preload())  # before mlx.core is imported

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm import stream_generate  # noqa: E402
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402

from mlx_repair.generation import prompts  # noqa: E402
from mlx_repair.model.resolve import load_model  # noqa: E402
from mlx_repair.problems import load_problems  # noqa: E402
from sampling_throughput import gemm_rate  # noqa: E402  (benchmarks/ is the script's path)

CONTEXT = 200  # KV cache length the decode steps attend over
STEPS = 10


def bare_forward(model, batch: int) -> float:
    """Tokens per second of the model call alone, one token per sequence per step."""
    cache = make_prompt_cache(model)
    model(mx.array([[1] * CONTEXT] * batch), cache=cache)
    mx.eval([c.state for c in cache])
    step = mx.array([[2]] * batch)
    for _ in range(3):
        mx.eval(model(step, cache=cache))
    start = time.perf_counter()
    for _ in range(STEPS):
        mx.eval(model(step, cache=cache))
    return batch * STEPS / (time.perf_counter() - start)


def single_stream(model, tokenizer, prompt: list[int]) -> float:
    """mlx-lm's own decode rate (prompt processing left out), greedy, 32 tokens."""
    last = None
    for last in stream_generate(model, tokenizer, prompt, max_tokens=32, sampler=make_sampler(0.0)):
        pass
    return last.generation_tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer = load_model("qwen2.5-coder-0.5b-instruct")
    params = sum(v.size for _, v in tree_flatten(model.parameters()))
    problem = load_problems("humaneval")[0]
    prompt = prompts.encode(tokenizer, prompts.draft_prompt(tokenizer, problem))
    single, batched = [], []
    for _ in range(args.repeats):
        single.append(single_stream(model, tokenizer, prompt))
        batched.append(bare_forward(model, 32))
    s, b = statistics.median(single), statistics.median(batched)
    print(f"stream_generate, batch 1:  {s:.1f} tok/s  (runs: {', '.join(f'{x:.1f}' for x in single)})")
    print(f"bare forward, batch 32:   {b:.1f} tok/s  (runs: {', '.join(f'{x:.1f}' for x in batched)}),"
          f" {2 * params * b / 1e9:.1f} GFLOP/s at 2 x {params / 1e6:.0f}M params per token")
    print(f"ceiling on the batch-32 speed-up: {b / s:.1f}x (medians of {args.repeats})")
    for rows in (32, 256):
        print(f"GEMM {rows}x896x4864: {gemm_rate(rows, 896, 4864, repeats=50):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
