"""Is the PEFT export right? transformers + PEFT logits against MLX base + adapter.

Makes a non-zero adapter on a base model, either trained for a few steps by
`train.train_adapter` (the code path `mlx-repair train` uses; on HumanEval canonical
solutions, as "solve" records) or random (lora_a and lora_b, and for DoRA a perturbed
magnitude, on the last N blocks); exports it with `mlx-repair export --format peft`; then
runs the same token ids through
- MLX: `mlx_lm.load(base, adapter_path=adapter)`;
- torch: `AutoModelForCausalLM.from_pretrained(base)` + `PeftModel.from_pretrained(export)`;
and reports the largest logit difference, how often the argmax agrees, and how far the
adapter moves the logits at all (so a match cannot come from an adapter that does nothing).
tests/test_export.py runs the same functions on a tiny model.

Run (needs torch and peft, which are not mlx-repair dependencies):
    .venv/bin/pip install peft==0.21.2
    .venv/bin/python benchmarks/peft_export_check.py [--model qwen2.5-coder-0.5b-instruct] \\
        [--train-steps 6 | --random] [--dora] [--layers 8]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "def fizzbuzz(n):\n    ",
    "import math\n\ndef is_prime(n: int) -> bool:\n    \"\"\"Return True if n is prime.\"\"\"\n",
    "The tests failed.\nInput: [3, 1, 2]\nExpected: [1, 2, 3]\nGot: [3, 1, 2]\nFix the function:",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):",
]


def random_adapter(spec: str, out_dir, num_layers: int, fine_tune_type: str = "lora", rank: int = 8,
                   scale: float = 20.0, seed: int = 0, b_std: float = 0.02) -> Path:
    """Write adapters.safetensors, adapter_config.json and manifest.json for a random,
    non-zero adapter on the last `num_layers` blocks of the model `spec`."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import save_config

    from mlx_repair.model.resolve import resolve_model
    from mlx_repair.training.manifest import base_model_info

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, _ = load(str(resolve_model(spec).path))
    model.freeze()
    mx.random.seed(seed)
    params = {"rank": rank, "scale": scale, "dropout": 0.0}
    linear_to_lora_layers(model, num_layers, params, use_dora=fine_tune_type == "dora")
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = b_std * mx.random.normal(module.lora_b.shape)  # mlx-lm starts it at zero
            if hasattr(module, "m"):  # DoRA: a magnitude that is not the base weight's norm
                module.m = module.m * (1 + 0.1 * mx.random.normal(module.m.shape))
    mx.save_safetensors(str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    save_config({"fine_tune_type": fine_tune_type, "num_layers": num_layers, "lora_parameters": params,
                 "model": spec}, out / "adapter_config.json")
    manifest = {"base_model": base_model_info(spec)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def trained_adapter(spec: str, out_dir, num_layers: int, fine_tune_type: str = "lora", steps: int = 6) -> Path:
    """An adapter trained by `train.train_adapter` for `steps` steps (the cpu preset, its
    learning rate 1e-4) on HumanEval canonical solutions."""
    from mlx_repair.mining.dataset import Dataset, answer_message
    from mlx_repair.problems import load_problems
    from mlx_repair.generation.prompts import draft_messages
    from mlx_repair.training.config import preset
    from mlx_repair.training.lora import train_adapter

    problems = load_problems("humaneval")[:12]
    records = [{"messages": draft_messages(p) + [answer_message(p.prompt + p.canonical_solution)]} for p in problems]
    ids = [p.task_id for p in problems]
    data = Dataset(records[:10], records[10:], ids[:10], ids[10:], {"train": {"solve": {"draft": 10}}, "valid": {"solve": {"draft": 2}}})
    config = preset("cpu", fine_tune_type=fine_tune_type, num_layers=num_layers, iters=steps,
                    max_seq_length=1024, steps_per_eval=steps)
    for _ in train_adapter(spec, data, out_dir, config):
        pass
    return Path(out_dir)


def token_batches(base_dir, prompts=PROMPTS) -> list[list[int]]:
    from mlx_lm.tokenizer_utils import load

    tokenizer = load(Path(base_dir))
    return [tokenizer.encode(prompt) for prompt in prompts]


def mlx_logits(base_dir, adapter_dir, batches) -> list:
    """Float32 numpy logits of each token list, base (adapter_dir None) or base + adapter."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    model, _ = load(str(base_dir), adapter_path=str(adapter_dir) if adapter_dir else None)
    model.set_dtype(mx.float32)
    return [np.array(model(mx.array([tokens]))[0].astype(mx.float32)) for tokens in batches]


def peft_logits(base_dir, export_dir, batches) -> list:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(export_dir)).eval()
    with torch.no_grad():
        return [model(torch.tensor([tokens])).logits[0].numpy() for tokens in batches]


def compare(expected: list, found: list, base: list) -> dict:
    """Largest |difference| and argmax agreement of `found` vs `expected`, and how far
    `expected` is from the base model's logits (the adapter's own effect)."""
    import numpy as np

    diff = max(float(np.abs(e - f).max()) for e, f in zip(expected, found))
    agree = np.concatenate([e.argmax(-1) == f.argmax(-1) for e, f in zip(expected, found)])
    moved = np.concatenate([e.argmax(-1) != b.argmax(-1) for e, b in zip(expected, base)])
    shift = max(float(np.abs(e - b).max()) for e, b in zip(expected, base))
    return {
        "max_abs_diff": diff,
        "argmax_agreement": float(agree.mean()),
        "positions": int(agree.size),
        "adapter_max_logit_shift": shift,
        "adapter_argmax_changed": float(moved.mean()),
    }


def check(spec: str, work_dir, num_layers: int, fine_tune_type: str = "lora", train_steps: int = 0) -> dict:
    """The whole check in `work_dir`: adapter (trained when train_steps, else random), PEFT
    export, MLX and PEFT logits, comparison."""
    from mlx_repair.publish.export import export_adapter
    from mlx_repair.model.resolve import resolve_model

    work = Path(work_dir)
    if train_steps:
        adapter = trained_adapter(spec, work / "adapter", num_layers, fine_tune_type, train_steps)
    else:
        adapter = random_adapter(spec, work / "adapter", num_layers, fine_tune_type)
    export = export_adapter(adapter, "peft", work / "peft")
    base_dir = resolve_model(spec).path
    batches = token_batches(base_dir)
    expected = mlx_logits(base_dir, adapter, batches)
    base = mlx_logits(base_dir, None, batches)
    return compare(expected, peft_logits(base_dir, export, batches), base)


def header() -> str:
    """The results file's first lines: what is compared, on what software."""
    from importlib.metadata import version

    packages = ", ".join(f"{name} {version(name)}" for name in ("mlx", "mlx-lm", "torch", "transformers", "peft"))
    return (
        "# PEFT export check\n\n"
        "Logits of transformers + PEFT (the exported adapter) against MLX base + adapter, float32 on CPU "
        "in both, on every position of 4 prompts; see benchmarks/peft_export_check.py.\n"
        f"Software: {packages}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--layers", type=int, default=8, help="adapted blocks (the cpu preset's 8)")
    parser.add_argument("--dora", action="store_true")
    parser.add_argument("--train-steps", type=int, default=6, help="train the adapter this many steps")
    parser.add_argument("--random", action="store_true", help="a random non-zero adapter instead of a trained one")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "peft_export_check.md"))
    args = parser.parse_args()

    from mlx_repair.model import blas

    blas.preload()

    kind = "dora" if args.dora else "lora"
    steps = 0 if args.random else args.train_steps
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        result = check(args.model, work, args.layers, kind, steps)
    seconds = time.perf_counter() - start
    command = "python benchmarks/peft_export_check.py " + " ".join(sys.argv[1:])
    lines = [
        f"## {args.model}, {kind}, last {args.layers} blocks, rank 8, scale 20 (lora_alpha 160), "
        + (f"trained {steps} steps (cpu preset, HumanEval canonical solutions)" if steps else "random non-zero"),
        "",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s",
        f"- max |logit difference|, transformers + PEFT vs MLX base + adapter: {result['max_abs_diff']:.2e}",
        f"- argmax agreement: {100 * result['argmax_agreement']:.1f}% of {result['positions']} positions "
        f"({len(PROMPTS)} prompts)",
        f"- the adapter's own effect: max logit shift {result['adapter_max_logit_shift']:.2f}, argmax changed "
        f"at {100 * result['adapter_argmax_changed']:.1f}% of positions vs the base model",
    ]
    print("\n".join(lines))
    out = Path(args.out)
    previous = out.read_text() if out.is_file() else header()
    out.write_text(previous.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
