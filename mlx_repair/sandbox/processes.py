"""Child processes: start one (cold, or forked by a warm fork server), feed it its job,
drain its pipes within the limits, and kill everything it left behind.

Every candidate gets a new interpreter (`python -I -S -B`, never a fork of this process,
which may hold MLX) running `sandbox/child.py`. With bwrap as root, each thread keeps a
warm fork server instead: a clean interpreter inside bwrap that never imports MLX nor
runs candidate code, with common modules preloaded, which forks one child per
candidate; the throwaway uid still separates runs, and the server kills all of a uid's
processes before it reports a run finished. Where root cannot drop to a throwaway uid
(the interpreter is unreadable outside bwrap and unshare), the run's processes are
counted here and the run is killed past `max_processes`.

Limits are rlimits set by the child before any candidate code runs, a wall clock kept
here, and capped output drained through `selectors` (no deadlock, bounded memory). Where
the kernel does not bound a run (root that kept its uid is exempt from RLIMIT_NPROC;
macOS enforces no RLIMIT_AS and counts all of the user's processes), the parent counts
the run's processes and sums their memory (`tracking`) until the last one has exited.
The child reports values over a private pipe with a per-run token. Afterwards every
process of the run is killed: its process group, its pid namespace, and any process
still owned by its uid or carrying its marker, found with /proc or `ps`.
"""

from __future__ import annotations

import json
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
from dataclasses import dataclass, field
from pathlib import Path

from mlx_repair.sandbox import child as child_source
from mlx_repair.sandbox.cases import TestPlan
from mlx_repair.sandbox.levels import OWN_ROOT, SANDBOX_WORKDIR, can_drop, on_linux, wrap
from mlx_repair.sandbox.limits import Limits, memory_watched, rlimits
from mlx_repair.sandbox.tracking import RUN_MARKER_ENV, RunWatch, kill_all
SANDBOX_UIDS = (100_000_000, 1_000_000_000)  # random per run; far from real accounts
REPORT_BYTES = 8 << 20
POLL_S = 0.05
EXIT_GRACE_S = 0.5  # after the child exits, how long to wait for pipes held by orphans
EXIT_POLL_S = 0.002  # a child whose pipes closed is most often exiting: look again soon
FORK_SERVER = True  # use a warm fork server when isolation allows it (bwrap, root)
RUNNER_SOURCE = Path(child_source.__file__).read_text(encoding="utf-8")


@dataclass
class Outcome:
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


def run_process(
    problem, plan: TestPlan, program, source: str, limits: Limits, level: str, visible: tuple[str, ...] = ()
) -> Outcome:
    """Run `program` and the plan's steps in a child under `level`. `visible`: host paths
    the program must read (see `levels.wrap`), e.g. the Go toolchain and its build cache."""
    token, run_id = secrets.token_hex(16), secrets.token_hex(8)
    uid = secrets.randbelow(SANDBOX_UIDS[1] - SANDBOX_UIDS[0]) + SANDBOX_UIDS[0] if can_drop(level) else None
    warm = FORK_SERVER and level == "bwrap" and uid is not None
    host_dir = None if level in OWN_ROOT else tempfile.mkdtemp(prefix="mlx-repair-")
    if warm:
        workdir = f"{SANDBOX_WORKDIR}-{uid}"  # runs of one server share its /tmp, one at a time
    else:
        workdir = os.path.realpath(host_dir) if host_dir else SANDBOX_WORKDIR
    job = {
        "token": token,
        "limits": rlimits(limits, level, uid),
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
            child = _WarmChild(_thread_zygote(limits, visible), uid, workdir, pipes.child_ends)
        else:
            child = _ColdChild(level, limits, workdir, run_id, pipes.child_ends, visible)
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
            kill_all(uid, run_id)  # the server cleaned up after a normal run; check the rest
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)


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

    def __init__(self, level: str, limits: Limits, workdir: str, run_id: str, fds: tuple, visible: tuple = ()):
        job_r, report_w, out_w, err_w = fds
        self.watch = RunWatch(None, run_id)
        # Root that could not drop to a throwaway uid is exempt from RLIMIT_NPROC, and
        # on macOS the limit counts all of the user's processes: count the run's here.
        self.watch_processes = not can_drop(level) and (os.geteuid() == 0 or not on_linux())
        self.watch_memory = memory_watched()
        argv = wrap(level, _python_argv(str(job_r), str(report_w)), limits, workdir, visible)
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

    def __init__(self, limits: Limits, visible: tuple = ()):
        self.disk_mb, self.visible = limits.disk_mb, visible
        self.control, theirs = socket.socketpair()
        argv = wrap("bwrap", _python_argv("--serve", str(theirs.fileno())), limits, SANDBOX_WORKDIR, visible)
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


def _thread_zygote(limits: Limits, visible: tuple = ()) -> _Zygote:
    """This thread's fork server (bwrap's --die-with-parent ends it with the thread)."""
    zygote = getattr(_ZYGOTES, "zygote", None)
    if zygote is None or not zygote.alive() or (zygote.disk_mb, zygote.visible) != (limits.disk_mb, visible):
        if zygote is not None:
            zygote.close()
        zygote = _ZYGOTES.zygote = _Zygote(limits, visible)
    return zygote


class _WarmChild:
    """A candidate process forked by this thread's fork server."""

    watch_processes = watch_memory = False  # the uid's RLIMIT_NPROC and RLIMIT_AS bind

    def __init__(self, zygote: _Zygote, uid: int, workdir: str, fds: tuple):
        self.zygote, self.uid, self.pid = zygote, uid, None
        self.returncode = None
        self.clean = False  # the server reported it killed the uid's processes
        try:
            zygote.start(uid, workdir, fds)
        except OSError:  # a server that died since its last run: start another
            self._abandon()
            self.zygote = _thread_zygote(Limits(disk_mb=zygote.disk_mb), zygote.visible)
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
            kill_all(self.uid, "")


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
            self._finish(fd)  # EOF tells the child the job is complete

    def _finish(self, fd: int) -> None:
        self.selector.unregister(fd)
        os.close(fd)

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            self._finish(key.fd)
        self.selector.close()


def _collect(child, streams: _Streams, token: str, limits: Limits) -> Outcome:
    """Run until the child has exited and its pipes are closed (or only orphans hold
    them), or a limit hits. The limits are watched for as long as the pipes are open or
    the child runs: a child that closes its pipes is still timed and measured."""
    outcome = Outcome()
    deadline = time.monotonic() + limits.timeout_s
    exited_at = None
    while True:
        now = time.monotonic()
        if exited_at is None and child.poll() is not None:
            exited_at = now
        if _limit_hit(outcome, child, streams, limits, now >= deadline):
            child.kill()
            break
        if exited_at is not None and (not streams.open or now - exited_at >= EXIT_GRACE_S):
            break
        if streams.open:
            streams.pump(min(POLL_S, deadline - now), limits.output_bytes)
        else:
            time.sleep(min(EXIT_POLL_S, deadline - now))  # pipes closed: exiting, or running on
    outcome.returncode = child.wait()
    outcome.stderr_tail = bytes(streams.stderr[-600:]).decode("utf-8", "replace")
    _parse_reports(bytes(streams.report), token, outcome)
    return outcome


def _limit_hit(outcome: Outcome, child, streams: _Streams, limits: Limits, late: bool) -> bool:
    """Mark on `outcome` the first limit the run has passed, if any."""
    if late:
        outcome.timed_out = True
    elif streams.output_size > limits.output_bytes:
        outcome.over_output = True
    elif len(streams.report) > REPORT_BYTES:
        outcome.tampered = True
    elif child.watch_memory and child.watch.memory_mb() > limits.memory_mb:
        outcome.over_memory = True
    elif child.watch_processes and child.watch.count() > limits.max_processes:
        outcome.too_many_processes = True
    else:
        return False
    return True


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return b""


def _parse_reports(data: bytes, token: str, outcome: Outcome) -> None:
    """Accept only complete lines that carry this run's token; anything else is tampering."""
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


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
