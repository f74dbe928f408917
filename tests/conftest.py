"""Shared fixtures: tiny random-weight MLX models, built once per test session."""

import pytest

from mlx_repair.model import blas

blas.preload()  # before anything imports mlx.core: tests run several times faster on Linux

from tiny_models import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny `qwen2` model folder that `mlx_lm.load` accepts."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2")


@pytest.fixture(scope="session")
def tiny_qwen35_dir(tmp_path_factory):
    """A tiny `qwen3_5` (hybrid Gated DeltaNet) model folder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3_5"), arch="qwen3_5")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    """The tiny models' tokenizer (byte-level BPE with a ChatML template), as mlx-lm loads it."""
    from mlx_lm.tokenizer_utils import load

    return load(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_repairer_dir(tmp_path_factory):
    """A tiny model taught to draft `double` wrong and repair it right (tiny_repairer.py)."""
    from tiny_repairer import build_tiny_repairer

    from mlx_repair.sandbox import run_candidate

    return build_tiny_repairer(
        tmp_path_factory.mktemp("tiny-repairer"), lambda problem, code: run_candidate(problem, code).feedback
    )


@pytest.fixture(scope="session")
def tiny_sampler_dir(tmp_path_factory):
    """A tiny model that drafts `double` wrong or right, about half and half when sampled."""
    from tiny_repairer import RIGHT, WRONG, build_tiny_repairer

    from mlx_repair.sandbox import run_candidate

    return build_tiny_repairer(
        tmp_path_factory.mktemp("tiny-sampler"), lambda problem, code: run_candidate(problem, code).feedback,
        drafts=(WRONG, RIGHT),
    )
