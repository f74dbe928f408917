"""Make MLX's CPU matmuls use Debian's OpenBLAS instead of the reference BLAS it bundles.

The `mlx[cpu]` wheel calls `cblas_sgemm` and LAPACK from a bundled reference library.
Loading an optimised BLAS into the global symbol scope *before* `mlx.core` is imported
makes libmlx bind to it instead, with the same logits; the speed-up is measured in
benchmarks/results/blas_speedup.md. Nothing here matters on macOS, where MLX uses
Accelerate and Metal.

Call `preload()` before anything imports `mlx.core`; set MLX_REPAIR_NO_OPENBLAS=1 to
turn it off (for a comparison, or if the library misbehaves).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

DISABLE_ENV = "MLX_REPAIR_NO_OPENBLAS"
# Debian and Ubuntu keep libraries per architecture: x86_64-linux-gnu, aarch64-linux-gnu, ...
LIBRARY_DIR = Path(f"/usr/lib/{platform.machine()}-linux-gnu")
# libopenblas0-pthread links against libgfortran5 for its LAPACK part; load it first so
# the dynamic loader does not have to find it on its own.
LIBRARIES = (
    LIBRARY_DIR / "libgfortran.so.5",
    LIBRARY_DIR / "openblas-pthread" / "libopenblas.so.0",
)
APT_HINT = "apt-get install libopenblas0-pthread libgfortran5"


@dataclass(frozen=True)
class BlasStatus:
    name: str  # "openblas", "reference", "accelerate"
    detail: str


_status: BlasStatus | None = None


def preload() -> BlasStatus:
    """Load OpenBLAS globally if this is Linux, it is installed, and nobody said no."""
    global _status
    if _status is None:
        _status = BlasStatus(*_try_preload())
    return _status


def _try_preload() -> tuple[str, str]:
    if sys.platform == "darwin":
        return "accelerate", "macOS: MLX uses Accelerate and Metal"
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return "reference", f"OpenBLAS preload turned off by {DISABLE_ENV}"
    if "mlx.core" in sys.modules:
        return "reference", "mlx.core was imported before the OpenBLAS preload"
    missing = [str(path) for path in LIBRARIES if not path.exists()]
    if missing:
        return "reference", f"{missing[0]} not found; for faster CPU matmuls: {APT_HINT}"
    try:
        for path in LIBRARIES:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        return "reference", f"could not load OpenBLAS: {error}"
    return "openblas", str(LIBRARIES[-1])


def status() -> BlasStatus:
    """Which BLAS MLX's CPU matmuls use in this process, and why."""
    if _status is None:
        if sys.platform == "darwin":
            return BlasStatus("accelerate", "macOS: MLX uses Accelerate and Metal")
        return BlasStatus("reference", "preload() was not called")
    return _status
