"""LoRA training on tiny models: loss goes down, the folder loads in mlx-lm, DoRA and
qwen3_5 work, and a run killed with SIGKILL resumes to the same adapter."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mlx_repair.mining.dataset import MixConfig, prepare_dataset
from mlx_repair.events import Log, TrainStep
from mlx_repair.mining.store import Store
from mlx_repair.training.checkpoints import CHECKPOINT_FILE
from mlx_repair.training.config import TrainConfig, preset
from mlx_repair.training.lora import train_adapter
from test_dataset import PROBLEMS, fill_store

FAST = dict(batch_size=2, learning_rate=1e-3, steps_per_report=2, steps_per_eval=4, save_every=2)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Weight hashes are cached under MLX_REPAIR_CACHE: keep the tests' out of ~/.cache."""
    monkeypatch.setenv("MLX_REPAIR_CACHE", str(tmp_path / "cache"))


def mined_data(root, mix: MixConfig):
    """The training records a filled store makes with `mix`, written under `root`."""
    with Store.open(root / "run") as store:
        store.start_run("r", "tiny", "test", {}, {"train": [p.task_id for p in PROBLEMS], "eval": []})
        fill_store(store)
        prepare_dataset(store, PROBLEMS, root / "data", mix)
    return root / "data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return mined_data(tmp_path_factory.mktemp("pairs"), MixConfig(valid_fraction=0.2))


def run(model, data, out, config, **kwargs):
    """All events of a training run, and the manifest it returns."""
    events = []
    generator = train_adapter(model, data, out, config, **kwargs)
    while True:
        try:
            events.append(next(generator))
        except StopIteration as done:
            return events, done.value


def logits(model_dir, adapter=None):
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
    tokens = mx.array([tokenizer.encode("def f(x):\n    return 2 * x\n")])
    return model(tokens)


def test_training_lowers_the_loss_and_the_folder_loads_in_mlx_lm(tiny_model_dir, data_dir, tmp_path):
    from mlx_lm.tuner.callbacks import TrainingCallback

    class Recorder(TrainingCallback):
        reports = []

        def on_train_loss_report(self, info):
            self.reports.append(info)

    out = tmp_path / "adapter"
    config = TrainConfig(iters=16, **FAST)
    events, manifest = run(str(tiny_model_dir), data_dir, out, config, callback=Recorder(), extra={"run": 1})
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps[0].iteration == 0 and steps[0].validation_loss is not None
    assert steps[-1].iteration == 16 and steps[-1].validation_loss < steps[0].validation_loss
    assert steps[-1].loss < steps[1].loss
    assert all(s.tokens_per_second > 0 and s.peak_memory_gb > 0 for s in steps[1:])
    assert Recorder.reports[-1]["iteration"] == 16 and Recorder.reports[-1]["tokens_per_second"] > 0

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["num_layers"] == 2
    assert config["lora_parameters"] == {"rank": 8, "scale": 20.0, "dropout": 0.0}
    written = json.loads((out / "manifest.json").read_text())
    assert written == json.loads(json.dumps(manifest)) and written["run"] == 1
    assert written["base_model"]["weights_sha256"]["model.safetensors"]
    assert written["data"]["sha256"] and written["data"]["split"]["valid"]
    assert written["metrics"]["final_val_loss"] < written["metrics"]["initial_val_loss"]
    assert written["metrics"]["peak_memory_gb"] > 0 and written["train_config"]["iters"] == 16

    import mlx.core as mx

    difference = mx.abs(logits(tiny_model_dir, out) - logits(tiny_model_dir)).max().item()
    assert difference > 1e-3


def test_dora_trains_and_loads(tiny_model_dir, data_dir, tmp_path):
    import mlx.core as mx

    out = tmp_path / "dora"
    run(str(tiny_model_dir), data_dir, out, TrainConfig(fine_tune_type="dora", iters=4, **FAST))
    assert json.loads((out / "adapter_config.json").read_text())["fine_tune_type"] == "dora"
    assert any(name.endswith(".m") for name in mx.load(str(out / "adapters.safetensors")))
    assert mx.abs(logits(tiny_model_dir, out) - logits(tiny_model_dir)).max().item() > 1e-4


def test_qwen3_5_trains_from_a_loaded_model(tiny_qwen35_dir, data_dir, tmp_path):
    from mlx_lm import load

    out = tmp_path / "qwen35"
    config = TrainConfig(iters=4, num_layers=-1, compile=False, **FAST)
    events, manifest = run(load(str(tiny_qwen35_dir)), data_dir, out, config, base_model=str(tiny_qwen35_dir))
    assert [e.iteration for e in events if isinstance(e, TrainStep)] == [0, 2, 4]
    assert manifest["base_model"]["spec"] == str(tiny_qwen35_dir)
    assert json.loads((out / "adapter_config.json").read_text())["num_layers"] == 4
    logits(tiny_qwen35_dir, out)  # loads


def test_lora_trains_on_a_quantized_base_and_the_manifest_says_so(tiny_model_dir, data_dir, tmp_path):
    import math

    import mlx.core as mx
    import mlx.nn as nn

    from mlx_repair.model.resolve import load_model

    out = tmp_path / "qlora"
    events, manifest = run(str(tiny_model_dir), data_dir, out, TrainConfig(iters=4, **FAST), quantize=4)
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps[-1].iteration == 4 and not math.isnan(steps[-1].loss)
    assert manifest["base_model"]["quantization"] == {"bits": 4, "group_size": 64}
    if mx.default_device() == mx.cpu:
        assert any(isinstance(e, Log) and "quantizing to 4 bits on the CPU" in e.message for e in events)

    model, tokenizer = load_model(str(tiny_model_dir), adapter_path=out, quantize=4)
    assert isinstance(model.model.layers[-1].self_attn.q_proj.linear, nn.QuantizedLinear)  # LoRA over it
    base, _ = load_model(str(tiny_model_dir), quantize=4)
    tokens = mx.array([tokenizer.encode("def f(x):\n    return 2 * x\n")])
    assert mx.abs(model(tokens) - base(tokens)).max().item() > 1e-4
    # the checkpoint belongs to the quantized base: a float run does not resume from it
    events, _ = run(str(tiny_model_dir), data_dir, out, TrainConfig(iters=4, **FAST))
    assert any(isinstance(e, Log) and "afresh" in e.message for e in events)


def test_changed_settings_train_afresh_and_a_finished_run_is_not_repeated(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "again"
    run(str(tiny_model_dir), data_dir, out, TrainConfig(iters=2, **FAST))
    events, _ = run(str(tiny_model_dir), data_dir, out, TrainConfig(iters=2, **FAST))
    assert not [e for e in events if isinstance(e, TrainStep)]  # already at step 2
    changed = TrainConfig(iters=2, **{**FAST, "learning_rate": 1e-4})
    events, _ = run(str(tiny_model_dir), data_dir, out, changed)
    assert any(isinstance(e, Log) and "afresh" in e.message for e in events)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3_5"])
def test_answer_loss_equals_mlx_lm_default_loss(arch, tiny_model_dir, tiny_qwen35_dir):
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.tuner.trainer import default_loss

    from mlx_repair.training.lora import answer_loss
    from mlx_repair.training.logits import backbone_and_head

    model, _ = load(str(tiny_model_dir if arch == "qwen2" else tiny_qwen35_dir))
    assert backbone_and_head(model) is not None  # the projection is split off, not skipped
    batch = mx.random.randint(0, 400, (2, 97), key=mx.random.key(0))
    lengths = mx.array([[40, 96], [70, 80]])
    expected, tokens = default_loss(model, batch, lengths)
    loss, sliced_tokens = answer_loss(model)(model, batch, lengths, 32)
    assert sliced_tokens.item() == tokens.item() == 57 + 11
    assert abs(loss.item() - expected.item()) < 1e-5


def test_presets_and_fitting():
    cpu = preset("cpu", iters=12, rank=None)
    assert cpu.batch_size == 1 and cpu.iters == 12 and cpu.rank == TrainConfig().rank
    import mlx.core as mx

    assert preset("auto") == preset("cpu" if mx.default_device() == mx.cpu else "default")  # mlx[cpu] or Metal
    from mlx_repair.errors import UserError
    from mlx_repair.training.config import fit_config

    with pytest.raises(UserError):
        preset("gpu-farm")
    config = TrainConfig(batch_size=8, num_layers=16, epochs=2)
    fitted, notes = fit_config(config, train_records=5, model_layers=2)
    assert (fitted.batch_size, fitted.num_layers, fitted.iters) == (5, 2, 2) and notes
    assert not fitted.grad_checkpoint and fitted.compile
    hybrid, notes = fit_config(TrainConfig(), train_records=5, model_layers=2, model_type="qwen3_5")
    assert hybrid.grad_checkpoint and not hybrid.compile and any("checkpointing" in n for n in notes)


CHILD = """
import sys
from mlx_repair.model import blas
blas.preload()
import time
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_repair.training.config import TrainConfig
from mlx_repair.training.lora import train_adapter

class StopAfterCheckpoint(TrainingCallback):
    # Past step 7 the checkpoint of step 6 is on disk: say so, then wait to be killed.

    def __init__(self, marker):
        self.marker = marker

    def on_train_loss_report(self, info):
        if info["iteration"] >= 7:
            open(self.marker, "w").close()
            time.sleep(3600)

model, data, out, marker = sys.argv[1:5]
config = TrainConfig(iters=12, batch_size=2, learning_rate=1e-3, dropout=0.1, steps_per_report=1,
                     steps_per_eval=7, save_every=3)
for event in train_adapter(model, data, out, config, callback=StopAfterCheckpoint(marker) if marker else None):
    print(event, flush=True)
"""


def test_a_run_killed_with_sigkill_resumes_to_the_same_adapter(tiny_model_dir, data_dir, tmp_path):
    import mlx.core as mx

    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}

    def start(out, marker=""):
        argv = [sys.executable, str(script), str(tiny_model_dir), str(data_dir), str(out), str(marker)]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    whole = start(tmp_path / "whole")  # runs alongside, on the other core
    marker = tmp_path / "checkpointed"
    killed = start(tmp_path / "killed", marker)
    # Kill at a point the child reports (a checkpoint on disk), not after a guessed delay,
    # so a busy machine only makes the test slower.
    deadline = time.monotonic() + 600
    while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    interrupted_at = _checkpoint_step(tmp_path / "killed" / CHECKPOINT_FILE)
    assert marker.exists() and killed.returncode == -signal.SIGKILL and interrupted_at == 6, killed.stdout.read()

    resumed = start(tmp_path / "killed")
    output = resumed.communicate(timeout=120)[0]
    assert resumed.returncode == 0, output
    assert f"resuming from step {interrupted_at} of 12" in output
    assert whole.communicate(timeout=120)[0] and whole.returncode == 0

    final = mx.load(str(tmp_path / "killed" / "adapters.safetensors"))
    reference = mx.load(str(tmp_path / "whole" / "adapters.safetensors"))
    assert final.keys() == reference.keys()
    for name in reference:
        assert mx.allclose(final[name], reference[name], atol=1e-5).item(), name
    history = json.loads((tmp_path / "killed" / "manifest.json").read_text())["history"]
    assert [h["iteration"] for h in history] == list(range(0, 13))


def _checkpoint_step(path: Path) -> int:
    import mlx.core as mx

    try:
        _, metadata = mx.load(str(path), return_metadata=True)
    except (OSError, RuntimeError, ValueError):
        return 0
    return json.loads(metadata["run"])["step"]


def test_early_stopping_keeps_the_adapter_with_the_best_validation_loss(tiny_model_dir, tmp_path):
    """Validation answers contradict the training answers, so validation loss soon rises:
    training stops after `patience` validations without a new best, and the adapter
    written is the best one's, not the last weights."""
    from mlx_lm import load

    from mlx_repair.generation.prompts import draft_messages
    from mlx_repair.mining.dataset import answer_message, read_jsonl, tokenize
    from mlx_repair.training.lora import _validate

    data = tmp_path / "data"
    data.mkdir()
    for name, answer in (("train.jsonl", "return 2 * x"), ("valid.jsonl", "return x - 7")):
        records = [{"messages": [*draft_messages(p), answer_message(f"def {p.entry_point}(x):\n    {answer}")]}
                   for p in PROBLEMS]
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    config = TrainConfig(iters=40, batch_size=2, learning_rate=3e-3, steps_per_report=1, steps_per_eval=1,
                         save_every=5, patience=2)
    out = tmp_path / "adapter"
    events, manifest = run(str(tiny_model_dir), data, out, config)
    metrics = manifest["metrics"]
    validations = [(e.iteration, e.validation_loss) for e in events if isinstance(e, TrainStep) and e.validation_loss is not None]
    best_step, best_loss = min(validations, key=lambda v: v[1])
    assert metrics["stopped_early"] and metrics["iterations"] == validations[-1][0] < 40
    assert (metrics["best_step"], metrics["best_val_loss"]) == (best_step, best_loss)
    assert [step for step, _ in validations[-2:]] == [best_step + 1, best_step + 2]  # patience 2
    assert any(isinstance(e, Log) and "stopped early" in e.message for e in events)

    model, tokenizer = load(str(tiny_model_dir), adapter_path=str(out))
    valid, _ = tokenize(read_jsonl(data / "valid.jsonl"), tokenizer, config.max_seq_length)
    assert abs(_validate(model, valid, config) - best_loss) < 1e-4 < metrics["final_val_loss"] - best_loss
    assert metrics["adapter_step"] == best_step
    # A re-run with the same settings finds the patience spent: nothing more is trained.
    events, _ = run(str(tiny_model_dir), data, out, config)
    assert not [e for e in events if isinstance(e, TrainStep)]
    # Asked for the last step's weights instead, the same run continues past its patience
    # to all `iters` (from its checkpoint) and the adapter is the last step's.
    events, manifest = run(str(tiny_model_dir), data, out, replace(config, weights="last"))
    metrics = manifest["metrics"]
    steps = [e.iteration for e in events if isinstance(e, TrainStep)]
    assert steps[0] == validations[-1][0] + 1 and steps[-1] == 40 == metrics["iterations"] == metrics["adapter_step"]
    assert not metrics["stopped_early"] and metrics["best_val_loss"] <= best_loss
    model, _ = load(str(tiny_model_dir), adapter_path=str(out))
    last_loss = _validate(model, valid, config)
    assert abs(last_loss - metrics["final_val_loss"]) < 1e-4 < last_loss - metrics["best_val_loss"]
