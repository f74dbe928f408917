"""Per-candidate limits, and the rlimits the child sets before any candidate code runs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from mlx_repair.sandbox.tracking import user_process_count

# macOS does not enforce RLIMIT_AS: there the parent watches the run's memory instead.
ADDRESS_SPACE_LIMITED = sys.platform != "darwin"


@dataclass
class Limits:
    """Per-candidate limits; the defaults are generous for HumanEval-style problems."""

    timeout_s: float = 10.0  # wall clock
    cpu_s: float = 10.0
    memory_mb: int = 1024  # RLIMIT_AS on Linux; on macOS the resident memory of the run's processes
    file_size_mb: int = 16  # largest file the candidate may write
    max_processes: int = 32
    output_bytes: int = 64_000  # stdout + stderr; more ends the run ("output_limit")
    disk_mb: int = 64  # the sandbox's private /tmp (bwrap, unshare)


def rlimits(limits: Limits, level: str, uid: int | None) -> dict[str, int]:
    processes = limits.max_processes
    if uid is None and level != "bwrap":
        processes += user_process_count(os.getuid())  # RLIMIT_NPROC counts all of this user's processes
    result = {
        "RLIMIT_CPU": max(1, int(limits.cpu_s + 0.999)),
        "RLIMIT_FSIZE": limits.file_size_mb << 20,
        "RLIMIT_NPROC": processes,
        "RLIMIT_CORE": 0,
    }
    if ADDRESS_SPACE_LIMITED:
        result["RLIMIT_AS"] = limits.memory_mb << 20
    return result


def memory_watched() -> bool:
    """Whether the parent must watch memory because the kernel will not limit it."""
    return not ADDRESS_SPACE_LIMITED
