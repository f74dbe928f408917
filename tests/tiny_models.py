"""Tiny random-weight MLX models that `mlx_lm.load(folder)` accepts, built in seconds.

Tests of sampling, the repair loop, training and export need a real model and a real
tokenizer with a chat template, but not a good one: these models output noise, quickly.
Two architectures are offered because they exercise different cache types in mlx-lm:
`qwen2` (plain KV caches, the packaged Qwen2.5-Coder's shape) and `qwen3_5` (the hybrid
Gated-DeltaNet model of the original write-up, whose linear-attention layers keep
`ArraysCache` state that batching must merge, filter and extend correctly).

Usage: `build_tiny_model(tmp_path / "tiny", arch="qwen3_5")` then `mlx_lm.load(path)`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ARCHS = ("qwen2", "qwen3_5")
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|im_end|>"

# ChatML, as Qwen models use it; small enough to read.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Training text for the byte-level BPE: Python and English, so that code and prompts
# encode into a few hundred merged tokens rather than one token per byte.
CORPUS = '''
from typing import List, Tuple, Optional
import math


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True
    return False


class Solution:
    def solve(self, text: str) -> Optional[str]:
        result = [word.upper() for word in text.split() if word]
        return " ".join(result) if result else None


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == False

Complete the following Python function. Write the whole function in a code block.
Input: Expected: Got: The tests failed. Fix the function and return the corrected code.
```python
print(math.sqrt(16), {"key": (1, 2)}, range(10), len([]))
```
'''


def build_tiny_model(path: str | Path, arch: str = "qwen2", seed: int = 0) -> Path:
    """Write config.json, model.safetensors and a tokenizer with a chat template to `path`.

    The same (arch, seed) always gives the same weights, so tests can compare runs.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _save_tokenizer(path)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = _config(arch, vocab_size=len(tokenizer), eos_id=eos_id)
    _save_weights(path, config, seed)
    return path


def _save_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([CORPUS], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(path)
    return tokenizer


def _config(arch: str, vocab_size: int, eos_id: int) -> dict:
    shared = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab_size,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "eos_token_id": eos_id,
    }
    if arch == "qwen2":
        return {"model_type": "qwen2", "num_hidden_layers": 2, "rope_theta": 10000.0, **shared}
    text_config = {
        "model_type": "qwen3_5_text",
        # Layers 0-2 are Gated DeltaNet (linear attention), layer 3 full attention.
        "num_hidden_layers": 4,
        "full_attention_interval": 4,
        "head_dim": 16,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "linear_conv_kernel_dim": 4,
        "rope_parameters": {
            "type": "default",
            "rope_theta": 100000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [1, 1, 0],
        },
        **shared,
    }
    return {"model_type": "qwen3_5", "text_config": text_config, "eos_token_id": eos_id}


def _save_weights(path: Path, config: dict, seed: int) -> None:
    import mlx.core as mx
    from mlx_lm.utils import save_config, save_model

    architecture = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    mx.random.seed(seed)
    model = architecture.Model(architecture.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    save_model(path, model)
    save_config(dict(config), path / "config.json")
    generation = {"eos_token_id": config["eos_token_id"]}
    (path / "generation_config.json").write_text(json.dumps(generation))
