"""Adapter export: PEFT names, orientation and alpha; the numbers through PEFT; fused and
mlx folders that load; the model card's numbers; one-line errors.

The adapter is random but non-zero (mlx-lm starts lora_b at zero, which would make any
export look right), on the last block only, so layers_to_transform is exercised. The
PEFT weights are checked twice: re-applied by hand in numpy (W + (alpha/r) B A, merged
into the base and run by mlx-lm), and, when torch and peft are installed, through
transformers + PeftModel itself (benchmarks/peft_export_check.py, at tiny size).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mlx_repair.model import blas

blas.preload()

import mlx.core as mx  # noqa: E402

from mlx_repair.cli import main  # noqa: E402
from mlx_repair.errors import UserError  # noqa: E402
from mlx_repair.publish.export import export_adapter  # noqa: E402
from mlx_repair.evaluation.report import StageTime, TrainReport  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import peft_export_check as check  # noqa: E402

MODULES = ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.o_proj",
           "self_attn.q_proj", "self_attn.v_proj"]
HAVE_TORCH_PEFT = all(importlib.util.find_spec(name) for name in ("torch", "peft"))
needs_torch_peft = pytest.mark.skipif(not HAVE_TORCH_PEFT, reason="torch and peft are not installed")


def eval_result(model: str, cold: str, repair: str, resample: str) -> dict:
    """An `eval --json` result; each string has one 0/1 per problem."""
    cold, repair, resample = ([int(c) for c in scores] for scores in (cold, repair, resample))
    rows = [{"task_id": f"HumanEval/{i}", "cold": c, "repair": r, "resample": s}
            for i, (c, r, s) in enumerate(zip(cold, repair, resample))]
    n = len(rows)
    metrics = {"cold_pass@1": sum(cold) / n, "repair_pass@1": sum(repair) / n, "resample_pass@2": sum(resample) / n}
    return {"model": model, "problems": "humaneval", "side": "eval", "n": n, "metrics": metrics, "per_problem": rows}


REPORT = TrainReport(
    base=eval_result("base", cold="0000001100", repair="0000011100", resample="0000011110"),
    adapter=eval_result("adapter", cold="1111101000", repair="1111111000", resample="1111011011"),
    control=eval_result("control", cold="0000001101", repair="0000011101", resample="0000011111"),
    pair_counts={"repair": {"resample": 10, "self-repair": 3}, "solve": {"draft": 4}, "keep": {"draft": 6},
                 "garbage": {"resample": 13}},
    losses=[(1, 2.0), (2, 1.5)],
    validation_losses=[(0, 2.1), (2, 1.6)],
    stages=[StageTime("train", 180.0, 3.3)],
    command="mlx-repair train --limit 10",
).to_dict()


def make_adapter(base_dir, folder, num_layers=1, fine_tune_type="lora", report=REPORT) -> Path:
    """A random non-zero adapter folder with manifest (and report.json unless None)."""
    with pytest.MonkeyPatch.context() as patch:  # weight hashes are cached under MLX_REPAIR_CACHE
        patch.setenv("MLX_REPAIR_CACHE", str(Path(folder).parent / "cache"))
        adapter = check.random_adapter(str(base_dir), folder, num_layers, fine_tune_type)
    if report is not None:
        (adapter / "report.json").write_text(json.dumps(report))
        manifest = json.loads((adapter / "manifest.json").read_text())
        split = {"seed": "s", "eval_fraction": 0.3, "train": [f"HumanEval/{i}" for i in range(10, 30)],
                 "eval": [f"HumanEval/{i}" for i in range(10)]}
        manifest.update(split=split, problems="humaneval")  # what `mlx-repair train` adds
        manifest.setdefault("data", {})["languages"] = {"python": 30, "go": 6}  # write_dataset's counts
        (adapter / "manifest.json").write_text(json.dumps(manifest))
    return adapter


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def batches(tiny_model_dir):
    return check.token_batches(tiny_model_dir)


@pytest.fixture(scope="module")
def expected(tiny_model_dir, adapter_dir, batches):
    """MLX base + adapter logits: what every export must reproduce."""
    return check.mlx_logits(tiny_model_dir, adapter_dir, batches)


def assert_same_logits(found, expected, tolerance=1e-4):
    assert max(float(np.abs(f - e).max()) for f, e in zip(found, expected)) < tolerance


def test_the_adapter_moves_the_logits(tiny_model_dir, batches, expected):
    base = check.mlx_logits(tiny_model_dir, None, batches)
    assert check.compare(expected, expected, base)["adapter_max_logit_shift"] > 1.0


def test_peft_export_has_peft_names_orientation_and_alpha(tiny_model_dir, adapter_dir, tmp_path):
    out = export_adapter(adapter_dir, "peft", tmp_path / "peft", base_model="Qwen/Qwen2.5-Coder-0.5B-Instruct")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "manifest.json", "report.json"]
    mlx_weights = mx.load(str(adapter_dir / "adapters.safetensors"))
    peft_weights = mx.load(str(out / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.1"
    assert sorted(peft_weights) == sorted(f"{prefix}.{m}.lora_{ab}.weight" for m in MODULES for ab in "AB")
    for module in MODULES:
        a, b = mlx_weights[f"model.layers.1.{module}.lora_a"], mlx_weights[f"model.layers.1.{module}.lora_b"]
        peft_a = peft_weights[f"{prefix}.{module}.lora_A.weight"]
        peft_b = peft_weights[f"{prefix}.{module}.lora_B.weight"]
        assert peft_a.shape == (8, a.shape[0]) and peft_b.shape == (b.shape[1], 8)
        assert peft_a.dtype == mx.float32 and mx.array_equal(peft_a, a.T) and mx.array_equal(peft_b, b.T)
        assert mx.abs(peft_b).max().item() > 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert config["r"] == 8 and config["lora_alpha"] == 160.0  # alpha / r == mlx-lm's scale 20
    assert config["target_modules"] == MODULES
    assert config["layers_to_transform"] == [1] and config["layers_pattern"] == ["layers"]
    assert config["base_model_name_or_path"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert config["use_dora"] is False


def test_all_blocks_adapted_needs_no_layers_to_transform(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", num_layers=2, report=None)
    config = json.loads((export_adapter(adapter, "peft", tmp_path / "peft") / "adapter_config.json").read_text())
    assert config["layers_to_transform"] is None and config["layers_pattern"] is None
    assert config["base_model_name_or_path"] == str(tiny_model_dir)  # no hub id known: the local base


def test_peft_weights_reapplied_by_hand_give_the_mlx_logits(tiny_model_dir, adapter_dir, batches, expected, tmp_path):
    """W' = W + (lora_alpha / r) * B @ A in numpy, merged into a copy of the base."""
    out = export_adapter(adapter_dir, "peft", tmp_path / "peft")
    config = json.loads((out / "adapter_config.json").read_text())
    peft = {k: np.array(v) for k, v in mx.load(str(out / "adapter_model.safetensors")).items()}
    merged = shutil.copytree(tiny_model_dir, tmp_path / "merged")
    weights = {k: np.array(v) for k, v in mx.load(str(merged / "model.safetensors")).items()}
    for key in [k for k in peft if k.endswith("lora_A.weight")]:
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        b = peft[key.replace("lora_A", "lora_B")]
        weights[f"{module}.weight"] += config["lora_alpha"] / config["r"] * b @ peft[key]
    mx.save_safetensors(str(merged / "model.safetensors"), {k: mx.array(v) for k, v in weights.items()})
    assert_same_logits(check.mlx_logits(merged, None, batches), expected)


def test_dora_exports_its_magnitude_as_peft_does(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", fine_tune_type="dora", report=None)
    out = export_adapter(adapter, "peft", tmp_path / "peft")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["use_dora"] is True
    mlx_weights = mx.load(str(adapter / "adapters.safetensors"))
    peft_weights = mx.load(str(out / "adapter_model.safetensors"))
    magnitude = peft_weights["base_model.model.model.layers.1.mlp.up_proj.lora_magnitude_vector"]
    assert mx.array_equal(magnitude, mlx_weights["model.layers.1.mlp.up_proj.m"])


def test_qwen3_5_modules_get_transformers_names(tiny_qwen35_dir, tmp_path):
    adapter = make_adapter(tiny_qwen35_dir, tmp_path / "adapter", report=None)
    out = export_adapter(adapter, "peft", tmp_path / "peft")
    keys = mx.load(str(out / "adapter_model.safetensors"))
    assert keys and all(k.startswith("base_model.model.model.language_model.layers.3.") for k in keys)
    config = json.loads((out / "adapter_config.json").read_text())
    assert "self_attn.q_proj" in config["target_modules"] and config["layers_to_transform"] == [3]


def test_fused_export_loads_in_mlx_lm_with_the_adapter_logits(adapter_dir, batches, expected, tmp_path):
    out = export_adapter(adapter_dir, "fused", tmp_path / "fused")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "manifest.json"} <= names
    assert not {"adapters.safetensors", "adapter_config.json"} & names
    assert "merged into the weights" in (out / "README.md").read_text()
    assert_same_logits(check.mlx_logits(out, None, batches), expected)


def test_fused_export_dequantizes_a_quantized_base_on_request(tiny_model_dir, tmp_path):
    from mlx_lm import convert

    quantized = tmp_path / "q4"
    convert(str(tiny_model_dir), str(quantized), quantize=True, q_group_size=32, q_bits=4)
    adapter = make_adapter(quantized, tmp_path / "adapter", report=None)
    batches = check.token_batches(quantized)
    kept = export_adapter(adapter, "fused", tmp_path / "fused-q4")
    assert "quantization" in json.loads((kept / "config.json").read_text())
    out = export_adapter(adapter, "fused", tmp_path / "fused", dequantize=True)
    assert "quantization" not in json.loads((out / "config.json").read_text())
    assert all(v.dtype == mx.float32 for v in mx.load(str(out / "model.safetensors")).values())
    # dequantize(W) + scale * (B A)^T is what LoRA over the quantized layer computes
    assert_same_logits(check.mlx_logits(out, None, batches), check.mlx_logits(quantized, adapter, batches))


def test_fused_export_of_an_adapter_trained_on_a_quantized_base_uses_that_base(tiny_model_dir, batches, tmp_path):
    from mlx_repair.model.resolve import load_model

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", report=None)
    manifest = json.loads((adapter / "manifest.json").read_text())
    manifest["base_model"]["quantization"] = {"bits": 4, "group_size": 64}  # as `train --quantize 4` records
    (adapter / "manifest.json").write_text(json.dumps(manifest))
    kept = export_adapter(adapter, "fused", tmp_path / "fused-q4")
    assert json.loads((kept / "config.json").read_text())["quantization"] == {"group_size": 64, "bits": 4, "mode": "affine"}
    out = export_adapter(adapter, "fused", tmp_path / "fused", dequantize=True)
    model, _ = load_model(str(tiny_model_dir), adapter_path=adapter, quantize=4)  # what eval measured
    trained_on = [np.array(model(mx.array([tokens]))[0]) for tokens in batches]
    assert_same_logits(check.mlx_logits(out, None, batches), trained_on)


def test_fused_export_refuses_another_base(tiny_model_dir, adapter_dir, tmp_path):
    other = shutil.copytree(adapter_dir, tmp_path / "adapter")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["base_model"]["weights_sha256"]["model.safetensors"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="not the base weights this adapter was trained on"):
        export_adapter(other, "fused", tmp_path / "fused")


def test_mlx_export_is_the_adapter_mlx_lm_loads(tiny_model_dir, adapter_dir, batches, expected, tmp_path):
    out = tmp_path / "mlx"
    assert main(["export", str(adapter_dir), "--format", "mlx", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "adapter_config.json", "adapters.safetensors", "manifest.json", "report.json"]
    assert_same_logits(check.mlx_logits(tiny_model_dir, out, batches), expected, tolerance=1e-6)


def test_model_card_carries_the_report_numbers(adapter_dir, tmp_path):
    out = export_adapter(adapter_dir, "peft", tmp_path / "peft", location="alice/tiny-repair")
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: peft" in card
    assert "On n=10 evaluation problems" in card
    assert "Problems: humaneval; 20 on the train side, 10 held out for evaluation" in card
    assert "| cold pass@1 | 20.0% (2/10) | 60.0% (6/10) | 30.0% (3/10) |" in card
    assert "| resampling, same budget (pass@2) | 40.0% (4/10) | 80.0% (8/10) | 50.0% (5/10) |" in card
    # adapter cold: 5 fixed, 1 broken of 6 discordant -> exact two-sided p = 14/64
    assert "| adapter | cold pass@1 | 20.0% -> 60.0% | 5 | 1 | 0.219 |" in card
    assert "| control | cold pass@1 | 20.0% -> 30.0% | 1 | 0 | 1 |" in card
    assert "(exact McNemar test on the discordant problems)" in card
    # the base's resampling (4 tasks) against the adapter's repair turn (7): 5 fixed, 2 broken, p = 58/128
    assert ("| adapter | base's resampling, same budget (pass@2) -> this system's pass@1 after one repair turn "
            "| 40.0% -> 70.0% | 5 | 2 | 0.453 |") in card
    assert "one repair turn reaches 70.0% and plain resampling with the same number of model calls " \
        "(pass@2) reaches 80.0%; repair does not beat resampling" in card
    assert "Garbage control: the same training" in card
    # The goal as report.json states it: repair 3 -> 7 of 10 (5 fixed, 1 broken) is not p < 0.05.
    assert "- 1. its repair pass@1 beats the base's (p < 0.05): NOT met (30.0% -> 70.0%, n=10, fixed 5, " \
        "broken 1, p=0.219)" in card
    assert "- 3. with one repair turn it reaches the base's resampling at the same budget: met" in card
    assert "**No measurable gain over the base model on these problems" in card
    assert "| repair | 13 (resample 10, self-repair 3) |" in card and "| garbage | 13 (resample 13) |" in card
    assert "| solve | 4 |" in card
    assert "mlx_lm.generate --model" in card and "--adapter-path" in card
    assert 'PeftModel.from_pretrained(base, "alice/tiny-repair")' in card
    assert "sha256" in card
    front_matter = card.split("---")[1]
    assert "- go\n" in front_matter and "- python\n" in front_matter  # the records' languages as tags
    assert "Training and validation records by language: Go 6, Python 30." in card


def test_model_card_names_the_sign_test_when_problems_had_several_samples(tiny_model_dir, tmp_path):
    report = json.loads(json.dumps(REPORT))
    report["comparisons"]["adapter"][0]["fractional"] = True
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", report=report)
    card = (export_adapter(adapter, "mlx", tmp_path / "mlx") / "README.md").read_text()
    assert "exact sign test: with several samples per problem" in card and "McNemar" not in card


def test_model_card_without_a_report_says_so(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", report=None)
    card = (export_adapter(adapter, "mlx", tmp_path / "mlx") / "README.md").read_text()
    assert "has not been evaluated" in card and "McNemar" not in card


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda a, out: (a.parent / "missing", "peft", out), "no adapters.safetensors here"),
        (lambda a, out: (a, "gguf", out), "unknown export format 'gguf'"),
        (lambda a, out: (a, "peft", a), "already exists and is not an empty folder"),
    ],
)
def test_user_errors_are_one_line(adapter_dir, tmp_path, setup, message):
    with pytest.raises(UserError, match=message) as error:
        export_adapter(*setup(adapter_dir, tmp_path / "out"))
    assert "\n" not in str(error.value)


@needs_torch_peft
@pytest.mark.parametrize(
    "fine_tune_type, num_layers, train_steps", [("lora", 1, 0), ("lora", 2, 0), ("dora", 1, 0), ("lora", 1, 3)]
)
def test_transformers_and_peft_give_the_mlx_logits(tiny_model_dir, tmp_path, fine_tune_type, num_layers, train_steps):
    """The issue's check: PeftModel.from_pretrained(export) vs MLX base + adapter, for
    random adapters and one trained by train.train_adapter."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLX_REPAIR_CACHE", str(tmp_path / "cache"))
        result = check.check(str(tiny_model_dir), tmp_path, num_layers, fine_tune_type, train_steps)
    assert result["max_abs_diff"] < 1e-4 and result["argmax_agreement"] == 1.0
    assert result["adapter_max_logit_shift"] > 0.1  # and the adapter does something


@needs_torch_peft
def test_fused_export_loads_in_transformers(adapter_dir, batches, expected, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = export_adapter(adapter_dir, "fused", tmp_path / "fused")
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        found = [model(torch.tensor([tokens])).logits[0].numpy() for tokens in batches]
    assert_same_logits(found, expected)


@pytest.mark.slow
@needs_torch_peft
def test_transformers_and_peft_give_the_mlx_logits_on_the_packaged_qwen(tmp_path):
    """The same check on Qwen2.5-Coder-0.5B with an adapter trained for 2 steps (~3 min;
    benchmarks/peft_export_check.py records longer runs)."""
    from mlx_repair.config import DEFAULT_MODEL
    from mlx_repair.model.resolve import PACKAGED

    if PACKAGED[DEFAULT_MODEL].part_paths() is None:
        pytest.skip(f"{DEFAULT_MODEL} is not installed (make models)")
    result = check.check(DEFAULT_MODEL, tmp_path, num_layers=8, train_steps=2)
    assert result["max_abs_diff"] < 1e-3 and result["argmax_agreement"] == 1.0
    assert result["adapter_max_logit_shift"] > 0.1
