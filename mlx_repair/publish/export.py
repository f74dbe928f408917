"""Export a trained adapter so it travels: as mlx-lm reads it, as PEFT reads it, or fused.

An adapter folder (what `train.train_adapter` writes) holds adapters.safetensors and
adapter_config.json in mlx-lm's layout, manifest.json, and report.json when the `train`
one-liner evaluated it. `export_adapter` writes one of three folders, each with a model
card (README.md) and the manifest and report that back the card's numbers:

- `mlx`: the adapter as `mlx_lm.load(base, adapter_path=...)` reads it.
- `peft`: the same weights as PEFT's `PeftModel.from_pretrained` reads them. mlx-lm and
  PEFT disagree on three things, and getting any of them wrong gives an adapter that
  loads without complaint and computes something else:
    names        mlx `model.layers.3.mlp.up_proj.lora_a`
                 peft `base_model.model.model.layers.3.mlp.up_proj.lora_A.weight`
    orientation  mlx lora_a (in, r), lora_b (r, out): y += scale * (x @ a) @ b
                 peft lora_A (r, in), lora_B (out, r): y += (alpha / r) * B(A(x))
    scaling      mlx multiplies by `scale`; peft by `lora_alpha / r`, so alpha = scale * r.
  DoRA exports too: mlx-lm's DoRALinear and PEFT's DoraLinearLayer compute the same
  thing, (m / ||W + s B A||_row) * (W x + s B A x), and mlx's `m` is PEFT's
  `lora_magnitude_vector`.
- `fused`: base + adapter merged into plain weights by mlx-lm's own `fuse`, written as
  a Hugging Face-style folder (safetensors, config.json, tokenizer) that mlx-lm and
  transformers both load.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlx_repair.errors import UserError

FORMATS = ("mlx", "peft", "fused")
ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
CARD_FILE = "README.md"
# The packaged models' upstream hub ids, for PEFT's base_model_name_or_path and the card.
# The adapter was trained on the dequantised GGUF import, not on these exact weights.
UPSTREAM_IDS = {
    "qwen2.5-coder-0.5b-instruct": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# mlx-lm nests some text models one level differently from transformers (qwen3_5 and
# other vision-language wrappers: mlx `language_model.model.layers`, HF
# `model.language_model.layers`); below the layer, module names are the same.
HF_PREFIXES = {"language_model.model.": "model.language_model."}
_ADAPTER_KEY = re.compile(r"^(?P<module>.+)\.(?P<leaf>lora_a|lora_b|m)$")
# The first numbered segment is the block: `model.layers.3.mlp.up_proj` -> layers, 3, mlp.up_proj.
_LAYER = re.compile(r"^(?:.*?\.)?(?P<pattern>[^.]+)\.(?P<index>\d+)\.(?P<inner>.+)$")


@dataclass
class Adapter:
    """An adapter folder, read: mlx-lm's config, the manifest and the report (if any)."""

    path: Path
    config: dict
    manifest: dict
    report: dict | None

    @property
    def base_spec(self) -> str | None:
        """The model spec the adapter was trained on (manifest, else adapter_config)."""
        return self.manifest.get("base_model", {}).get("spec") or self.config.get("model")


def read_adapter(adapter_dir: str | Path) -> Adapter:
    """Read an adapter folder, with a one-line error for anything missing or unreadable."""
    path = Path(adapter_dir)
    for name in (ADAPTER_FILE, ADAPTER_CONFIG_FILE):
        if not (path / name).is_file():
            raise UserError(f"{path}: no {name} here; point at a folder written by `mlx-repair train`")
    config = _read_json(path / ADAPTER_CONFIG_FILE)
    if config.get("fine_tune_type", "lora") not in ("lora", "dora"):
        raise UserError(
            f"{path / ADAPTER_CONFIG_FILE}: fine_tune_type {config.get('fine_tune_type')!r} "
            "is not an adapter (lora or dora); there is nothing to export"
        )
    manifest = _read_json(path / MANIFEST_FILE) if (path / MANIFEST_FILE).is_file() else {}
    report = _read_json(path / REPORT_FILE) if (path / REPORT_FILE).is_file() else None
    return Adapter(path, config, manifest, report)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None


def export_adapter(
    adapter_dir: str | Path,
    fmt: str,
    out_dir: str | Path,
    dequantize: bool = False,
    base_model: str | None = None,
    location: str | None = None,
) -> Path:
    """Write the adapter in `fmt` (mlx, peft or fused) to `out_dir`, with a model card.

    base_model: the hub id to name as the base (PEFT's base_model_name_or_path and the
    card); by default the manifest's hub id or the packaged model's upstream id. The
    fused export always fuses into the local base the adapter was trained on.
    location: where the export will live (a hub repo id), for the card's usage snippets.
    Returns `out_dir`.
    """
    from mlx_repair.publish.model_card import render_card

    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    adapter = read_adapter(adapter_dir)
    out = _empty_folder(Path(out_dir))
    base_id = base_model or hub_base_id(adapter)
    if fmt == "mlx":
        shutil.copyfile(adapter.path / ADAPTER_FILE, out / ADAPTER_FILE)
        shutil.copyfile(adapter.path / ADAPTER_CONFIG_FILE, out / ADAPTER_CONFIG_FILE)
    elif fmt == "peft":
        write_peft(adapter, out, base_id or _local_base_path(adapter))
    else:
        write_fused(adapter, out, dequantize)
    for name in (MANIFEST_FILE, REPORT_FILE):
        if (adapter.path / name).is_file():
            shutil.copyfile(adapter.path / name, out / name)
    card = render_card(adapter.manifest, adapter.report, adapter.config, fmt, base_id, location)
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    return out


def _empty_folder(out: Path) -> Path:
    """`out`, created; refused when it already holds files (an export never mixes two)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty folder; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def hub_base_id(adapter: Adapter) -> str | None:
    """The base model's hub id when one is known: a hub spec, or a packaged model's upstream."""
    spec = adapter.base_spec
    if spec in UPSTREAM_IDS:
        return UPSTREAM_IDS[spec]
    if adapter.manifest.get("base_model", {}).get("source") == "hub":
        return spec
    return None


def _local_base_path(adapter: Adapter) -> str | None:
    return adapter.manifest.get("base_model", {}).get("path") or adapter.base_spec


# ---- PEFT ---------------------------------------------------------------------------------


def write_peft(adapter: Adapter, out: Path, base_name: str | None) -> None:
    """adapter_model.safetensors and adapter_config.json as PEFT writes them."""
    import mlx.core as mx

    weights = mx.load(str(adapter.path / ADAPTER_FILE))
    tensors = peft_tensors(weights, int(adapter.config["lora_parameters"]["rank"]))
    config = peft_config(adapter.config, weights, base_name, _base_depth(adapter))
    # PEFT reads the file with safetensors' torch loader, which wants contiguous tensors.
    mx.save_safetensors(str(out / PEFT_WEIGHTS_FILE), {k: mx.contiguous(v) for k, v in tensors.items()},
                        metadata={"format": "pt"})
    (out / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def peft_tensors(weights: dict, rank: int) -> dict:
    """mlx-lm adapter tensors -> PEFT's names and orientation (float32, as trained)."""
    tensors = {}
    for key, value in weights.items():
        module, leaf = _split_key(key)
        name = f"base_model.model.{hf_module_name(module)}"
        rank_axis = {"lora_a": 1, "lora_b": 0}.get(leaf)
        if rank_axis is not None and (value.ndim != 2 or value.shape[rank_axis] != rank):
            # e.g. mlx-lm's LoRASwitchLinear (mixture-of-experts), which PEFT's LoRA does not mirror
            raise UserError(
                f"{key}: shape {tuple(value.shape)} is not a rank-{rank} LoRA matrix; "
                "PEFT export supports linear layers only"
            )
        if leaf == "m":
            tensors[f"{name}.lora_magnitude_vector"] = value
        else:
            suffix = "lora_A" if leaf == "lora_a" else "lora_B"
            tensors[f"{name}.{suffix}.weight"] = value.T
    return tensors


def peft_config(mlx_config: dict, weights: dict, base_name: str | None, depth: int | None) -> dict:
    """PEFT's adapter_config.json for these weights.

    target_modules are the adapted modules' names inside a block (`self_attn.q_proj`),
    which PEFT matches as name suffixes; layers_to_transform lists the adapted blocks
    unless every block of the base model (depth) is adapted.
    """
    params = mlx_config["lora_parameters"]
    rank = int(params["rank"])
    modules = sorted({_split_key(key)[0] for key in weights})
    layers = [_LAYER.match(hf_module_name(module)) for module in modules]
    if not all(layers):
        outside = modules[layers.index(None)]
        raise UserError(
            f"adapter module {outside!r} is not inside a numbered block; PEFT export supports block layers only"
        )
    indices = sorted({int(layer["index"]) for layer in layers})
    all_blocks = depth is not None and indices == list(range(depth))
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "r": rank,
        # PEFT scales the update by lora_alpha / r; mlx-lm by `scale`.
        "lora_alpha": float(params["scale"]) * rank,
        "lora_dropout": float(params.get("dropout", 0.0)),
        "target_modules": sorted({layer["inner"] for layer in layers}),
        "layers_to_transform": None if all_blocks else indices,
        "layers_pattern": None if all_blocks else sorted({layer["pattern"] for layer in layers}),
        "use_dora": mlx_config.get("fine_tune_type") == "dora",
        "use_rslora": False,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
        "revision": None,
    }


def _split_key(key: str) -> tuple[str, str]:
    match = _ADAPTER_KEY.match(key)
    if not match:
        raise UserError(f"{key!r} is not a LoRA/DoRA adapter weight (lora_a, lora_b or m); cannot export it")
    return match["module"], match["leaf"]


def hf_module_name(mlx_module: str) -> str:
    """The transformers module path of an mlx-lm module path."""
    for mlx_prefix, hf_prefix in HF_PREFIXES.items():
        if mlx_module.startswith(mlx_prefix):
            return hf_prefix + mlx_module.removeprefix(mlx_prefix)
    return mlx_module


def _base_depth(adapter: Adapter) -> int | None:
    """The base model's number of blocks, from its config.json when it is on this machine."""
    path = _local_base_path(adapter)
    config_path = Path(path) / "config.json" if path else None
    if config_path is None or not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    return config.get("num_hidden_layers") or config.get("text_config", {}).get("num_hidden_layers")


# ---- fused --------------------------------------------------------------------------------


def write_fused(adapter: Adapter, out: Path, dequantize: bool) -> None:
    """Fuse the adapter into its base with mlx-lm's `fuse` pieces and save the folder.

    The same steps as `mlx_lm.fuse.main`, in-process: load base + adapter, replace each
    adapted layer by its `fuse()`, optionally dequantize, `save`. A base that training
    quantized in memory (`--quantize`) is quantized the same way first, so the adapter
    is fused into the weights it was trained and evaluated on. mlx-lm's save writes its
    own README; the caller replaces it with ours.
    """
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, load, load_adapters, save

    from mlx_repair.model.resolve import quantize_model

    base = str(_verified_base(adapter))
    model, tokenizer, config = load(base, return_config=True)
    quantization = adapter.manifest.get("base_model", {}).get("quantization")
    if quantization:
        config = quantize_model(model, quantization["bits"], config, quantization["group_size"])
    model = load_adapters(model, str(adapter.path))
    fused = [(name, m.fuse(dequantize=dequantize)) for name, m in model.named_modules() if hasattr(m, "fuse")]
    model.update_modules(tree_unflatten(fused))
    if dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    save(out, base, model, tokenizer, config, donate_model=True)


def _verified_base(adapter: Adapter) -> Path:
    """The local base folder, refused when its weights are not those the manifest hashed:
    fusing into other weights gives a model that was never trained or evaluated."""
    from mlx_repair.model.resolve import resolve_model
    from mlx_repair.training.manifest import file_sha256

    recorded = adapter.manifest.get("base_model", {})
    path = Path(recorded["path"]) if recorded.get("path") and Path(recorded["path"]).is_dir() else None
    if path is None:
        if adapter.base_spec is None:
            raise UserError(f"{adapter.path}: the manifest names no base model, so there is nothing to fuse into")
        path = resolve_model(adapter.base_spec).path
    for name, digest in recorded.get("weights_sha256", {}).items():
        if not (path / name).is_file() or file_sha256(path / name) != digest:
            raise UserError(
                f"{path / name}: not the base weights this adapter was trained on "
                f"(manifest sha256 {digest[:12]}...); fuse on the machine that trained it"
            )
    return path
