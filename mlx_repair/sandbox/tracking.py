"""Which processes belong to a run, how many there are and how much memory they hold, and
killing them until none is left.

A run's processes are those of its throwaway uid (bwrap, unshare as root) or, without
one, those carrying the run's marker in their environment: the child starts with it and
every descendant inherits it, even one that called `setsid()` and left the child's
session. Linux answers from /proc; where there is none (macOS) `ps` answers, which
prints the environment after the command (`ps -E` on macOS, `ps e` with procps). A
process that cleared its environment and left the session cannot be found this way:
only a level with its own pid namespace or uid catches it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RUN_MARKER_ENV = "MLX_REPAIR_RUN"
PROC = "/proc"
# How often the parent may sample a watched run: a /proc scan reads every process's status
# (a few ms), ps is a process of its own.
PROC_INTERVAL_S = 0.02
PS_INTERVAL_S = 0.25
PS_COLUMNS = "pid=,uid=,stat=,rss=,command="
# The environment after the command: BSD's -E, procps' BSD-style `e`; ww: never cut.
PS_ARGS = {"darwin": ["-axwwE", "-o", PS_COLUMNS]}
PS_DEFAULT_ARGS = ["axeww", "-o", PS_COLUMNS]


@dataclass(frozen=True)
class Member:
    """A live (not zombie) process of a run."""

    pid: int
    rss_kb: int


def members(uid: int | None, run_id: str) -> list[Member]:
    """The run's live processes: those of `uid` if the run has one, else those with the
    run's marker in their environment."""
    marker = f"{RUN_MARKER_ENV}={run_id}"
    if have_proc():
        return list(_proc_members(uid, marker.encode()))
    return [
        Member(pid, rss_kb)
        for pid, owner, state, rss_kb, words in _ps_rows()
        if not state.startswith("Z") and (owner == uid if uid is not None else marker in words)
    ]


def kill_all(uid: int | None, run_id: str, patience_s: float = 5.0) -> None:
    """SIGKILL the run's processes, again and again while a fork races the kill, until
    none is left (or `patience_s` has passed)."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        left = members(uid, run_id)
        if not left:
            return
        for member in left:
            try:
                os.kill(member.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def user_process_count(uid: int) -> int:
    """How many processes `uid` has now, zombies included: RLIMIT_NPROC counts them all,
    so a candidate's limit is this plus its own allowance."""
    if have_proc():
        return sum(1 for entry in os.scandir(PROC) if entry.name.isdigit() and _owner(entry.path) == uid)
    return sum(1 for _, owner, _, _, _ in _ps_rows() if owner == uid)


class RunWatch:
    """The run's processes, sampled no more often than their source allows, for the
    parent's process and memory limits."""

    def __init__(self, uid: int | None, run_id: str):
        self.uid, self.run_id = uid, run_id
        self.interval = PROC_INTERVAL_S if have_proc() else PS_INTERVAL_S
        self.sampled_at, self.sample = -float("inf"), []

    def current(self) -> list[Member]:
        now = time.monotonic()
        if now - self.sampled_at >= self.interval:
            self.sampled_at, self.sample = now, members(self.uid, self.run_id)
        return self.sample

    def count(self) -> int:
        return len(self.current())

    def memory_mb(self) -> float:
        """Resident memory of all of the run's processes together."""
        return sum(member.rss_kb for member in self.current()) / 1024


def have_proc() -> bool:
    return os.path.isdir(os.path.join(PROC, "self"))


def _proc_members(uid: int | None, marker: bytes):
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
            if _status_value(status, "State").startswith("Z"):
                continue
            if uid is not None:
                mine = int(_status_value(status, "Uid").split()[0]) == uid
            else:
                mine = marker in Path(entry.path, "environ").read_bytes().split(b"\0")
            if mine:
                yield Member(int(entry.name), int((_status_value(status, "VmRSS") or "0").split()[0]))
        except (OSError, IndexError, ValueError):
            continue


def _status_value(status: str, key: str) -> str:
    """One field of /proc/PID/status ("" if absent); found, not parsed: this runs for
    every process, every few milliseconds while a run is watched."""
    return status.partition(f"\n{key}:")[2].split("\n", 1)[0].strip()


def _ps_rows() -> list[tuple[int, int, str, int, set[str]]]:
    """(pid, uid, state, rss in KB, words of command and environment) of every process."""
    argv = ["ps", *PS_ARGS.get(sys.platform, PS_DEFAULT_ARGS)]
    listing = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=True)
    rows = []
    for line in listing.stdout.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4:
            words = set(parts[4].split()) if len(parts) == 5 else set()
            rows.append((int(parts[0]), int(parts[1]), parts[2], int(parts[3]), words))
    return rows


def _owner(path: str) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None
