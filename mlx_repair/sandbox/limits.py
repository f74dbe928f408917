"""Per-candidate limits, and the rlimits the child sets before any candidate code runs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass
class Limits:
    """Per-candidate limits; the defaults are generous for HumanEval-style problems."""

    timeout_s: float = 10.0  # wall clock
    cpu_s: float = 10.0
    memory_mb: int = 1024  # RLIMIT_AS on Linux, resident memory on macOS
    file_size_mb: int = 16  # largest file the candidate may write
    max_processes: int = 32
    output_bytes: int = 64_000  # stdout + stderr; more ends the run ("output_limit")
    disk_mb: int = 64  # the sandbox's private /tmp (bwrap, unshare)


def rlimits(limits: Limits, level: str, uid: int | None) -> dict[str, int]:
    processes = limits.max_processes
    if uid is None and level != "bwrap":
        processes += _own_process_count()  # RLIMIT_NPROC counts all of this user's processes
    result = {
        "RLIMIT_CPU": max(1, int(limits.cpu_s + 0.999)),
        "RLIMIT_FSIZE": limits.file_size_mb << 20,
        "RLIMIT_NPROC": processes,
        "RLIMIT_CORE": 0,
    }
    if sys.platform != "darwin":
        result["RLIMIT_AS"] = limits.memory_mb << 20
    return result


def _own_process_count() -> int:
    if not os.path.isdir("/proc/self"):
        return 256
    uid = os.getuid()
    return sum(1 for e in os.scandir("/proc") if e.name.isdigit() and _owner(e.path) == uid)


def _owner(path: str) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None
