"""How much preloading Debian's OpenBLAS speeds up MLX on Linux CPUs (see mlx_repair/model/blas.py).

Runs the same measurements in two child processes of one run, with and without the
preload (MLX_REPAIR_NO_OPENBLAS=1), because the BLAS is fixed once mlx.core is loaded:
- float32 matmul GFLOP/s (n x n by n x n);
- prompt processing: one forward pass over the first N tokens of the HumanEval prompts
  with each packaged model, in tokens/s, and the max difference of the last-position
  logits between the two runs (the speed-up must not change the numbers).

Run:
    .venv/bin/python benchmarks/blas_speedup.py [--models NAME ...] [--tokens 128] [--n 2048]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> None:
    from mlx_repair.model import blas

    status = blas.preload()
    import mlx.core as mx
    import numpy as np

    from mlx_repair.model.resolve import load_model
    from mlx_repair.problems import load_problems

    a = mx.random.normal((args.n, args.n))
    mx.eval(a @ a)
    start = time.perf_counter()
    for _ in range(args.repeats):
        mx.eval(a @ a)
    gflops = 2 * args.n**3 * args.repeats / (time.perf_counter() - start) / 1e9

    text = "".join(p.prompt for p in load_problems("humaneval"))
    prompt_tps = {}
    for name in args.models:
        model, tokenizer = load_model(name)
        ids = mx.array([tokenizer.encode(text)[: args.tokens]])
        mx.eval(model(ids[:, :8]))  # warm up
        start = time.perf_counter()
        logits = model(ids)[0, -1]
        mx.eval(logits)
        prompt_tps[name] = args.tokens / (time.perf_counter() - start)
        np.save(args.logits / f"{name}.npy", np.array(logits))
    print(json.dumps({"blas": status.name, "gflops": gflops, "prompt_tps": prompt_tps}))


def run_child(args: argparse.Namespace, openblas: bool, logits: Path) -> dict:
    logits.mkdir()
    env = dict(os.environ)
    env.pop("MLX_REPAIR_NO_OPENBLAS", None)
    if not openblas:
        env["MLX_REPAIR_NO_OPENBLAS"] = "1"
    command = [sys.executable, __file__, "--child", "--logits", str(logits), "--models", *args.models,
               "--tokens", str(args.tokens), "--n", str(args.n), "--repeats", str(args.repeats)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--n", type=int, default=2048, help="matmul size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/blas_speedup.md"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--logits", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import numpy as np

    with tempfile.TemporaryDirectory() as scratch:
        folders = {name: Path(scratch) / name for name in ("reference", "openblas")}
        runs = {name: run_child(args, name == "openblas", folders[name]) for name in folders}
        diffs = {
            model: float(np.abs(np.load(folders["openblas"] / f"{model}.npy")
                                - np.load(folders["reference"] / f"{model}.npy")).max())
            for model in args.models
        }
    ref, fast = runs["reference"], runs["openblas"]
    lines = [
        "# OpenBLAS preload: MLX CPU speed with and without it",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Command: "
        f"`.venv/bin/python benchmarks/blas_speedup.py --tokens {args.tokens} --n {args.n}` "
        "(Linux x86-64, 2 cores, mlx[cpu] 0.32.4, Debian libopenblas0-pthread 0.3.21, float32).",
        "",
        "| measurement | bundled reference BLAS | OpenBLAS preloaded | speed-up | max abs logit diff |",
        "|---|---|---|---|---|",
        f"| matmul {args.n}x{args.n}, GFLOP/s | {ref['gflops']:.1f} | {fast['gflops']:.1f} "
        f"| {fast['gflops'] / ref['gflops']:.1f}x | |",
    ]
    for model in args.models:
        slow, quick = ref["prompt_tps"][model], fast["prompt_tps"][model]
        lines.append(
            f"| {model} prompt processing ({args.tokens} tokens), tok/s | {slow:.1f} | {quick:.1f} "
            f"| {quick / slow:.1f}x | {diffs[model]:.1e} |"
        )
    lines += [
        "",
        f"BLAS reported by the two child processes: {ref['blas']} / {fast['blas']}. "
        f"Load average at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(other work on the machine slows both columns, OpenBLAS's threads the most).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
