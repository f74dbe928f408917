"""The ceiling on batched sampling's speed-up: the bare model forward step (no sampling,
no stop checks, no Python loop) at batch 1 and 32, and the CPU's GEMM rate at the MLP's
shape, so that `sampling_throughput.py`'s ratio can be read against what the hardware
allows.

    .venv/bin/python benchmarks/decode_bound.py
"""

import time

from mlx_repair import blas

print(blas.preload())  # before mlx.core is imported

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402

from mlx_repair.models import load_model  # noqa: E402

model, tok = load_model("qwen2.5-coder-0.5b-instruct")
params = sum(v.size for _, v in tree_flatten(model.parameters()))
print("params", params / 1e6, "M")
for B in (1, 32):
    cache = make_prompt_cache(model)
    x = mx.array([[1] * 200] * B)
    model(x, cache=cache); mx.eval([c.state for c in cache])
    y = mx.array([[2]] * B)
    for _ in range(3):
        mx.eval(model(y, cache=cache))
    t = time.perf_counter(); steps = 10
    for _ in range(steps):
        mx.eval(model(y, cache=cache))
    dt = (time.perf_counter() - t) / steps
    print(f"batch {B}: {dt*1000:.0f} ms/step, {B/dt:.1f} tok/s, {2*params*B/dt/1e9:.1f} GFLOP/s (2*params*B)")
# GEMM rate at the MLP up-projection's shape
for M in (32, 256):
    a = mx.random.normal((M, 896)); w = mx.random.normal((4864, 896))
    mx.eval(a, w)
    for _ in range(3): mx.eval(a @ w.T)
    t = time.perf_counter(); n = 50
    for _ in range(n): mx.eval(a @ w.T)
    dt = (time.perf_counter() - t) / n
    print(f"GEMM {M}x896x4864: {2*M*896*4864/dt/1e9:.1f} GFLOP/s")
