"""Isolation levels: which one a run uses, whether it works here, and the command line that
runs a child inside it.

- bwrap (Linux's real sandbox): read-only root, private sized tmpfs /tmp holding the work
  dir, HOME and TMPDIR, /root and /home hidden, a minimal /dev, no network, own
  pid/ipc/uts namespaces, new session, dies with the parent.
- unshare (Linux, util-linux): new mount, pid and network namespaces (and a user
  namespace when not root); `mounts.py` makes every mount read-only and gives the same
  private /tmp, minimal /dev and hidden homes as bwrap. The pid namespace ends with the
  child, killing whatever it left. Not root, the child holds no capability (it cannot
  undo a mount) and RLIMIT_NPROC counts the user's own processes.
- sandbox-exec (macOS's real sandbox): `seatbelt.py`'s deny-by-default profile: no
  network, writes only in the work dir, no home directory, signals and process
  inspection only within the sandbox, a few system services. The run's processes are
  found by their marker with `ps` (no /proc), their memory is summed because RLIMIT_AS
  does not work there, and RLIMIT_NPROC counts all of the user's processes, so the
  parent counts the run's too.
- rlimits-only: resource limits, a scrubbed environment and the clean-up of the run's
  processes; nothing stops file writes, network or signals.

Under bwrap and unshare as root the child also drops to a random unprivileged uid, so
RLIMIT_NPROC binds (root is exempt) and a fork bomb stops at `max_processes`.

Model-written code runs under the platform's real sandbox, or under a weaker level only
when the user chose it (`sandbox.isolation`, `--isolation`): "auto" refuses with one line
naming what to install rather than degrade quietly, and a job says once which weaker
level it runs under. What each level protects, as measured: README.md, "The sandbox".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from mlx_repair.config import ISOLATION_CHOICES as CHOICES
from mlx_repair.errors import UserError
from mlx_repair.sandbox import seatbelt
from mlx_repair.sandbox.limits import Limits

AUTO = "auto"
# The platform's real sandbox, which "auto" requires, and how to get it.
REAL_SANDBOX = {
    "linux": ("bwrap", "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"),
    "darwin": ("sandbox-exec", f"{seatbelt.SANDBOX_EXEC} ships with macOS; see docs/macos_verification.md"),
}
TRIED = {"linux": ("bwrap", "unshare", "rlimits-only"), "darwin": ("sandbox-exec", "rlimits-only")}
# Levels that build the child's own view of the file system: a private /tmp holds the
# work dir, the homes are hidden and the interpreter is bound back.
OWN_ROOT = ("bwrap", "unshare")
SANDBOX_WORKDIR = "/tmp/run"
MOUNTS_SOURCE = Path(__file__).with_name("mounts.py").read_text(encoding="utf-8")
_ANNOUNCED: set[str] = set()


def isolation(requested: str = AUTO) -> str:
    """The level candidates run under: for "auto" the platform's real sandbox, or a
    one-line UserError saying what to install; a level asked for by name, if it works."""
    if requested not in CHOICES:
        raise ValueError(f"isolation {requested!r}: use one of {', '.join(CHOICES)}")
    return _real_or_refuse() if requested == AUTO else _working(requested)


def _real_or_refuse() -> str:
    level, remedy = real_sandbox()
    if level is None:
        raise UserError(f"sandbox: no sandbox for {sys.platform}; to run candidates with resource limits only, pass --isolation rlimits-only")
    if reason := failure(level):
        weaker = " or ".join(f'"{name}"' for name in available() if name != level)
        raise UserError(
            f"sandbox: {reason}; model-written code runs only in a real sandbox: {remedy}, "
            f"or choose a weaker one with --isolation or sandbox.isolation ({weaker})"
        )
    return level


def _working(level: str) -> str:
    if reason := failure(level):
        raise UserError(f"sandbox.isolation = {level!r} does not work here ({reason}); levels that do: {', '.join(available())}")
    return level


def real_sandbox() -> tuple[str | None, str]:
    """The platform's real sandbox and how to get it (None on other platforms)."""
    return REAL_SANDBOX.get(_platform(), (None, ""))


def available() -> list[str]:
    """The levels that work on this machine, strongest first."""
    return [level for level in TRIED.get(_platform(), ("rlimits-only",)) if failure(level) is None]


def announcement(level: str) -> str | None:
    """The line saying that candidates run under less than the platform's real sandbox:
    the first time this process (a command, one job) uses `level`, else None."""
    real = real_sandbox()[0]
    if level == real or level in _ANNOUNCED:
        return None
    _ANNOUNCED.add(level)
    return f"sandbox: candidates run under {level}, weaker than {real or 'a real sandbox'}, as chosen (--isolation, sandbox.isolation)"


@lru_cache(maxsize=None)
def failure(level: str) -> str | None:
    """Why `level` does not work here (probed once), or None when it does: whether a
    Python child, as candidates get, starts under it."""
    if level == "rlimits-only":
        return None
    python = [os.path.realpath(sys.executable), "-I", "-S", "-B", "-c", "pass"]
    probe = wrap(level, python, Limits(), tempfile.gettempdir())
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return f"{probe[0]} not found"
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        return f"{probe[0]}: {lines[-1][:160]}"
    return None


def wrap(level: str, argv: list[str], limits: Limits, workdir: str, visible: tuple[str, ...] = ()) -> list[str]:
    """The command line that runs `argv` under `level`. `visible`: host paths the child
    must read even inside a hidden home (a language's toolchain and build cache)."""
    if level == "bwrap":
        return _bwrap_args(limits, visible) + ["--"] + argv
    if level == "unshare":
        return _unshare_args(limits, visible) + argv
    if level == "sandbox-exec":
        return seatbelt.command(argv, workdir)
    return argv


def _bwrap_args(limits: Limits, visible: tuple[str, ...] = ()) -> list[str]:
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += ["--size", str(limits.disk_mb << 20), "--tmpfs", "/tmp"]
    hidden = hidden_homes()
    for directory in hidden:
        args += ["--tmpfs", directory]
    for path in _kept_paths(visible):
        args += _reexpose(path, ["/tmp", *hidden])
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--die-with-parent", "--new-session", "--chdir", "/"]
    return args


def _unshare_args(limits: Limits, visible: tuple[str, ...] = ()) -> list[str]:
    """unshare makes the namespaces (a user namespace maps us to root in it when we are
    not root); its first process runs mounts.py, which builds the file system and execs
    the child. --kill-child: the namespace, and all in it, dies with unshare."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    spec = {
        "tmp_mb": limits.disk_mb,
        "homes": hidden_homes(),
        "prefixes": _kept_paths(visible),
        "drop_caps": not can_drop("unshare"),
    }
    namespaces = ["--mount", "--propagation", "private", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    python = os.path.realpath(sys.executable)
    return ["unshare", *user, *namespaces, "--", python, "-I", "-S", "-B", "-c", MOUNTS_SOURCE, json.dumps(spec)]


def _kept_paths(visible: tuple[str, ...]) -> list[str]:
    """The interpreter's prefix and the `visible` paths, resolved; none inside another."""
    paths = sorted({os.path.realpath(p) for p in (sys.base_prefix, *visible)})
    return [p for p in paths if not any(p.startswith(o.rstrip("/") + "/") for o in paths if o != p)]


def hidden_homes() -> list[str]:
    """The home directories a candidate must not see (never "/", some service users' home)."""
    return [d for d in dict.fromkeys(("/root", "/home", str(Path.home()))) if d != "/" and os.path.isdir(d)]


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


def can_drop(level: str) -> bool:
    """Root on Linux: run the candidate as a throwaway uid (see the module docstring) —
    if that uid can read the interpreter (bwrap and unshare bind it back; the other
    levels cannot)."""
    if not on_linux() or os.geteuid() != 0:
        return False
    return level in OWN_ROOT or _world_readable(os.path.realpath(sys.base_prefix))


def on_linux() -> bool:
    return sys.platform.startswith("linux")


def _platform() -> str:
    return "linux" if on_linux() else sys.platform


@lru_cache(maxsize=None)
def _world_readable(path: str) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *map(str, Path(path).parents)])
