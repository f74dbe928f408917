"""Isolation levels: which one this machine offers, and the command line that runs a child
inside it.

- bwrap (Linux): read-only root, private sized tmpfs /tmp holding the work dir, HOME and
  TMPDIR, /root and /home hidden, no network, own pid/ipc/uts namespaces, new session,
  dies with the parent. When we are root the child also drops to a random unprivileged
  uid, so RLIMIT_NPROC binds (root is exempt from it) and a fork bomb stops at
  `max_processes`; the candidate cannot write the host or signal anything but itself.
- unshare (Linux without bwrap): no network, own pid namespace; work dir on the host.
- sandbox-exec (macOS): a profile denying network and writes outside the work dir;
  resident memory is watched because RLIMIT_AS does not work there.
- rlimits-only: resource limits and cleanup only (a warning says so).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from functools import lru_cache
from pathlib import Path

from mlx_repair.sandbox.limits import Limits

ISOLATION_ENV = "MLX_REPAIR_ISOLATION"  # force a weaker level, e.g. for tests
LEVELS = ("bwrap", "unshare", "sandbox-exec", "rlimits-only")
SANDBOX_WORKDIR = "/tmp/run"


@lru_cache(maxsize=None)
def isolation() -> str:
    """The strongest isolation that works here (probed once), or the one forced by
    MLX_REPAIR_ISOLATION; warns when it has to degrade."""
    forced = os.environ.get(ISOLATION_ENV)
    if forced:
        if forced not in LEVELS:
            raise ValueError(f"{ISOLATION_ENV}={forced!r}: use one of {', '.join(LEVELS)}")
        return forced
    if sys.platform == "darwin":
        candidates = ["sandbox-exec"]
    elif on_linux():
        candidates = ["bwrap", "unshare"]
    else:
        candidates = []
    for level in candidates:
        if _works(level):
            return level
        warnings.warn(f"sandbox: {level} is not available here; using a weaker isolation")
    warnings.warn("sandbox: running candidates with resource limits only (no namespaces)")
    return "rlimits-only"


def _works(level: str) -> bool:
    probe = wrap(level, ["/bin/sh", "-c", "exit 0"], Limits(), "/tmp")
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wrap(level: str, argv: list[str], limits: Limits, workdir: str) -> list[str]:
    """The command line that runs `argv` under `level`."""
    if level == "bwrap":
        return _bwrap_args(limits) + ["--"] + argv
    if level == "unshare":
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        return ["unshare", *user, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--", *argv]
    if level == "sandbox-exec":
        return ["sandbox-exec", "-p", _macos_profile(workdir), *argv]
    return argv


def _bwrap_args(limits: Limits) -> list[str]:
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += ["--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp"]
    hidden = [d for d in ("/root", "/home", str(Path.home())) if os.path.isdir(d)]
    for directory in dict.fromkeys(hidden):
        args += ["--tmpfs", directory]
    args += _reexpose(os.path.realpath(sys.base_prefix), ["/tmp", *hidden])
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--die-with-parent", "--new-session", "--chdir", "/"]
    return args


def _reexpose(prefix: str, hidden: list[str]) -> list[str]:
    """Bind the interpreter back (read-only) if it lives in a hidden home directory; the
    directories leading to it are made traversable, as bwrap would create them 0700."""
    home = next((d for d in hidden if prefix.startswith(d.rstrip("/") + "/")), None)
    if home is None:
        return []
    args = []
    for parent in reversed(Path(prefix).parents):
        if len(parent.parts) > len(Path(home).parts):
            args += ["--perms", "0755", "--dir", str(parent)]
    return args + ["--ro-bind", prefix, prefix]


def _macos_profile(workdir: str) -> str:
    return (
        "(version 1)(allow default)(deny network*)"
        '(deny file-write* (require-not (require-any (subpath "'
        + workdir
        + '") (literal "/dev/null") (literal "/dev/zero"))))'
    )


def can_drop(level: str) -> bool:
    """Root on Linux: run the candidate as a throwaway uid (see the module docstring) —
    if that uid can read the interpreter (bwrap re-exposes it; other levels cannot)."""
    if not on_linux() or os.geteuid() != 0:
        return False
    return level == "bwrap" or _world_readable(os.path.realpath(sys.base_prefix))


def on_linux() -> bool:
    return sys.platform.startswith("linux")


@lru_cache(maxsize=None)
def _world_readable(path: str) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *map(str, Path(path).parents)])
