"""How an adapter moved the log-probabilities of passing and failing answers it was not
trained on: for each preference record of an adapter folder's validation side (records
with a `rejected` answer, as `train --objective preference` writes them), the adapter's
log-probability gain over the base on the passing answer and on the failing one, per
answer and per answer token, and in how many records the passing answer gained more.

A preference adapter that learned something general raises the passing answers of
held-out problems above the failing ones; one that learned a drift (every token a little
likelier) raises the longer answers more. The weights are the folder's adapter (the best
validation step) or, with --checkpoint, its last checkpoint (where a killed run stopped).
The base's scores are cached in --scores, so a second look costs one pass, not two.

    .venv/bin/python benchmarks/preference_margins.py --adapter ADAPTER_DIR --checkpoint \
        --scores DIR/valid-reference.json --out DIR/margins.json
"""

import argparse
import json
import statistics
from pathlib import Path

from mlx_repair.model import blas

print(blas.preload())  # before mlx.core is imported

import mlx.core as mx  # noqa: E402

from mlx_repair.config import DEFAULT_MODEL  # noqa: E402
from mlx_repair.mining.dataset import VALID_FILE, data_hash, read_jsonl  # noqa: E402
from mlx_repair.model.resolve import load_model  # noqa: E402
from mlx_repair.training import preference  # noqa: E402
from mlx_repair.training.checkpoints import ADAPTER_FILE, CHECKPOINT_FILE  # noqa: E402
from mlx_repair.training.config import TrainConfig  # noqa: E402
from mlx_repair.training.logits import answer_start  # noqa: E402
from mlx_repair.training.lora import add_adapters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="an adapter folder `train --objective preference` wrote")
    parser.add_argument("--checkpoint", action="store_true", help="its last checkpoint's weights, not the best step's")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--scores", required=True, help="where the base's scores are cached (JSON)")
    parser.add_argument("--out", help="write the per-record gains and the summary here (JSON)")
    args = parser.parse_args()

    folder = Path(args.adapter)
    manifest_config = json.loads((folder / "adapter_config.json").read_text())
    model, tokenizer = load_model(args.model)
    config = TrainConfig(num_layers=manifest_config["num_layers"], **manifest_config["lora_parameters"])
    add_adapters(model, config)
    examples, dropped = preference.tokenize_preferences(read_jsonl(folder / VALID_FILE), tokenizer, config.max_seq_length)
    key = preference.reference_key(args.model, data_hash(folder), None, config.max_seq_length)
    examples = scored(model, examples, Path(args.scores), key)
    weights = mx.load(str(folder / (CHECKPOINT_FILE if args.checkpoint else ADAPTER_FILE)))
    prefix = "adapter." if args.checkpoint else ""
    model.load_weights([(k.removeprefix(prefix), v) for k, v in weights.items() if k.startswith(prefix)], strict=False)
    model.eval()
    rows = [gains(model, example) for example in examples]
    summary = {
        "adapter": str(folder),
        "weights": "checkpoint" if args.checkpoint else "best step",
        "records": len(rows),
        "dropped_for_length": dropped,
        "mean_gain": {k: statistics.mean(r[k] for r in rows) for k in rows[0] if k.startswith("gain")},
        "passing_gained_more": sum(r["gain_passing"] > r["gain_failing"] for r in rows),
        "passing_gained_more_per_token": sum(r["gain_per_token_passing"] > r["gain_per_token_failing"] for r in rows),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "records": rows}, indent=1) + "\n")


def scored(model, examples, path: Path, key: str):
    generator = preference.with_reference(model, examples, [], 1, path, key)
    while True:
        try:
            print(next(generator).message, flush=True)
        except StopIteration as done:
            return done.value[0]


def gains(model, example) -> dict:
    batch, lengths, _ = preference.batch_arrays([example])
    values, counts = preference.answer_logprobs(model)(model, batch, lengths, answer_start(lengths))
    (passing, failing), (n_passing, n_failing) = values.tolist(), counts.tolist()
    gain_passing, gain_failing = passing - example.reference[0], failing - example.reference[1]
    return {
        "tokens_passing": n_passing,
        "tokens_failing": n_failing,
        "gain_passing": gain_passing,
        "gain_failing": gain_failing,
        "gain_per_token_passing": gain_passing / n_passing,
        "gain_per_token_failing": gain_failing / n_failing,
    }


if __name__ == "__main__":
    main()
