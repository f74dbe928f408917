"""Hostile candidates, run for real under every isolation level that works here: each gets
the right verdict, the host is untouched (or, where a level cannot protect it, the test
says so), no process outlives its run, and the pool keeps going.

All run through one Pool per level, interleaved with canonical HumanEval solutions that
must still pass. "Probe" candidates return the right answer only if the isolation held,
so a pass means the attack failed. What each level protects, as asserted here, is the
table in README.md ("The sandbox"); benchmarks/results/isolation_levels.md has the runs.

Candidates that could reach other processes of this machine if their level did not hold
run only where it cannot: signals to every process only under bwrap (pid namespace and
a throwaway uid), an unbounded fork bomb only where RLIMIT_NPROC binds, a remount only
inside a level's own mount namespace. Signals sent to the outside target a `sleep`
started by the test (`test_no_candidate_can_signal_a_process_outside_its_run`). The host
is inspected with `ps`, so the suite runs on Linux and macOS alike.
"""

import ast
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlx_repair.problems import Problem, load_problems
from mlx_repair.sandbox import Limits, Pool, levels, processes

MARK = f"987654.{secrets.randbelow(10**6)}"  # a unique `sleep` argument: findable with ps
UNMARKED = f"876543.{secrets.randbelow(10**6)}"  # the same, for a process that dropped the run's environment
LIMITS = Limits(timeout_s=3.0, cpu_s=3.0)
LEVELS_HERE = levels.available()
ADD = Problem(
    task_id="Hostile/add",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    entry_point="add",
    test=(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(0, 0) == 0\n"
        "    assert candidate(-1, 1) == 0\n"
        "    assert candidate(10, 5) == 15\n"
    ),
    canonical_solution="    return a + b\n",
)
# Probes whose attack succeeds under a level (measured on Linux as root; sandbox-exec from
# its profile, not yet run on a Mac): there the candidate gets "failed" and the host shows
# the damage.
NOT_PROTECTED = {
    "rlimits-only": {
        "write_outside", "delete_home_file", "read_home", "loopback", "network_out", "signal_outside",
        "orphan_without_environment",
    },
    "sandbox-exec": {"orphan_without_environment"},  # no pid namespace: cannot be found
}
BLIND = {"orphan_without_environment"}  # cannot tell whether its attack worked; the host can


def runs_under(name: str, level: str) -> str | None:
    """Why candidate `name` must not run under `level` on this machine (None: it may)."""
    if name == "kill_everything" and level != "bwrap":
        return "signals every process it can: run only under bwrap (pid namespace and a throwaway uid)"
    if name == "fork_bomb" and not nproc_binds(level):
        return "root is exempt from RLIMIT_NPROC: an unbounded fork bomb could starve this machine (fork_count_is_bounded measures the bound)"
    if name == "remount" and level not in levels.OWN_ROOT:
        return "no mount namespace of its own: the remount would change this machine's mounts"
    return None


def nproc_binds(level: str) -> bool:
    """Whether the kernel bounds a run's processes (RLIMIT_NPROC) to about the limit: root
    is exempt unless the child drops to a throwaway uid; on macOS the limit counts all of
    the user's processes, counted just before the run, so it is only about right."""
    return levels.can_drop(level) or (levels.on_linux() and os.geteuid() != 0)


def fork_count_statuses(level: str) -> set:
    """How a run that forks 500 sleepers ends: bounded by the kernel, it passes; where the
    parent counts (root that kept its uid), it ends in an error past the limit; on macOS
    whichever of the two comes first."""
    if nproc_binds(level):
        return {"passed"}
    return {"error"} if levels.on_linux() else {"passed", "error"}


@dataclass
class Host:
    """What candidates must not touch: files here and in the real home, a server on
    loopback, a process of the test's own."""

    caller_dir: Path
    home_dir: Path  # made by the test in the real home directory
    server: socket.socket
    target: subprocess.Popen

    @property
    def home_file(self) -> Path:
        return self.home_dir / "keep.txt"  # the read probe reads secret.txt beside it


def _body(code: str) -> str:
    return "".join(f"    {line}\n" for line in code.strip("\n").splitlines())


def hostile_candidates(caller_dir: Path, home_file: Path, port: int, target_pid: int) -> dict[str, tuple[str, set]]:
    """name -> (completion, acceptable statuses). {"passed"} marks a probe."""
    caller_file = caller_dir / "keep.txt"
    return {
        "infinite_loop": (_body("while True:\n    pass"), {"timeout"}),
        "sleep_forever": (_body("import time\ntime.sleep(10**6)"), {"timeout"}),
        "swallow_signals": (_body(
            "import signal\n"
            "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):\n"
            "    signal.signal(s, signal.SIG_IGN)\n"
            "while True:\n    pass"), {"timeout", "crashed"}),
        "fork_bomb": (_body(
            "import os\n"
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"), {"timeout", "crashed"}),
        "fork_count_is_bounded": (_body(
            "import os, time\nn = 0\n"
            "while n < 500:\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
            "    n += 1\n"
            f"return a + b if n <= {LIMITS.max_processes} else -n"), {"passed"}),
        "huge_allocation": (_body("x = bytearray(16 * 1024 ** 3)\nreturn a + b"), {"memory"}),
        "huge_file": (_body(  # 1 MB at a time: a 200 MB buffer alone took seconds on a busy machine
            "with open('big', 'wb') as big:\n    for _ in range(200):\n        big.write(b'x' * (1 << 20))\n"
            "return a + b"), {"failed"}),
        "output_flood": (_body("import sys\nsys.stdout.write('x' * (100 << 20))\nreturn a + b"), {"output_limit"}),
        "write_outside": (_body(
            "import os\nheld = 0\n"
            f"for attack in (lambda: os.remove({str(caller_file)!r}),\n"
            f"               lambda: open({str(caller_dir / 'new.txt')!r}, 'w').write('x')):\n"
            "    try:\n        attack()\n    except OSError:\n        held += 1\n"
            "return a + b if held == 2 else -held"), {"passed"}),
        "delete_home_file": (_body(
            f"import os\ntry:\n    os.remove({str(home_file)!r})\nexcept OSError:\n    return a + b\nreturn -1"),
            {"passed"}),
        "read_home": (_body(
            f"try:\n    open({str(home_file.with_name('secret.txt'))!r}).read()\nexcept OSError:\n    return a + b\nreturn -1"), {"passed"}),
        "loopback": (_body(
            "import socket\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
            "except OSError:\n    return a + b\nreturn -1"), {"passed"}),
        "network_out": (_body(
            "import socket\nheld = 0\n"
            "for address in (('1.1.1.1', 80), ('pypi.org', 443)):\n"
            "    try:\n        socket.create_connection(address, timeout=1).close()\n"
            "    except OSError:\n        held += 1\n"
            "return a + b if held == 2 else -held"), {"passed"}),
        "signal_outside": (_body(
            f"import os\ntry:\n    os.kill({target_pid}, 15)\nexcept OSError:\n    return a + b\nreturn -1"),
            {"passed"}),
        "remount": (_body(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "undone = libc.mount(None, b'/', None, ctypes.c_ulong(32 | 4096), None) == 0  # MS_REMOUNT | MS_BIND: writable\n"
            "return -1 if undone else a + b"), {"passed"}),
        "exit_at_import": ("import sys\nsys.exit(0)\n", {"error"}),
        "exit_in_call": (_body("import sys\nsys.exit(0)"), {"failed"}),
        "raise_system_exit": (_body("raise SystemExit(0)"), {"failed"}),
        "os_exit": (_body("import os\nos._exit(0)"), {"crashed"}),
        "always_equal": (_body(
            "class Same:\n    def __eq__(self, other):\n        return True\n"
            "    def __ne__(self, other):\n        return False\n    __hash__ = object.__hash__\n"
            "return Same()"), {"failed"}),
        "int_subclass_equal": (_body(
            "class Int(int):\n    def __eq__(self, other):\n        return True\n"
            "    __hash__ = int.__hash__\nreturn Int(0)"), {"failed"}),
        "replaced_builtins": (
            "import builtins, json\n"
            "builtins.isinstance = lambda *a: True\nbuiltins.type = lambda *a: int\n"
            "builtins.repr = lambda *a: '3'\nbuiltins.str = lambda *a: '3'\nbuiltins.len = lambda *a: 0\n"
            "builtins.AssertionError = type('Nope', (Exception,), {})\n"
            "json.dumps = lambda *a, **k: 'true'\n"
            "def add(a, b):\n    return 3\n", {"failed"}),
        "reexec_without_asserts": (_body(
            "import os, sys\n"
            "os.execv(sys.executable, [sys.executable, '-O', '-c', "
            "'import os\\nfor fd in range(3, 20):\\n    try: os.write(fd, b\"x {\\\\\"done\\\\\":1}\\\\n\")\\n    except OSError: pass'])"),
            {"crashed", "error"}),
        "forged_output": (_body(
            "import os, sys\nprint('4 passed, 0 failed')\n"
            "for fd in range(3, 30):\n"
            "    try:\n        os.write(fd, b'0123 {\"i\":0,\"ok\":1}\\n{\"done\":1}\\n')\n"
            "    except OSError:\n        pass\n"
            "return 0"), {"error", "failed"}),
        "orphans": (_body(
            "import os, subprocess\n"
            f"subprocess.Popen(['sleep', '{MARK}'])\n"
            f"subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        os.execvp('sleep', ['sleep', '{MARK}'])\n"
            "    os._exit(0)\n"
            "return a + b"), {"passed"}),
        "orphan_without_environment": (_body(
            "import subprocess\n"
            f"subprocess.Popen(['sleep', '{UNMARKED}'], env={{}}, start_new_session=True)\n"
            "return a + b"), {"passed"}),
        "kill_everything": (_body("import os, signal\nos.kill(-1, signal.SIGKILL)\nreturn a + b"), {"passed"}),
        "env_secrets": (_body(
            "import os\n"
            "leaked = [k for k, v in os.environ.items() if 's3cr3t' in v]\n"
            "home_inside = os.environ['HOME'].startswith(os.getcwd())\n"
            "tmp_inside = os.environ['TMPDIR'].startswith(os.getcwd())\n"
            "return a + b if not leaked and home_inside and tmp_inside else -1"), {"passed"}),
        "syntax_error": (_body("return a +* b"), {"syntax_error"}),
        "recursion": (_body("return add(a, b)"), {"failed"}),
        "recursion_bomb": (_body(
            "import sys\nsys.setrecursionlimit(10**8)\n"
            "def deeper(n):\n    return deeper(n + 1) + 1\nreturn deeper(0)"),
            {"crashed", "memory", "failed", "timeout"}),
        "segfault": (_body("import ctypes\nctypes.string_at(0)"), {"crashed"}),
        "keyboard_interrupt": (_body("raise KeyboardInterrupt"), {"failed"}),
        "base_exception": (_body("class Boom(BaseException):\n    pass\nraise Boom('x')"), {"failed"}),
    }


def _live() -> list[tuple[int, int, str]]:
    """(pid, uid, command line) of every live process (ps: Linux and macOS)."""
    listing = subprocess.run(["ps", "-axo", "pid=,uid=,stat=,command="], capture_output=True, text=True, check=True)
    rows = [line.split(None, 3) for line in listing.stdout.splitlines()]
    return [(int(row[0]), int(row[1]), row[3]) for row in rows if len(row) == 4 and not row[2].startswith("Z")]


def _sandbox_processes() -> dict[int, str]:
    """Live processes that belong to a run: a throwaway uid, or our marker."""
    low, high = processes.SANDBOX_UIDS
    return {pid: f"uid={uid} {command[:80]}" for pid, uid, command in _live() if MARK in command or low <= uid < high}


def _marked(mark: str) -> list[int]:
    """Live processes whose command line holds `mark`."""
    return [pid for pid, _, command in _live() if mark in command]


def _survivors(snapshot: dict[int, str], patience_s: float = 5.0) -> dict[int, str]:
    """Processes of the snapshot still alive after a while. Marked ones must be gone
    already; other sandbox uids may be runs of another test worker (pytest -n), which
    end within seconds, while a leftover of ours would live on."""
    deadline = time.monotonic() + patience_s
    while True:
        now = _sandbox_processes()
        left = {pid: what for pid, what in snapshot.items() if now.get(pid) == what}
        if not left or any(MARK in what for what in left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture(scope="module", params=LEVELS_HERE)
def level(request):
    return request.param


@pytest.fixture(scope="module")
def host(tmp_path_factory, level):
    """The things a candidate must not touch (one set per level): files here and in a
    directory made in the real home, a secret in the environment, a server on loopback, a
    process of the test's own."""
    caller_dir = tmp_path_factory.mktemp("caller")
    (caller_dir / "keep.txt").write_text("keep")
    # Host-side work directories of this module's runs land here, not in the shared /tmp
    # where other processes on the machine make their own.
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("sandbox-tmp"))
    home_dir = Path(tempfile.mkdtemp(prefix=".mlx-repair-test-", dir=Path.home()))
    (home_dir / "keep.txt").write_text("keep")
    (home_dir / "secret.txt").write_text("secret")
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    target = subprocess.Popen(["sleep", "600"])
    saved_cwd = os.getcwd()
    os.chdir(caller_dir)
    os.environ["HF_TOKEN"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "s3cr3t"
    yield Host(caller_dir, home_dir, server, target)
    os.chdir(saved_cwd)
    tempfile.tempdir = saved_tempdir
    for key in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(key, None)
    target.kill()
    target.wait()
    for pid in _marked(UNMARKED):  # what an unprotected level let a candidate leave behind
        os.kill(pid, signal.SIGKILL)
    server.close()
    shutil.rmtree(home_dir, ignore_errors=True)


def candidates_for(host: Host) -> dict[str, tuple[str, set]]:
    return hostile_candidates(host.caller_dir, host.home_file, host.server.getsockname()[1], host.target.pid)


@pytest.fixture(scope="module")
def outcomes(host, level):
    candidates = candidates_for(host)
    humaneval = load_problems("humaneval")[:24]
    jobs = []
    for name, (completion, _) in candidates.items():
        if runs_under(name, level) is None:
            jobs.append((name, ADD, completion))
        problem = humaneval[len(jobs) % len(humaneval)]
        jobs.append((f"canonical {problem.task_id} {len(jobs)}", problem, problem.canonical_solution))
    with Pool(2, LIMITS, level) as pool:
        verdicts = dict(pool.run(jobs))
    return candidates, verdicts, _sandbox_processes()


NAMES = list(hostile_candidates(Path("/x"), Path("/y"), 1, 1))


def expected_statuses(name: str, level: str, candidates: dict) -> set:
    """What the candidate must get: a probe whose attack succeeds under `level` fails;
    where the kernel does not bound processes, the parent ends the run past the limit."""
    if name in NOT_PROTECTED.get(level, ()) and name not in BLIND:
        return {"failed"}
    if name == "fork_count_is_bounded":
        return fork_count_statuses(level)
    return candidates[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_candidate_gets_the_right_verdict(outcomes, level, name):
    if reason := runs_under(name, level):
        pytest.skip(reason)
    candidates, verdicts, _ = outcomes
    verdict = verdicts[name]
    expected = expected_statuses(name, level, candidates)
    assert verdict.status in expected, (verdict.status, verdict.error, verdict.feedback)
    assert verdict.passed == (expected == {"passed"})
    assert verdict.isolation == level


def test_pool_keeps_going(outcomes):
    _, verdicts, _ = outcomes
    canonical = {k: v for k, v in verdicts.items() if k.startswith("canonical")}
    assert len(canonical) == len(NAMES)
    assert all(v.passed for v in canonical.values()), [v.feedback for v in canonical.values() if not v.passed]


def test_no_process_outlives_its_run(outcomes):
    assert _survivors(outcomes[2]) == {}


def _nobody_connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


# What the host shows after each probe ran, when the level held.
HOST_INTACT = {
    "write_outside": lambda host: (host.caller_dir / "keep.txt").exists() and not (host.caller_dir / "new.txt").exists(),
    "delete_home_file": lambda host: host.home_file.exists(),
    "loopback": lambda host: _nobody_connected(host.server),
    "signal_outside": lambda host: host.target.poll() is None,
    "orphan_without_environment": lambda host: not _marked(UNMARKED),
}


@pytest.mark.parametrize("probe", HOST_INTACT)
def test_the_host_shows_what_the_level_protects(outcomes, host, level, probe):
    """Seen from the host, not from the candidate's report: intact where the level
    protects, damaged where README's table says it does not."""
    assert HOST_INTACT[probe](host) == (probe not in NOT_PROTECTED.get(level, ()))


def test_no_work_dir_is_left(outcomes):
    assert tempfile.gettempdir() != "/tmp" and not list(Path(tempfile.gettempdir()).glob("mlx-repair-*"))


def test_cold_start_also_contains_fork_bombs_and_orphans(host, level, monkeypatch):
    """The same guarantees without the warm fork server (one bwrap per candidate)."""
    if level != "bwrap":
        pytest.skip("only bwrap has a warm fork server")
    monkeypatch.setattr(processes, "FORK_SERVER", False)
    candidates = candidates_for(host)
    names = ["fork_bomb", "fork_count_is_bounded", "orphans", "write_outside", "always_equal"]
    with Pool(2, LIMITS, level) as pool:
        verdicts = dict(pool.run((n, ADD, candidates[n][0]) for n in names))
    for name in names:
        assert verdicts[name].status in candidates[name][1], (name, verdicts[name].feedback)
    assert _survivors(_sandbox_processes()) == {}


SIGNAL_CALLS = {"kill", "killpg", "pthread_kill", "sigqueue"}
TARGET_PID = 424242  # stands for the test's `sleep`


def _signal_targets(completion: str) -> list:
    """The first argument of every call in `completion` that sends a signal (none if it
    does not compile: it never runs)."""
    source = "def add(a, b):\n" + completion if completion[:1].isspace() else completion
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = [(call, getattr(call.func, "attr", getattr(call.func, "id", None))) for call in calls]
    return [call.args[0] if call.args else None for call, name in names if name in SIGNAL_CALLS]


def test_no_candidate_can_signal_a_process_outside_its_run():
    """A candidate signals only the test's own `sleep`, unless it runs only under bwrap,
    whose pid namespace holds nothing but the run: no other process of this machine, the
    test's parent included, can receive a signal from the hostile suite."""
    unsafe = []
    for name, (completion, _) in hostile_candidates(Path("/x"), Path("/y"), 1, TARGET_PID).items():
        contained = all(runs_under(name, level) for level in levels.CHOICES if level not in ("auto", "bwrap"))
        for target in _signal_targets(completion):
            if not contained and not (isinstance(target, ast.Constant) and target.value == TARGET_PID):
                unsafe.append(name)
    assert unsafe == []
    assert _signal_targets("    import os\n    os.kill(os.getppid(), 9)\n")  # the check sees such a call
