"""Checkpoints: adapter, optimizer state, step and run history in one safetensors file,
replaced atomically (temp file, then `os.replace`), so SIGKILL at any moment leaves the
previous checkpoint or the new one, never half of one. A checkpoint resumes only a run
with the same fingerprint: model, data and the settings that shape the trajectory."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mlx_repair.training.config import TrainConfig

ADAPTER_FILE = "adapters.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "mlx-repair-checkpoint-1"
ADAPTER_PREFIX = "adapter."  # a checkpoint's adapter arrays; its optimizer's are "optimizer."
# Settings that do not change the weights a run ends with (how long it runs aside), so a
# re-run may change them and still resume.
NOT_IN_FINGERPRINT = (
    "iters", "epochs", "steps_per_report", "steps_per_eval", "val_batches", "save_every", "patience", "weights",
)


@dataclass
class RunState:
    """What a checkpoint carries besides tensors: where the run is, and its history."""

    step: int = 0
    seconds: float = 0.0  # in training steps, over all sessions
    trained_tokens: int = 0
    initial_val_loss: float | None = None
    history: list = field(default_factory=list)  # TrainStep dicts
    # The best validation so far (its weights are adapters.safetensors), and how many
    # validations since then did not beat it: early stopping counts these.
    best_step: int | None = None
    best_val_loss: float | None = None
    validations_since_best: int = 0

    def validated(self, step: int, loss: float) -> bool:
        """Record a validation loss; True when it is the best so far."""
        if self.best_val_loss is not None and loss >= self.best_val_loss:
            self.validations_since_best += 1
            return False
        self.best_step, self.best_val_loss, self.validations_since_best = step, loss, 0
        return True


def run_fingerprint(config: TrainConfig, base_model: str | None, data_sha256: str, quantize: int | None) -> str:
    """What must match for a checkpoint to be resumed: model, data and trajectory settings.
    `quantize` is left out when unset, so checkpoints from before the option still match."""
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in NOT_IN_FINGERPRINT}
    key = {"model": base_model, "data": data_sha256, "config": settings}
    if quantize is not None:
        key["quantize"] = quantize
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def save_adapter(out_dir: Path, model) -> None:
    """The adapter weights as they are now, as adapters.safetensors (replaced atomically)."""
    from mlx.utils import tree_flatten

    atomic_safetensors(out_dir / ADAPTER_FILE, dict(tree_flatten(model.trainable_parameters())))


def save_checkpoint(out_dir: Path, model, optimizer, run: RunState, fingerprint: str) -> None:
    """Adapter weights, optimizer state and run state in one file, replaced atomically:
    the one a resume trusts. (adapters.safetensors is written apart, by `save_adapter`.)"""
    from mlx.utils import tree_flatten

    arrays = {f"{ADAPTER_PREFIX}{k}": v for k, v in tree_flatten(model.trainable_parameters())}
    arrays.update({f"optimizer.{k}": v for k, v in tree_flatten(optimizer.state)})
    metadata = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "run": json.dumps(asdict(run))}
    atomic_safetensors(out_dir / CHECKPOINT_FILE, arrays, metadata)


def load_checkpoint(path: Path, model, optimizer, fingerprint: str) -> RunState | None:
    """Restore adapter and optimizer from `path`; a fresh RunState when there is none,
    None when it belongs to other settings."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    if not path.is_file():
        return RunState()
    arrays, metadata = mx.load(str(path), return_metadata=True)
    if metadata.get("format") != CHECKPOINT_FORMAT or metadata.get("fingerprint") != fingerprint:
        return None
    model.load_weights(_with_prefix(arrays, ADAPTER_PREFIX), strict=False)
    optimizer.state = tree_unflatten(_with_prefix(arrays, "optimizer."))
    return RunState(**json.loads(metadata["run"]))


def _with_prefix(arrays: dict, prefix: str) -> list[tuple[str, object]]:
    return [(k.removeprefix(prefix), v) for k, v in arrays.items() if k.startswith(prefix)]


def atomic_safetensors(path: Path, arrays: dict, metadata: dict | None = None) -> None:
    import mlx.core as mx

    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.safetensors")
    mx.save_safetensors(str(temp), arrays, metadata=metadata or {})
    os.replace(temp, path)


def atomic_write_text(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
