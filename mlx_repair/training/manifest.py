"""manifest.json: what an adapter was trained from (base model and the sha256 of its
weights, data, config), its losses, time and peak memory, and the library versions."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from mlx_repair.training.checkpoints import RunState, atomic_write_text

MANIFEST_FILE = "manifest.json"


def build_manifest(config, base_model, quantize, data_info: dict, run: RunState, seconds: float, peak_bytes: int) -> dict:
    import mlx.core as mx
    import mlx_lm

    val_losses = [h["validation_loss"] for h in run.history if h["validation_loss"] is not None]
    train_losses = [h["loss"] for h in run.history if h["iteration"] > 0]
    return {
        "base_model": base_model_info(base_model, quantize),
        "data": data_info,
        "train_config": asdict(config),
        "metrics": {
            "iterations": run.step,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "initial_val_loss": run.initial_val_loss,
            "final_val_loss": val_losses[-1] if val_losses else None,
            # the best validation loss and its step (0: the base)
            "best_step": run.best_step,
            "best_val_loss": run.best_val_loss,
            "stopped_early": run.step < config.iters,
            "trained_tokens": run.trained_tokens,
            "train_seconds": run.seconds,
            "wall_seconds": seconds,  # this session: loading and validation included
            "peak_memory_gb": peak_bytes / 1e9,
        },
        "history": [{k: _json_number(v) for k, v in h.items()} for h in run.history],
        "versions": {"mlx": mx.__version__, "mlx_lm": mlx_lm.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _json_number(value):
    """NaN (the loss of the report before training) is not JSON: null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def base_model_info(spec: str | None, quantize: int | None = None) -> dict:
    """The base model's spec, folder and the sha256 of each weights file, and how training
    quantized it in memory (None: it trained on the weights as they are)."""
    from mlx_repair.config import QUANTIZE_GROUP_SIZE
    from mlx_repair.model.resolve import resolve_model

    quantization = None if quantize is None else {"bits": quantize, "group_size": QUANTIZE_GROUP_SIZE}
    if spec is None:
        return {"spec": None, "quantization": quantization}
    resolved = resolve_model(spec)
    files = sorted(resolved.path.glob("*.safetensors"))
    return {
        "spec": spec,
        "name": resolved.name,
        "source": resolved.source,
        "path": str(resolved.path),
        "weights_sha256": {f.name: file_sha256(f) for f in files},
        "quantization": quantization,
    }


def file_sha256(path: Path) -> str:
    """sha256 of a (large) file, cached by path, size and mtime: a 2 GB model hashes once."""
    from mlx_repair.model.resolve import cache_root

    cache_path = cache_root().parent / "sha256-cache.json"
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    if key not in cache:
        with open(path, "rb") as source:
            cache[key] = hashlib.file_digest(source, "sha256").hexdigest()
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path, json.dumps(cache, indent=1))
    return cache[key]
