"""Turn a GGUF file into a Hugging Face-style folder that `mlx_lm.load` reads.

The weights are dequantised with the `gguf` package (numpy only, no torch) and written
as one float32 (or float16) safetensors file; config.json, the tokenizer and the chat
template are rebuilt from the GGUF metadata. Three traps, each checked by a test:

- llama.cpp stores llama-architecture q/k projections permuted for its rotary layout;
  `_unpermute` undoes that (qwen2 uses the NeoX layout and is stored as is).
- Some files (the packaged Qwen2.5) store an output matrix that is the embedding again,
  at another precision. We tie them when they agree to within quantisation noise,
  keeping the more precise copy, so the model has its original size.
- mlx-lm reads `rope_theta` at the top level of config.json; SmolLM2 needs 100000 and
  silently gets mlx-lm's default 10000 without it.

`import_gguf` builds the folder next to its destination and renames it into place, so
an interrupted import never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mlx_repair.errors import UserError

# Bump when the folder layout or conversion changes, so old caches are rebuilt.
IMPORT_VERSION = 1
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
# Relative RMS difference below which a stored output matrix counts as the embedding
# again: quantisation noise at 4-8 bits is 0.3-5%, two unrelated matrices give ~140%.
TIE_TOLERANCE = 0.1

Progress = Callable[[int, int, str], None]  # (tensors done, tensors total, tensor name)

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}

# Pre-tokenizer split rules by `tokenizer.ggml.pre`, as llama.cpp defines them
# (src/llama-vocab.cpp). The merges were learned on text split this way, so a wrong
# rule silently gives other token ids than the model was trained on.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = ("qwen2", "smollm", "gpt2", "default", "llama-bpe", "llama3")


@dataclass(frozen=True)
class GGUFFile:
    """The parts of a GGUF file an import needs: metadata values and tensors by name."""

    path: Path
    metadata: dict
    tensors: dict  # GGUF tensor name -> gguf ReaderTensor

    @property
    def architecture(self) -> str:
        return self.metadata["general.architecture"]

    def arch(self, key: str, default=None):
        return self.metadata.get(f"{self.architecture}.{key}", default)


def read_gguf(path: Path) -> GGUFFile:
    """Open a GGUF file, or say in one line why it is not one we can import."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as error:
        raise UserError(f"{path}: not a readable GGUF file ({error})") from None
    metadata = {name: field.contents() for name, field in reader.fields.items()}
    gguf = GGUFFile(path, metadata, {tensor.name: tensor for tensor in reader.tensors})
    if gguf.metadata.get("general.architecture") not in ARCHITECTURES:
        raise UserError(
            f"{path}: architecture {gguf.metadata.get('general.architecture')!r} is not "
            f"supported for GGUF import (supported: {', '.join(ARCHITECTURES)}); "
            "convert it with mlx_lm.convert from the original Hugging Face weights instead"
        )
    return gguf


def import_gguf(
    source: Path,
    destination: Path,
    dtype: str = "float32",
    tie_embeddings: bool = True,
    progress: Progress | None = None,
    extra_json: dict[str, dict] | None = None,
) -> Path:
    """Write an MLX-loadable folder for `source` at `destination`, atomically.

    `tie_embeddings=False` keeps a stored output matrix even when it equals the
    embedding (for comparing against a reference that does the same). `extra_json`
    names more JSON files to write into the folder before it appears.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, not {dtype}")
    gguf = read_gguf(Path(source))
    config = model_config(gguf)
    weights = convert_weights(gguf, config, np.dtype(dtype), tie_embeddings, progress)
    config["tie_word_embeddings"] = "lm_head.weight" not in weights
    config["torch_dtype"] = dtype
    destination.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        _write_folder(building, gguf, config, weights)
        for name, value in (extra_json or {}).items():
            _write_json(building / name, value)
        if destination.exists():
            shutil.rmtree(destination)
        building.rename(destination)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return destination


def _write_folder(folder: Path, gguf: GGUFFile, config: dict, weights: dict) -> None:
    from safetensors.numpy import save_file

    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", config)
    tokenizer = build_tokenizer(gguf)
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", tokenizer_config(gguf))
    _write_json(folder / "generation_config.json", generation_config(gguf))


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# ---- config ----------------------------------------------------------------------------


def model_config(gguf: GGUFFile) -> dict:
    """config.json for the HF class of this architecture, with what mlx-lm reads."""
    hidden = int(gguf.arch("embedding_length"))
    heads = int(gguf.arch("attention.head_count"))
    embedding = gguf.tensors["token_embd.weight"]
    config = {
        "architectures": [ARCHITECTURES[gguf.architecture]],
        "model_type": gguf.architecture,
        "hidden_size": hidden,
        "intermediate_size": int(gguf.arch("feed_forward_length")),
        "num_hidden_layers": int(gguf.arch("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(gguf.arch("attention.head_count_kv", heads)),
        "head_dim": int(gguf.arch("attention.key_length", hidden // heads)),
        "rms_norm_eps": float(gguf.arch("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(gguf.arch("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(gguf.arch("context_length", 4096)),
        "vocab_size": int(embedding.shape[-1]),
        "hidden_act": "silu",
        "bos_token_id": gguf.metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": _stop_ids(gguf),
    }
    if gguf.architecture == "llama":
        config |= {"attention_bias": "blk.0.attn_q.bias" in gguf.tensors, "mlp_bias": False}
    _check_rope(gguf, config["head_dim"])
    return config


def _check_rope(gguf: GGUFFile, head_dim: int) -> None:
    """Refuse rope variants we would silently drop (scaled long context, partial rotary)."""
    scaling = gguf.arch("rope.scaling.type", "none")
    rotary_dims = int(gguf.arch("rope.dimension_count", head_dim))
    if scaling != "none" or rotary_dims != head_dim:
        raise UserError(
            f"{gguf.path}: rope scaling {scaling!r} over {rotary_dims} of {head_dim} dims is not "
            "supported by the GGUF import; use the original Hugging Face model instead"
        )


def _stop_ids(gguf: GGUFFile) -> list[int]:
    """The token ids that end a reply: end-of-sequence and, where declared, end-of-turn."""
    keys = ("eos_token_id", "eot_token_id", "eom_token_id")
    ids = [gguf.metadata.get(f"tokenizer.ggml.{key}") for key in keys]
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def generation_config(gguf: GGUFFile) -> dict:
    return {
        "bos_token_id": gguf.metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": _stop_ids(gguf),
    }


# ---- weights ---------------------------------------------------------------------------


def hf_name(gguf_name: str) -> str:
    """`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight`."""
    base, _, kind = gguf_name.rpartition(".")
    if base.startswith("blk."):
        _, layer, part = base.split(".", 2)
        if part in _LAYER_NAMES:
            return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    elif base in _TOP_NAMES:
        return f"{_TOP_NAMES[base]}.{kind}"
    raise UserError(f"unexpected tensor {gguf_name!r} in this GGUF file; cannot import it")


def dequantize(tensor) -> np.ndarray:
    """A GGUF tensor as float32 in PyTorch's (out, in) orientation."""
    from gguf.quants import dequantize as gguf_dequantize

    return np.asarray(gguf_dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's `permute` of q/k rows (interleaved rotary -> HF half-split)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def convert_weights(
    gguf: GGUFFile,
    config: dict,
    dtype: np.dtype,
    tie_embeddings: bool,
    progress: Progress | None,
) -> dict[str, np.ndarray]:
    """All tensors dequantised, renamed to HF names, q/k un-permuted for llama."""
    permuted_heads = {
        "attn_q": config["num_attention_heads"],
        "attn_k": config["num_key_value_heads"],
    }
    weights = {}
    names = list(gguf.tensors)
    for done, name in enumerate(names, start=1):
        array = dequantize(gguf.tensors[name])
        part = name.split(".")[-2]
        if gguf.architecture == "llama" and part in permuted_heads:
            array = _unpermute(array, permuted_heads[part])
        weights[hf_name(name)] = array
        if progress:
            progress(done, len(names), name)
    if tie_embeddings:
        _tie_output(gguf, weights)
    return {name: array.astype(dtype, copy=False) for name, array in weights.items()}


def bits_per_weight(tensor) -> float:
    from gguf.constants import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[tensor.tensor_type]
    return 8 * size / block


def _tie_output(gguf: GGUFFile, weights: dict[str, np.ndarray]) -> None:
    """Drop a stored output matrix that is the embedding again, keeping the finer copy."""
    if "lm_head.weight" not in weights:
        return
    output, embedding = weights["lm_head.weight"], weights["model.embed_tokens.weight"]
    if output.shape != embedding.shape or relative_difference(output, embedding) > TIE_TOLERANCE:
        return
    finer_output = bits_per_weight(gguf.tensors["output.weight"]) > bits_per_weight(
        gguf.tensors["token_embd.weight"]
    )
    if finer_output:
        weights["model.embed_tokens.weight"] = output
    del weights["lm_head.weight"]


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of a - b relative to the RMS of b, computed in row chunks to bound memory."""
    error = scale = 0.0
    for start in range(0, a.shape[0], 8192):
        x, y = a[start : start + 8192].astype(np.float64), b[start : start + 8192]
        error += float(((x - y) ** 2).sum())
        scale += float((y.astype(np.float64) ** 2).sum())
    return (error / scale) ** 0.5 if scale else float(error > 0)


# ---- tokenizer -------------------------------------------------------------------------


def build_tokenizer(gguf: GGUFFile):
    """A byte-level BPE `tokenizers.Tokenizer` equal to the one llama.cpp builds."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    meta = gguf.metadata
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise UserError(
            f"{gguf.path}: tokenizer {meta.get('tokenizer.ggml.model')!r} is not supported "
            "(only byte-level BPE, 'gpt2'); use the original Hugging Face model instead"
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(merge.split(" ", 1)) for merge in meta["tokenizer.ggml.merges"]]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    pre = meta.get("tokenizer.ggml.pre", "default")
    tokenizer.normalizer, tokenizer.pre_tokenizer = _pre_tokenizer(gguf.path, pre)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    # llama.cpp's CONTROL (3) are special tokens, USER_DEFINED (4) plain added tokens;
    # both must match whole in text or they are cut into pieces.
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3]
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == 4]
    )
    if meta.get("tokenizer.ggml.add_bos_token"):
        bos = tokens[meta["tokenizer.ggml.bos_token_id"]]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    return tokenizer


def _pre_tokenizer(path: Path, pre: str):
    """(normalizer, pre-tokenizer) for llama.cpp's `tokenizer.ggml.pre` value."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    def split_then_bytes(rule: str):
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(rule), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )

    gpt2_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "qwen2":
        return normalizers.NFC(), split_then_bytes(_QWEN2_SPLIT)
    if pre == "smollm":  # GPT-2's rule, but every digit on its own
        return None, pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), gpt2_bytes]
        )
    if pre in ("llama-bpe", "llama3"):
        return None, split_then_bytes(_LLAMA3_SPLIT)
    if pre in ("gpt2", "default"):
        return None, gpt2_bytes
    raise UserError(
        f"{path}: pre-tokenizer {pre!r} is not supported (supported: {', '.join(PRE_TOKENIZERS)}); "
        "use the original Hugging Face model instead"
    )


def tokenizer_config(gguf: GGUFFile) -> dict:
    """tokenizer_config.json: the chat template and special tokens, for AutoTokenizer."""
    meta = gguf.metadata
    tokens = meta["tokenizer.ggml.tokens"]

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        return tokens[index] if index is not None else None

    config = {
        # The generic fast tokenizer takes tokenizer.json as written; a model-specific
        # class could rebuild its own pre-tokenizer and disagree with ours.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "unk_token": token("unknown_token_id"),
        "pad_token": token("padding_token_id"),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(gguf.arch("context_length", 4096)),
    }
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    return {key: value for key, value in config.items() if value is not None}
