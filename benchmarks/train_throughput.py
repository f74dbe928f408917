"""Training speed and memory: mlx-repair's trainer against the `mlx_lm.lora` command, and
the peak memory of a Qwen3.5-0.8B-class model.

compare (default): the same data and settings trained twice, each in a fresh process
with OpenBLAS preloaded: once with `mlx_repair.training.lora.train_adapter`, once with mlx-lm's
own `lora` command (`mlx_lm.lora.main()` with `--train --data DIR`, observed through a
training callback for its reports). Both run batch 1 for two epochs and report once per
epoch; the second epoch is compared (both have processed exactly the same records by
then, and compilation and warm-up fall in the first). Tokens are those the loss counts
(the answers: prompts are masked), mlx-lm's own measure. Goal: ratio >= 1.0.

memory: a model of Qwen3.5-0.8B's published shape (mlx-lm `qwen3_5`) with random
weights, in this machine's dtype (float32 on CPU, bfloat16 on Metal): peak memory while
training a LoRA (cpu preset, batch 1, two steps on the same data) and while generating
(a ~500-token prompt, 32 new tokens). Goals: <= 10 GB training, <= 6 GB inference.
Shape source: Qwen/Qwen3.5-0.8B's config.json as mirrored by two independent public
test fixtures (a C++ qwen35 config-parser test and a C++ ModelConfig test): 24 layers
[3 Gated DeltaNet + 1 full attention] x 6, hidden 1024, MLP 3584, 8 heads / 2 KV heads of
256, linear attention 16 key / 16 value heads of 128, conv 4, vocab 248320, tied
embeddings, rope theta 1e7, partial rotary 0.25, mrope section [11, 11, 10].

Slow on a 2-core CPU (Qwen 0.5B: ~20 s per step):
    .venv/bin/python benchmarks/train_throughput.py                   # compare, packaged Qwen
    .venv/bin/python benchmarks/train_throughput.py --mode memory
    .venv/bin/python benchmarks/train_throughput.py --model path/to/mlx-folder --records 2
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlx_repair.config import DEFAULT_MODEL

QWEN35_08B = {
    "model_type": "qwen3_5",
    "tie_word_embeddings": True,
    "text_config": {
        "model_type": "qwen3_5_text",
        "vocab_size": 248320,
        "hidden_size": 1024,
        "intermediate_size": 3584,
        "num_hidden_layers": 24,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 16,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 262144,
        "tie_word_embeddings": True,
        "rope_parameters": {
            "type": "default",
            "rope_theta": 10000000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [11, 11, 10],
        },
    },
}
# Mutations that turn a canonical solution into a plausible broken attempt.
MUTATIONS = (
    (" < ", " <= "), (" == ", " != "), (" + ", " - "), ("True", "False"), ("[0]", "[-1]"), ("1", "2"),
)


# ---- data -------------------------------------------------------------------------------


def synthetic_data(folder: Path, records: int) -> Path:
    """HumanEval-shaped repair records: a mutated canonical solution, feedback in the
    sandbox's format, and the canonical solution as the fix."""
    from mlx_repair.mining.dataset import answer_message
    from mlx_repair.problems import load_problems
    from mlx_repair.generation.prompts import repair_messages

    rows = []
    for problem in load_problems("humaneval"):
        fixed = problem.prompt + problem.canonical_solution
        broken = _mutate(fixed, problem.prompt)
        if broken is None:
            continue
        test = next(line.strip() for line in problem.test.splitlines() if line.strip().startswith("assert"))
        feedback = f"Test: {test}\nError: AssertionError"
        messages = repair_messages(problem, broken, feedback) + [answer_message(fixed)]
        rows.append({"messages": messages, "task_id": problem.task_id, "kind": "repair"})
        if len(rows) == records + 1:
            break
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:records]))
    (folder / "valid.jsonl").write_text(json.dumps(rows[records]) + "\n")
    return folder


def _mutate(code: str, prompt: str) -> str | None:
    body = code[len(prompt):]
    for old, new in MUTATIONS:
        if old in body:
            return prompt + body.replace(old, new, 1)
    return None


# ---- children: one measurement per fresh process ------------------------------------------


def child_ours(model: str, data: str, records: int, num_layers: int) -> dict:
    from mlx_repair.events import TrainStep
    from mlx_repair.training.config import TrainConfig
    from mlx_repair.training.lora import train_adapter

    config = TrainConfig(
        num_layers=num_layers, batch_size=1, iters=2 * records, steps_per_report=records,
        steps_per_eval=10**6, val_batches=1, save_every=10**6, learning_rate=1e-4,
    )
    with tempfile.TemporaryDirectory() as out:
        events = list(train_adapter(model, data, out, config))
    reports = [e for e in events if isinstance(e, TrainStep) and e.iteration]
    return {"tokens_per_second": reports[-1].tokens_per_second, "peak_memory_gb": reports[-1].peak_memory_gb,
            "loss": reports[-1].loss}


def child_mlx_lm(model: str, data: str, records: int, num_layers: int) -> dict:
    """mlx-lm's `lora` command, run as `main()` with its own argument parsing; its reports
    are caught by handing it a callback where it looks for the wandb/swanlab ones."""
    import mlx_lm.lora
    from mlx_lm.tuner.callbacks import TrainingCallback

    from mlx_repair.model.resolve import resolve_model

    reports = []

    class Catch(TrainingCallback):
        def on_train_loss_report(self, info):
            reports.append(info)

    mlx_lm.lora.get_reporting_callbacks = lambda *args, **kwargs: Catch()
    with tempfile.TemporaryDirectory() as out:
        sys.argv = [
            "mlx_lm.lora", "--model", str(resolve_model(model).path), "--train", "--data", data,
            "--mask-prompt", "--fine-tune-type", "lora", "--num-layers", str(num_layers), "--batch-size", "1",
            "--iters", str(2 * records), "--steps-per-report", str(records), "--steps-per-eval", str(10**6),
            "--val-batches", "1", "--save-every", str(10**6), "--learning-rate", "1e-4",
            "--max-seq-length", "2048", "--adapter-path", out, "--seed", "0",
        ]
        mlx_lm.lora.main()
    last = reports[-1]
    return {"tokens_per_second": last["tokens_per_second"], "peak_memory_gb": last["peak_memory"],
            "loss": last["train_loss"]}


def qwen35_model():
    """Qwen3.5-0.8B's shape with random weights, in this machine's dtype, and a tokenizer
    (the packaged Qwen's: any ids below its vocabulary are valid for the model)."""
    import mlx.core as mx
    from mlx_lm.models import qwen3_5

    from mlx_repair.model.resolve import default_dtype, load_model

    _, tokenizer = load_model(DEFAULT_MODEL)
    model = qwen3_5.Model(qwen3_5.ModelArgs.from_dict(QWEN35_08B))
    model.set_dtype(getattr(mx, default_dtype()))
    mx.eval(model.parameters())
    return model, tokenizer


def child_train_08b(data: str, grad_checkpoint: int) -> dict:
    from mlx.utils import tree_flatten

    from mlx_repair.events import TrainStep
    from mlx_repair.training.config import preset
    from mlx_repair.training.lora import train_adapter

    model, tokenizer = qwen35_model()
    weights = [v for _, v in tree_flatten(model.parameters())]
    config = preset("cpu", iters=2, steps_per_report=1, val_batches=1, steps_per_eval=10**6, compile=False,
                    grad_checkpoint=bool(grad_checkpoint))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        events = list(train_adapter((model, tokenizer), data, out, config))
    steps = [e for e in events if isinstance(e, TrainStep) and e.iteration]
    return {"parameters": sum(w.size for w in weights), "dtype": str(weights[0].dtype),
            "peak_memory_gb": max(e.peak_memory_gb for e in steps), "seconds": time.perf_counter() - started}


def child_infer_08b(data: str) -> dict:
    import mlx.core as mx
    from mlx_lm import stream_generate

    from mlx_repair.mining.dataset import read_jsonl
    from mlx_repair.generation.prompts import render

    model, tokenizer = qwen35_model()
    mx.reset_peak_memory()
    record = read_jsonl(Path(data) / "train.jsonl")[0]
    prompt = render(tokenizer, record["messages"][:-1])
    for response in stream_generate(model, tokenizer, prompt, max_tokens=32):
        pass
    return {"prompt_tokens": response.prompt_tokens, "peak_memory_gb": mx.get_peak_memory() / 1e9,
            "generation_tps": response.generation_tps}


CHILDREN = {
    "ours": child_ours, "mlx_lm": child_mlx_lm, "train_08b": child_train_08b, "infer_08b": child_infer_08b,
}


def run_child(name: str, *args) -> dict:
    """Run one measurement in a fresh process (this script with --child), so peaks and
    compilation caches do not leak from one to the next."""
    argv = [sys.executable, __file__, "--child", name, *map(str, args)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


# ---- modes ------------------------------------------------------------------------------


def compare(args, data: Path) -> None:
    ours = run_child("ours", args.model, data, args.records, args.num_layers)
    theirs = run_child("mlx_lm", args.model, data, args.records, args.num_layers)
    print(f"\n## Training throughput: {args.model}, {args.records} records x 2 epochs, batch 1, "
          f"LoRA rank 8 on the last {args.num_layers} layers, second epoch\n")
    print("| trainer | answer tokens/s | peak memory GB | loss (epoch 2) | wall s |")
    print("|---|---|---|---|---|")
    for name, row in (("mlx-repair train_adapter", ours), ("mlx_lm lora command", theirs)):
        print(f"| {name} | {row['tokens_per_second']:.1f} | {row['peak_memory_gb']:.2f} | "
              f"{row['loss']:.3f} | {row['wall_seconds']:.0f} |")
    speed = ours["tokens_per_second"] / theirs["tokens_per_second"]
    memory_ratio = ours["peak_memory_gb"] / theirs["peak_memory_gb"]
    print(f"\nspeed ratio (mlx-repair / mlx-lm): {speed:.2f} (goal >= 1.0); memory ratio: {memory_ratio:.2f}")


def memory(data: Path) -> None:
    """Training with and without gradient checkpointing: in training, mlx-lm runs Gated
    DeltaNet as a per-token loop (its Metal kernel has no backward) whose states are all
    kept for the backward pass unless each layer is recomputed."""
    trains = [run_child("train_08b", data, checkpointing) for checkpointing in (0, 1)]
    infer = run_child("infer_08b", data)
    shape = f"{trains[0]['parameters'] / 1e9:.2f}B parameters, {trains[0]['dtype']}"
    print(f"\n## Qwen3.5-0.8B shape, random weights ({shape})\n")
    print("| stage | peak memory GB | goal | time |")
    print("|---|---|---|---|")
    for train, how in zip(trains, ("", ", gradient checkpointing")):
        print(f"| LoRA training (cpu preset: last 8 layers, batch 1, 2 steps{how}) | "
              f"{train['peak_memory_gb']:.2f} | <= 10 | {train['seconds']:.0f} s |")
    print(f"| generation ({infer['prompt_tokens']}-token prompt, 32 new tokens) | "
          f"{infer['peak_memory_gb']:.2f} | <= 6 | {infer['generation_tps']:.1f} tok/s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("compare", "memory", "all"), default="compare")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", help="a folder with train.jsonl/valid.jsonl (default: synthetic repairs)")
    parser.add_argument("--records", type=int, default=4, help="training records (synthetic data)")
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *rest = args.child
        converted = [int(a) if a.isdigit() else a for a in rest]
        print(json.dumps(CHILDREN[name](*converted)))
        return
    import mlx.core as mx
    import mlx_lm

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()} {platform.system()}, "
          f"mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}, BLAS {BLAS}")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data) if args.data else synthetic_data(Path(scratch) / "data", args.records)
        if args.data:
            args.records = sum(1 for line in (data / "train.jsonl").open() if line.strip())
        if args.mode in ("compare", "all"):
            compare(args, data)
        if args.mode in ("memory", "all"):
            memory(data)


if __name__ == "__main__":
    main()
