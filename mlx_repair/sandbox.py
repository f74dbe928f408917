"""Run one candidate against one problem's tests in a fresh, isolated, limited process.

Every candidate gets a new interpreter (`python -I -S -B`, never a fork of this process,
which may hold MLX) running `mlx_repair/runner.py`, inside the strongest isolation this
machine offers:

- bwrap (Linux): read-only root, private sized tmpfs /tmp holding the work dir, HOME and
  TMPDIR, /root and /home hidden, no network, own pid/ipc/uts namespaces, new session,
  dies with the parent. When we are root the runner also drops to a random unprivileged
  uid, so RLIMIT_NPROC binds (root is exempt from it) and a fork bomb stops at
  `max_processes`; the candidate cannot write the host or signal anything but itself.
- unshare (Linux without bwrap): no network, own pid namespace; work dir on the host.
- sandbox-exec (macOS): a profile denying network and writes outside the work dir;
  resident memory is watched here because RLIMIT_AS does not work there.
- rlimits-only: resource limits and cleanup only (a warning says so).
Where root cannot drop to a throwaway uid (the interpreter is unreadable without bwrap),
the run's processes are counted here and the run is killed past `max_processes`.

Speed: with bwrap as root, each thread keeps a warm fork server — a clean interpreter
inside bwrap that never imports MLX nor runs candidate code, with common modules
preloaded — which forks one child per candidate; the throwaway uid still separates runs,
and the server kills all of a uid's processes before it reports a run finished.

Limits are rlimits set by the runner before any candidate code runs, a wall clock kept
here, and capped output drained through `selectors` (no deadlock, bounded memory). The
child reports values over a private pipe with a per-run token; `cases.judge` decides.
Afterwards every process of the run is killed: its session, its pid namespace, and any
process still owned by its uid.
"""

from __future__ import annotations

import marshal
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from mlx_repair import runner
from mlx_repair.cases import CaseResult, TestPlan, assemble, feedback_text, judge, plan_tests
from mlx_repair.problems import Problem

__all__ = ["Limits", "CaseResult", "Verdict", "run_candidate", "feedback_text", "Pool", "isolation"]

ISOLATION_ENV = "MLX_REPAIR_ISOLATION"  # force a weaker level, e.g. for tests
LEVELS = ("bwrap", "unshare", "sandbox-exec", "rlimits-only")
RUN_MARKER_ENV = "MLX_REPAIR_RUN"
SANDBOX_WORKDIR = "/tmp/run"
SANDBOX_UIDS = (100_000_000, 1_000_000_000)  # random per run; far from real accounts
REPORT_BYTES = 8 << 20
POLL_S = 0.05
EXIT_GRACE_S = 0.5  # after the child exits, how long to wait for pipes held by orphans
FORK_SERVER = True  # use a warm fork server when isolation allows it (bwrap, root)
RUNNER_SOURCE = Path(runner.__file__).read_text(encoding="utf-8")


@dataclass
class Limits:
    """Per-candidate limits; the defaults are generous for HumanEval-style problems."""

    timeout_s: float = 10.0  # wall clock
    cpu_s: float = 10.0
    memory_mb: int = 1024  # RLIMIT_AS on Linux, resident memory on macOS
    file_size_mb: int = 16  # largest file the candidate may write
    max_processes: int = 32
    output_bytes: int = 64_000  # stdout + stderr; more ends the run ("output_limit")
    disk_mb: int = 64  # the sandbox's private /tmp (bwrap)


@dataclass
class Verdict:
    task_id: str
    passed: bool  # every case, visible and hidden, passed (decided here, not in the child)
    status: str  # passed | failed | error | timeout | syntax_error | crashed | memory | output_limit
    cases: list[CaseResult]
    feedback: str  # from visible cases only, capped to fit a prompt
    isolation: str
    duration_s: float
    error: str | None = None  # what ended the run early, if anything (shown in feedback)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Outcome:
    """What the parent saw of one child process."""

    records: dict[int, dict] = field(default_factory=dict)
    load_error: dict | None = None
    setup_error: dict | None = None
    done: bool = False
    tampered: bool = False
    timed_out: bool = False
    over_output: bool = False
    over_memory: bool = False
    too_many_processes: bool = False
    returncode: int | None = None
    stderr_tail: str = ""


# --- isolation -----------------------------------------------------------------------------


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
    elif _on_linux():
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
    probe = _wrap(level, ["/bin/sh", "-c", "exit 0"], Limits(), "/tmp")
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _wrap(level: str, argv: list[str], limits: Limits, workdir: str) -> list[str]:
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


# --- one run -------------------------------------------------------------------------------


def run_candidate(problem: Problem, completion: str, limits: Limits | None = None) -> Verdict:
    """Run `completion` (a body continuing the prompt, or a whole program) on every case."""
    limits = limits or Limits()
    start = time.monotonic()
    plan = plan_tests(problem)
    level = isolation()
    source = assemble(problem, completion)
    try:
        program = compile(source, runner.SOLUTION_FILE, "exec")
    except (SyntaxError, ValueError) as error:
        return _verdict(problem, plan, _Outcome(), level, start, _syntax_message(error, source), syntax=True)
    outcome = _run_process(problem, plan, program, source, limits, level)
    return _verdict(problem, plan, outcome, level, start, _run_error(outcome, limits))


def _syntax_message(error: Exception, source: str) -> str:
    if not isinstance(error, SyntaxError):
        return f"SyntaxError: {error}"
    line = (error.text or "").rstrip("\n")
    where = f" ({runner.SOLUTION_FILE}, line {error.lineno})" if error.lineno else ""
    caret = " " * max((error.offset or 1) - 1, 0) + "^" if line else ""
    return "\n".join(filter(None, [f"SyntaxError: {error.msg}{where}", line, caret]))


def _run_process(problem, plan: TestPlan, program, source: str, limits: Limits, level: str) -> _Outcome:
    token, run_id = secrets.token_hex(16), secrets.token_hex(8)
    uid = secrets.randbelow(SANDBOX_UIDS[1] - SANDBOX_UIDS[0]) + SANDBOX_UIDS[0] if _can_drop(level) else None
    warm = FORK_SERVER and level == "bwrap" and uid is not None
    host_dir = None if level == "bwrap" else tempfile.mkdtemp(prefix="mlx-repair-")
    if warm:
        workdir = f"{SANDBOX_WORKDIR}-{uid}"  # runs of one server share its /tmp, one at a time
    else:
        workdir = os.path.realpath(host_dir) if host_dir else SANDBOX_WORKDIR
    job = {
        "token": token,
        "limits": _rlimits(limits, level, uid),
        "workdir": workdir,
        "uid": uid,
        "program": program,
        "program_source": source,
        "test": plan.test_code,
        "test_source": plan.test_source,
        "entry_point": problem.entry_point,
        "candidate_name": plan.candidate_name,
        "steps": list(plan.steps),
    }
    pipes = _Pipes()
    try:
        if warm:
            child = _WarmChild(_thread_zygote(limits), uid, workdir, pipes.child_ends)
        else:
            child = _ColdChild(level, limits, workdir, run_id, pipes.child_ends)
    except BaseException:
        pipes.close(pipes.parent_ends)
        raise
    finally:
        pipes.close(pipes.child_ends)
    streams = _Streams(marshal.dumps(job), *pipes.parent_ends)
    outcome = None
    try:
        outcome = _collect(child, streams, token, limits)
        return outcome
    finally:
        child.kill()
        streams.close()
        if not (warm and child.clean and outcome is not None and outcome.done):
            _reap(uid, run_id)  # the server cleaned up after a normal run; check the rest
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)


def _can_drop(level: str) -> bool:
    """Root on Linux: run the candidate as a throwaway uid (see the module docstring) —
    if that uid can read the interpreter (bwrap re-exposes it; other levels cannot)."""
    if not _on_linux() or os.geteuid() != 0:
        return False
    return level == "bwrap" or _world_readable(os.path.realpath(sys.base_prefix))


def _on_linux() -> bool:
    return sys.platform.startswith("linux")


@lru_cache(maxsize=None)
def _world_readable(path: str) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *map(str, Path(path).parents)])


def _rlimits(limits: Limits, level: str, uid: int | None) -> dict[str, int]:
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


class _Pipes:
    """job, report, stdout and stderr pipes: the child's ends and the parent's."""

    def __init__(self):
        pairs = [os.pipe() for _ in range(4)]
        (job_r, job_w), (report_r, report_w), (out_r, out_w), (err_r, err_w) = pairs
        self.child_ends = (job_r, report_w, out_w, err_w)
        self.parent_ends = (job_w, report_r, out_r, err_r)

    @staticmethod
    def close(fds: tuple) -> None:
        for fd in fds:
            _close_quietly(fd)


def _python_argv(*args: str) -> list[str]:
    return [os.path.realpath(sys.executable), "-I", "-S", "-B", "-c", RUNNER_SOURCE, *args]


def _child_env(run_id: str) -> dict[str, str]:
    """The whole environment of a candidate: no secrets, tokens or proxies leak in."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", RUN_MARKER_ENV: run_id}


class _ColdChild:
    """A fresh interpreter started for this one candidate, inside `level`."""

    clean = False

    def __init__(self, level: str, limits: Limits, workdir: str, run_id: str, fds: tuple):
        job_r, report_w, out_w, err_w = fds
        self.run_id = run_id
        # Root that could not drop to a throwaway uid is exempt from RLIMIT_NPROC:
        # count the run's processes from here instead.
        self.watch_processes = _on_linux() and os.geteuid() == 0 and not _can_drop(level)
        argv = _wrap(level, _python_argv(str(job_r), str(report_w)), limits, workdir)
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(job_r, report_w),
            env=_child_env(run_id),
            cwd="/",
            start_new_session=True,
        )
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self) -> int | None:
        return self.process.wait()

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _Zygote:
    """A warm fork server: one clean interpreter (never imported MLX, never runs candidate
    code) inside bwrap, with common modules preloaded, that forks a child per candidate."""

    def __init__(self, limits: Limits):
        self.disk_mb = limits.disk_mb
        self.control, theirs = socket.socketpair()
        argv = _wrap("bwrap", _python_argv("--serve", str(theirs.fileno())), limits, SANDBOX_WORKDIR)
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=_child_env("zygote"),
                cwd="/",
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.replies = b""

    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, uid: int, workdir: str, fds: tuple) -> None:
        socket.send_fds(self.control, [f"{uid} {workdir}".encode()], list(fds))

    def status(self, timeout: float | None) -> int | None:
        """The wait status of the current child, once the server has cleaned up after it."""
        self.control.settimeout(timeout)
        try:
            while b"\n" not in self.replies:
                chunk = self.control.recv(64)
                if not chunk:
                    raise ConnectionError("the fork server died")
                self.replies += chunk
        except (TimeoutError, BlockingIOError):
            return None
        line, self.replies = self.replies.split(b"\n", 1)
        return int(line)

    def close(self) -> None:
        self.control.close()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()


_ZYGOTES = threading.local()


def _thread_zygote(limits: Limits) -> _Zygote:
    """This thread's fork server (bwrap's --die-with-parent ends it with the thread)."""
    zygote = getattr(_ZYGOTES, "zygote", None)
    if zygote is None or not zygote.alive() or zygote.disk_mb != limits.disk_mb:
        if zygote is not None:
            zygote.close()
        zygote = _ZYGOTES.zygote = _Zygote(limits)
    return zygote


class _WarmChild:
    """A candidate process forked by this thread's fork server."""

    watch_processes = False  # the uid's RLIMIT_NPROC binds

    def __init__(self, zygote: _Zygote, uid: int, workdir: str, fds: tuple):
        self.zygote, self.uid, self.pid = zygote, uid, None
        self.returncode = None
        self.clean = False  # the server reported it killed the uid's processes
        try:
            zygote.start(uid, workdir, fds)
        except OSError:  # a server that died since its last run: start another
            self._abandon()
            self.zygote = _thread_zygote(Limits(disk_mb=zygote.disk_mb))
            self.zygote.start(uid, workdir, fds)

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self) -> int | None:
        code = self._status(30)
        if code is None:  # a server that does not answer must not answer the next run
            self._abandon()
            return -signal.SIGKILL
        return code

    def _status(self, timeout: float) -> int | None:
        if self.clean:
            return self.returncode
        try:
            status = self.zygote.status(timeout)
        except (ConnectionError, OSError):
            self._abandon()
            return -signal.SIGKILL
        if status is None:
            return None
        self.clean, self.returncode = True, os.waitstatus_to_exitcode(status)
        return self.returncode

    def _abandon(self) -> None:
        self.zygote.close()
        if getattr(_ZYGOTES, "zygote", None) is self.zygote:
            _ZYGOTES.zygote = None

    def kill(self) -> None:
        if not self.clean:
            _reap(self.uid, "")


class _Streams:
    """The parent's ends of the child's pipes: the job is fed and stdout, stderr and the
    report pipe are drained without blocking; output is counted but only a tail kept."""

    def __init__(self, job: bytes, job_w: int, report_r: int, out_r: int, err_r: int):
        self.pending = memoryview(job)
        self.report, self.stderr, self.output_size = bytearray(), bytearray(), 0
        self.selector = selectors.DefaultSelector()
        os.set_blocking(job_w, False)
        self.selector.register(job_w, selectors.EVENT_WRITE, "job")
        self.selector.register(report_r, selectors.EVENT_READ, "report")
        self.selector.register(out_r, selectors.EVENT_READ, "stdout")
        self.selector.register(err_r, selectors.EVENT_READ, "stderr")

    @property
    def open(self) -> bool:
        return bool(self.selector.get_map())

    def pump(self, timeout: float, stderr_cap: int) -> None:
        for key, _ in self.selector.select(timeout=max(timeout, 0)):
            if key.data == "job":
                self._feed(key.fd)
                continue
            chunk = _read_some(key.fd)
            if not chunk:
                self._finish(key.fd)
            elif key.data == "report":
                self.report += chunk
            else:
                self.output_size += len(chunk)
                if key.data == "stderr":
                    self.stderr = (self.stderr + chunk)[-stderr_cap:]

    def _feed(self, fd: int) -> None:
        try:
            self.pending = self.pending[os.write(fd, self.pending[: 1 << 16]) :]
        except BlockingIOError:
            return
        except BrokenPipeError:
            self.pending = self.pending[:0]
        if not self.pending:
            self._finish(fd)  # EOF tells the runner the job is complete

    def _finish(self, fd: int) -> None:
        self.selector.unregister(fd)
        os.close(fd)

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            self._finish(key.fd)
        self.selector.close()


def _collect(child, streams: _Streams, token: str, limits: Limits) -> _Outcome:
    """Run until the child's pipes close, a limit hits, or the child has exited and only
    orphans hold its pipes."""
    outcome = _Outcome()
    deadline = time.monotonic() + limits.timeout_s
    exited_at = None
    while streams.open:
        now = time.monotonic()
        if exited_at is None and child.poll() is not None:
            exited_at = now
        if now >= deadline:
            outcome.timed_out = True
        elif streams.output_size > limits.output_bytes:
            outcome.over_output = True
        elif len(streams.report) > REPORT_BYTES:
            outcome.tampered = True
        elif sys.platform == "darwin" and _rss_mb(child.pid) > limits.memory_mb:
            outcome.over_memory = True
        elif child.watch_processes and _count(child.run_id) > limits.max_processes:
            outcome.too_many_processes = True
        elif exited_at is None or now - exited_at < EXIT_GRACE_S:
            streams.pump(min(POLL_S, deadline - now), limits.output_bytes)
            continue
        break
    limit_hit = outcome.timed_out or outcome.over_output or outcome.tampered or outcome.over_memory
    limit_hit |= outcome.too_many_processes
    if not limit_hit and not _exits_by(child, deadline):
        outcome.timed_out = True  # it closed its pipes but kept running
    if outcome.timed_out or limit_hit:
        child.kill()
    outcome.returncode = child.wait()
    outcome.stderr_tail = bytes(streams.stderr[-600:]).decode("utf-8", "replace")
    _parse_reports(bytes(streams.report), token, outcome)
    return outcome


def _exits_by(child, deadline: float) -> bool:
    while child.poll() is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return b""


def _parse_reports(data: bytes, token: str, outcome: _Outcome) -> None:
    """Accept only complete lines that carry this run's token; anything else is tampering."""
    import json

    prefix = token.encode() + b" "
    for line in data.split(b"\n"):
        if not line:
            continue
        if not line.startswith(prefix):
            outcome.tampered = True
            continue
        try:
            record = json.loads(line[len(prefix) :])
        except ValueError:
            outcome.tampered = True
            continue
        if "i" in record:
            outcome.records.setdefault(record["i"], record)
        elif "load" in record:
            outcome.load_error = record
        elif "setup" in record:
            outcome.setup_error = outcome.setup_error or record
        elif "done" in record:
            outcome.done = True


# --- cleanup -------------------------------------------------------------------------------


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _reap(uid: int | None, run_id: str, patience_s: float = 5.0) -> None:
    """Kill every process left from the run (by uid, or by the run marker in its
    environment) and wait until they are gone. Linux only: /proc."""
    if not os.path.isdir("/proc/self"):
        return
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        left = list(_leftovers(uid, run_id))
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _leftovers(uid: int | None, run_id: str) -> Iterator[int]:
    marker = f"{RUN_MARKER_ENV}={run_id}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
            if "\nState:\tZ" in status:
                continue
            if uid is not None:
                owner = int(status.split("\nUid:\t", 1)[1].split()[0])
                if owner == uid:
                    yield int(entry.name)
            elif marker in Path(entry.path, "environ").read_bytes().split(b"\0"):
                yield int(entry.name)
        except (OSError, IndexError, ValueError):
            continue


def _count(run_id: str) -> int:
    return sum(1 for _ in _leftovers(None, run_id))


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


def _rss_mb(pid: int) -> float:
    """Resident memory of the child (macOS, where RLIMIT_AS is not enforced)."""
    try:
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
        return int(out.stdout.strip() or 0) / 1024
    except (OSError, ValueError):
        return 0.0


# --- verdict -------------------------------------------------------------------------------


def _run_error(outcome: _Outcome, limits: Limits) -> str | None:
    """What ended the run, in words the model can act on (None if it ran to the end)."""
    if outcome.timed_out:
        return f"Timeout: the program did not finish within {limits.timeout_s:g} s"
    if outcome.over_output:
        return f"Output limit: the program printed more than {limits.output_bytes} bytes"
    if outcome.over_memory:
        return f"MemoryError: the program used more than {limits.memory_mb} MB"
    if outcome.too_many_processes:
        return f"Process limit: the program started more than {limits.max_processes} processes"
    if outcome.tampered:
        return "Error: the program wrote to the test harness's private report channel"
    if outcome.load_error:
        return outcome.load_error.get("tb") or outcome.load_error.get("e")
    if outcome.setup_error:
        return "Error in the test setup: " + (outcome.setup_error.get("e") or "")
    if not outcome.done:
        return _crash_message(outcome, limits)
    return None


def _crash_message(outcome: _Outcome, limits: Limits) -> str:
    code = outcome.returncode or 0
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number == signal.SIGXCPU:
        what = f"was killed by SIGXCPU (CPU limit {limits.cpu_s:g} s)"
    elif number:
        what = f"was killed by {signal.Signals(number).name}"
    else:
        what = f"exited with code {code} before all tests ran"
    tail = outcome.stderr_tail.strip()
    return f"Crashed: the process {what}" + (f"\n{tail[-400:]}" if tail else "")


def _status(outcome: _Outcome, run_error: str | None, cases: list[CaseResult], syntax: bool) -> str:
    errors = [c.error or "" for c in cases] + [run_error or ""]
    if syntax:
        return "syntax_error"
    if outcome.timed_out or _cpu_killed(outcome):
        return "timeout"
    if outcome.over_output:
        return "output_limit"
    if outcome.over_memory or any(e.startswith("MemoryError") or "\nMemoryError" in e for e in errors):
        return "memory"
    if outcome.tampered or outcome.load_error or outcome.setup_error or outcome.too_many_processes:
        return "error"
    if not outcome.done:
        return "crashed"
    return "passed" if cases and all(c.passed for c in cases) else "failed"


def _cpu_killed(outcome: _Outcome) -> bool:
    code = outcome.returncode or 0
    return not outcome.done and code in (-signal.SIGXCPU, 128 + signal.SIGXCPU)


def _verdict(
    problem, plan, outcome: _Outcome, level: str, start: float, run_error: str | None, syntax: bool = False
) -> Verdict:
    first_missing = None if (outcome.done or syntax) else run_error
    cases = judge(plan, outcome.records, first_missing)
    status = _status(outcome, run_error, cases, syntax)
    verdict = Verdict(
        task_id=problem.task_id,
        passed=status == "passed",
        status=status,
        cases=cases,
        feedback="",
        isolation=level,
        duration_s=round(time.monotonic() - start, 4),
        error=run_error,
    )
    verdict.feedback = feedback_text(verdict)
    return verdict


# --- many runs -----------------------------------------------------------------------------


class Pool:
    """Run many candidates at once (default: one per core), streaming verdicts as each
    finishes. Threads only wait on child processes, so the GIL is not the bottleneck."""

    def __init__(self, workers: int | None = None, limits: Limits | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.limits = limits or Limits()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def __enter__(self) -> "Pool":
        isolation()  # probe (and warn) once, before the threads start
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def run(self, jobs: Iterable[tuple[Any, Problem, str]]) -> Iterator[tuple[Any, Verdict]]:
        """(key, problem, completion) in; (key, verdict) out, in order of completion."""
        jobs = iter(jobs)
        running: dict = {}
        window = self.workers * 2
        while True:
            for key, problem, completion in _take(jobs, window - len(running)):
                future = self._executor.submit(run_candidate, problem, completion, self.limits)
                running[future] = key
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()


def _take(iterator: Iterator, count: int) -> list:
    items = []
    for _ in range(max(count, 0)):
        try:
            items.append(next(iterator))
        except StopIteration:
            break
    return items
