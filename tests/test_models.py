"""GGUF import and model resolution.

Tiny GGUF files (llama and qwen2, random weights, a small byte-level BPE trained here)
are written with gguf.GGUFWriter exactly as llama.cpp's converter lays them out: llama
q/k rows permuted for interleaved rotary, qwen2 with a stored output matrix. The import
is checked against a numpy forward pass that reads the GGUF tensors directly and uses
llama.cpp's own rotary conventions, so a wrong un-permutation, tie, norm or rope_theta
shows up as different logits. The packaged SmolLM2 is imported and run end to end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mlx_repair.model import blas

blas.preload()

import gguf  # noqa: E402
import mlx.core as mx  # noqa: E402

from mlx_repair.model import gguf_import, resolve  # noqa: E402
from mlx_repair.errors import UserError  # noqa: E402

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for i in range(10):\n    print(i * 2024)\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHAPE = dict(hidden=64, heads=4, kv_heads=2, layers=2, ffn=96)
PRE = {"llama": "smollm", "qwen2": "qwen2"}


# ---- building tiny GGUF files ------------------------------------------------------------


def train_tokenizer(pre: str):
    """A small byte-level BPE with the same pre-tokenizer our import rebuilds for `pre`."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models

    tokenizer = Tokenizer(tok_models.BPE())
    tokenizer.normalizer, tokenizer.pre_tokenizer = gguf_import._pre_tokenizer(Path("x"), pre)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    return tokenizer


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py `LlamaModel.permute`: HF rows -> interleaved rotary."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def random_hf_weights(arch: str, vocab: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """HF-layout weights, scaled so attention and rotary visibly matter."""
    h, ffn = SHAPE["hidden"], SHAPE["ffn"]
    head_dim = h // SHAPE["heads"]

    def w(out, inp):
        return (rng.standard_normal((out, inp)) / np.sqrt(inp)).astype(np.float32)

    weights = {"token_embd.weight": rng.standard_normal((vocab, h)).astype(np.float32)}
    weights["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float32)
    for i in range(SHAPE["layers"]):
        b = f"blk.{i}."
        weights |= {
            b + "attn_norm.weight": (1 + 0.1 * rng.standard_normal(h)).astype(np.float32),
            b + "ffn_norm.weight": (1 + 0.1 * rng.standard_normal(h)).astype(np.float32),
            b + "attn_q.weight": 3 * w(h, h),
            b + "attn_k.weight": 3 * w(SHAPE["kv_heads"] * head_dim, h),
            b + "attn_v.weight": w(SHAPE["kv_heads"] * head_dim, h),
            b + "attn_output.weight": w(h, h),
            b + "ffn_gate.weight": w(ffn, h),
            b + "ffn_up.weight": w(ffn, h),
            b + "ffn_down.weight": w(h, ffn),
        }
        if arch == "qwen2":
            kv = SHAPE["kv_heads"] * head_dim
            for part, size in (("q", h), ("k", kv), ("v", kv)):
                weights[b + f"attn_{part}.bias"] = (0.5 * rng.standard_normal(size)).astype(np.float32)
    return weights


def add_q8_0(writer, name: str, array: np.ndarray) -> None:
    q8_0 = gguf.GGMLQuantizationType.Q8_0
    writer.add_tensor(name, gguf.quants.quantize(array, q8_0), raw_dtype=q8_0)


def write_gguf(path: Path, arch: str, output: str = "none", seed: int = 0) -> tuple[Path, dict]:
    """A tiny GGUF as llama.cpp writes it; returns it and the HF-layout weights used.

    output: "none" (no output matrix: tied), "copy" (the embedding stored again, Q8_0)
    or "own" (an unrelated output matrix).
    """
    rng = np.random.default_rng(seed)
    tokenizer = train_tokenizer(PRE[arch])
    model = json.loads(tokenizer.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    hf = random_hf_weights(arch, len(tokens), rng)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(SHAPE["layers"])
    writer.add_context_length(256)
    writer.add_embedding_length(SHAPE["hidden"])
    writer.add_feed_forward_length(SHAPE["ffn"])
    writer.add_head_count(SHAPE["heads"])
    writer.add_head_count_kv(SHAPE["kv_heads"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(100000.0 if arch == "llama" else 1000000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE[arch])
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, array in hf.items():
        if arch == "llama" and (".attn_q.weight" in name or ".attn_k.weight" in name):
            heads = SHAPE["heads"] if ".attn_q." in name else SHAPE["kv_heads"]
            array = llama_cpp_permute(array, heads)
        if name.endswith("ffn_up.weight"):  # one quantised tensor per layer: exercise dequantize
            add_q8_0(writer, name, array)
        else:
            writer.add_tensor(name, array)
    embedding = hf["token_embd.weight"]
    if output == "copy":
        add_q8_0(writer, "output.weight", embedding)
    elif output == "own":
        add_q8_0(writer, "output.weight", rng.standard_normal(embedding.shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, hf


# ---- a reference forward pass straight from the GGUF file -------------------------------


def rope(x: np.ndarray, base: float, interleaved: bool) -> np.ndarray:
    """llama.cpp rotary: NORM rotates adjacent pairs (llama), NEOX halves (qwen2)."""
    positions, _, dim = x.shape
    inv = base ** (-np.arange(0, dim, 2) / dim)
    angle = np.arange(positions)[:, None, None] * inv[None, None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., : dim // 2], x[..., dim // 2 :])
    ra, rb = a * cos - b * sin, a * sin + b * cos
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., : dim // 2], out[..., dim // 2 :] = ra, rb
    return out


def reference_logits(path: Path, ids: list[int]) -> np.ndarray:
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    base = reader.fields[f"{arch}.rope.freq_base"].contents()
    t = {
        x.name: gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float64)
        for x in reader.tensors
    }
    heads, kv_heads = SHAPE["heads"], SHAPE["kv_heads"]
    dim = SHAPE["hidden"] // heads

    def norm(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w

    x = t["token_embd.weight"][ids]
    n = len(ids)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(SHAPE["layers"]):
        p = lambda name: t[f"blk.{i}.{name}"]  # noqa: E731
        h = norm(x, p("attn_norm.weight"))
        q, k, v = (h @ p(f"attn_{c}.weight").T + t.get(f"blk.{i}.attn_{c}.bias", 0) for c in "qkv")
        q = rope(q.reshape(n, heads, dim), base, arch == "llama")
        k = rope(k.reshape(n, kv_heads, dim), base, arch == "llama")
        v = v.reshape(n, kv_heads, dim)
        k, v = (np.repeat(a, heads // kv_heads, axis=1) for a in (k, v))
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(dim) + mask
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", weights, v).reshape(n, -1) @ p("attn_output.weight").T
        h = norm(x, p("ffn_norm.weight"))
        gate = h @ p("ffn_gate.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ p("ffn_up.weight").T)) @ p("ffn_down.weight").T
    x = norm(x, t["output_norm.weight"])
    return x @ t.get("output.weight", t["token_embd.weight"]).T


def mlx_logits(folder: Path, ids: list[int]) -> np.ndarray:
    from mlx_lm import load

    model, _ = load(str(folder))
    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


# ---- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_import_matches_reference_forward(tmp_path, arch):
    path, _ = write_gguf(tmp_path / f"{arch}.gguf", arch)
    folder = gguf_import.import_gguf(path, tmp_path / "out")
    ids = [5, 40, 77, 3, 120, 9, 200, 31, 64, 150, 11, 90]
    ours, ref = mlx_logits(folder, ids), reference_logits(path, ids)
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_theta"] == (100000.0 if arch == "llama" else 1000000.0)
    assert config["tie_word_embeddings"] is True


def test_reference_is_sensitive_to_the_permutation(tmp_path, monkeypatch):
    """Skipping the un-permutation must change the logits, or the test above proves nothing."""
    path, _ = write_gguf(tmp_path / "llama.gguf", "llama")
    monkeypatch.setattr(gguf_import, "_unpermute", lambda weight, heads: weight)
    folder = gguf_import.import_gguf(path, tmp_path / "out")
    ids = [5, 40, 77, 3, 120, 9, 200, 31]
    ours, ref = mlx_logits(folder, ids), reference_logits(path, ids)
    assert np.abs(ours - ref).max() > 1e-2 * np.abs(ref).max()


def test_float16_import_is_close(tmp_path):
    from safetensors.numpy import load_file

    path, _ = write_gguf(tmp_path / "q.gguf", "qwen2")
    folder = gguf_import.import_gguf(path, tmp_path / "out", dtype="float16")
    assert load_file(folder / "model.safetensors")["model.norm.weight"].dtype == np.float16
    ids = [5, 40, 77, 3, 120]
    ref = reference_logits(path, ids)
    assert np.abs(mlx_logits(folder, ids) - ref).max() < 2e-2 * np.abs(ref).max()


def test_llama_qk_unpermuted_exactly(tmp_path):
    from safetensors.numpy import load_file

    path, hf = write_gguf(tmp_path / "llama.gguf", "llama")
    weights = load_file(gguf_import.import_gguf(path, tmp_path / "out") / "model.safetensors")
    for part, name in (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v")):
        got = weights[f"model.layers.1.self_attn.{part}_proj.weight"]
        assert np.array_equal(got, hf[f"blk.1.{name}.weight"])


def test_stored_copy_of_embedding_is_tied_keeping_the_finer_copy(tmp_path):
    from safetensors.numpy import load_file

    path, hf = write_gguf(tmp_path / "q.gguf", "qwen2", output="copy")
    folder = gguf_import.import_gguf(path, tmp_path / "out")
    weights = load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in weights
    assert np.array_equal(weights["model.embed_tokens.weight"], hf["token_embd.weight"])  # F32 beats Q8_0
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is True
    untied = gguf_import.import_gguf(path, tmp_path / "untied", tie_embeddings=False)
    assert "lm_head.weight" in load_file(untied / "model.safetensors")


def test_unrelated_output_matrix_is_kept(tmp_path):
    path, _ = write_gguf(tmp_path / "q.gguf", "qwen2", output="own")
    folder = gguf_import.import_gguf(path, tmp_path / "out")
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is False
    ids = [5, 40, 77, 3, 120]
    ref = reference_logits(path, ids)
    assert np.abs(mlx_logits(folder, ids) - ref).max() < 1e-3 * np.abs(ref).max()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tokenizer_is_rebuilt_identically(tmp_path, arch):
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    path, _ = write_gguf(tmp_path / "m.gguf", arch)
    original = train_tokenizer(PRE[arch])
    tokenizer = load_tokenizer(gguf_import.import_gguf(path, tmp_path / "out"))
    texts = CORPUS + [
        "x = 1234567 + 89\n",
        "  # ünïcode, tabs\t and  spaces  \n",
        "<|im_start|>user\nhi<|im_end|>",
    ]
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == original.encode(text).ids
        assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token_ids == {2}
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_gguf_cache_reused_and_refreshed_on_change(tmp_path, monkeypatch):
    path, _ = write_gguf(tmp_path / "m.gguf", "llama")
    cache = tmp_path / "cache"
    first = resolve.resolve_model(str(path), cache_dir=cache)
    assert first.source == "gguf" and (first.path / "model.safetensors").is_file()
    calls = []
    real_import = gguf_import.import_gguf
    monkeypatch.setattr(
        gguf_import, "import_gguf", lambda *a, **k: calls.append(a) or real_import(*a, **k)
    )
    assert resolve.resolve_model(str(path), cache_dir=cache).path == first.path
    assert calls == []
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = resolve.resolve_model(str(path), cache_dir=cache)
    assert len(calls) == 1 and second.path != first.path
    assert not first.path.exists()  # the stale import is gone
    assert [p.name for p in cache.iterdir()] == [second.path.name]  # no half-built leftovers
    assert any(info.cached == second.path for info in resolve.list_models(cache))


def test_failed_import_leaves_no_folder(tmp_path, monkeypatch):
    path, _ = write_gguf(tmp_path / "m.gguf", "llama")

    def crash(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf_import, "_write_json", crash)
    with pytest.raises(RuntimeError):
        resolve.resolve_model(str(path), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_bad_specs_are_user_errors(tmp_path):
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    (tmp_path / "empty").mkdir()
    specs = ["missing.gguf", "junk.gguf", "empty"]
    for spec in [str(tmp_path / name) for name in specs] + ["no-such-model"]:
        with pytest.raises(UserError):
            resolve.resolve_model(spec, cache_dir=tmp_path / "cache")


def test_unsupported_architecture_is_a_user_error(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "phi.gguf"), "phi2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="phi2"):
        resolve.resolve_model(str(tmp_path / "phi.gguf"), cache_dir=tmp_path / "cache")


def test_offline_hub_id_is_a_user_error(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def no_network(*args, **kwargs):
        raise LocalEntryNotFoundError("Got: ConnectError: Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        resolve.resolve_model("someone/some-model", cache_dir=tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(UserError, match="cannot download hub model someone/some-model"):
        resolve.resolve_model("someone/some-model", cache_dir=tmp_path)


def test_packaged_file_with_wrong_hash_is_refused(tmp_path):
    parts = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for part in parts:
        part.write_bytes(b"x" * 10)
    fake = resolve.PackagedModel("fake", "", (), 20, "0" * 64, "reinstall")
    with pytest.raises(UserError, match="not the pinned one"):
        resolve.join_verified(fake, parts, tmp_path / "joined.gguf")
    assert not (tmp_path / "joined.gguf").exists()


def test_missing_packaged_model_is_a_user_error(tmp_path, monkeypatch):
    missing = resolve.PackagedModel(
        "gone", "", (("no_such_module_xyz", "f.gguf"),), 1, "0" * 64, "pip install it"
    )
    monkeypatch.setitem(resolve.PACKAGED, "gone", missing)
    with pytest.raises(UserError, match="not installed; install it with: pip install it"):
        resolve.resolve_model("gone", cache_dir=tmp_path)


# ---- the packaged SmolLM2, end to end ----------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    assert resolve.PACKAGED["smollm2-135m-instruct"].part_paths(), (
        "packaged SmolLM2 not installed: make models-test"
    )
    cache = tmp_path_factory.mktemp("cache")
    resolved = resolve.resolve_model("smollm2-135m-instruct", cache_dir=cache)
    model, tokenizer = resolve.load_model("smollm2-135m-instruct", cache_dir=cache)
    return resolved, model, tokenizer


def test_smollm2_imports_with_its_rope_theta_and_size(smollm2):
    from mlx.utils import tree_flatten

    resolved, model, _ = smollm2
    config = json.loads((resolved.path / "config.json").read_text())
    assert config["rope_theta"] == 100000.0 and config["tie_word_embeddings"] is True
    assert sum(v.size for _, v in tree_flatten(model.parameters())) == 134_515_008
    assert model.model.embed_tokens.weight.dtype == (mx.float32 if mx.default_device() == mx.cpu else mx.bfloat16)  # Metal: bf16


def test_smollm2_greedy_continuation_is_sensible(smollm2):
    from mlx_lm import generate

    _, model, tokenizer = smollm2
    text = generate(model, tokenizer, "def fibonacci(n):\n", max_tokens=30)
    assert "return" in text and "fibonacci(n - 1)" in text.replace("n-1", "n - 1")


def test_smollm2_tokenizer_round_trips_humaneval(smollm2):
    from mlx_repair.problems import load_problems

    _, _, tokenizer = smollm2
    for problem in load_problems("humaneval"):
        ids = tokenizer.encode(problem.prompt, add_special_tokens=False)
        assert tokenizer.decode(ids) == problem.prompt, problem.task_id
    digits = tokenizer.encode("12345", add_special_tokens=False)
    assert len(digits) == 5  # SmolLM2 splits every digit
    assert tokenizer.encode("<|im_start|>", add_special_tokens=False) == [1]


# ---- quantizing in memory -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["qwen2", "qwen3_5"])
def test_quantized_model_has_quantized_layers_and_still_generates(arch, tiny_model_dir, tiny_qwen35_dir):
    import mlx.nn as nn
    from mlx_lm import stream_generate

    folder = tiny_model_dir if arch == "qwen2" else tiny_qwen35_dir
    model, tokenizer = resolve.load_model(str(folder), quantize=4)
    layers = [m for _, m in model.named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
    assert layers and all(isinstance(m, nn.QuantizedLinear) for m in layers)
    assert all((m.bits, m.group_size) == (4, 64) for m in layers)
    assert any(isinstance(m, nn.QuantizedEmbedding) for _, m in model.named_modules())  # the tied head too
    assert len(list(stream_generate(model, tokenizer, "def f(x):", max_tokens=4))) >= 1


def test_quantized_logits_stay_near_the_float_ones(tiny_model_dir):
    base, tokenizer = resolve.load_model(str(tiny_model_dir))
    tokens = mx.array([tokenizer.encode("def f(x):\n    return 2 * x\n")])
    expected = base(tokens)
    error = {bits: mx.abs(resolve.load_model(str(tiny_model_dir), quantize=bits)[0](tokens) - expected).max().item()
             for bits in (4, 8)}
    # the same model, rounded: 4 bits moves the logits (up to 4.7 in size here) more than 8
    assert 0 < error[8] < error[4] < 1.5 and error[8] < 0.2


def test_quantizing_on_the_cpu_warns_in_one_line():
    if mx.default_device() == mx.gpu:
        pytest.skip("Metal: quantizing is the fast path there, nothing to warn about")
    warning = resolve.quantize_warning(4)
    assert "CPU" in warning and "slower" in warning and "\n" not in warning
    assert resolve.quantize_warning(None) is None


# ---- the commands ------------------------------------------------------------------------


def test_models_command_lists_packaged_and_imported(tmp_path, monkeypatch, capsys):
    from mlx_repair.cli import main

    monkeypatch.setenv("MLX_REPAIR_CACHE", str(tmp_path))
    path, _ = write_gguf(tmp_path / "tiny.gguf", "llama")
    assert main(["models", "--import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-coder-0.5b-instruct (default)" in out and "smollm2-135m-instruct" in out
    assert "tiny-" in out and resolve.default_dtype() in out and str(tmp_path / "models") in out  # float32 on CPU, bf16 on Metal


def test_doctor_reports_each_check(capsys):
    from mlx_repair.cli import main

    main(["doctor", "--quick"])
    out = capsys.readouterr().out
    for check in ("MLX", "BLAS", "sandbox: ", "HumanEval", "smollm2-135m-instruct"):
        assert check in out


# ---- the OpenBLAS preload ----------------------------------------------------------------


@pytest.mark.parametrize(
    "code, env, expected",
    [
        ("", {}, "openblas"),
        ("", {"MLX_REPAIR_NO_OPENBLAS": "1"}, "reference"),
        ("import mlx.core; ", {}, "reference"),  # too late: libmlx is already bound
    ],
)
def test_blas_preload_state(code, env, expected):
    import subprocess
    import sys

    if sys.platform == "darwin":
        pytest.skip("macOS: MLX uses Accelerate, nothing to preload")
    if expected == "openblas" and not all(path.exists() for path in blas.LIBRARIES):
        pytest.skip("Debian's libopenblas0-pthread is not installed")
    script = code + "from mlx_repair.model import blas; print(blas.preload().name)"
    environment = {k: v for k, v in os.environ.items() if k != "MLX_REPAIR_NO_OPENBLAS"} | env
    result = subprocess.run([sys.executable, "-c", script], env=environment,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected
