"""Hostile candidates, run for real: each gets the right verdict, the host is untouched,
no process outlives its run, and the pool keeps going.

All run through one Pool, interleaved with canonical HumanEval solutions that must still
pass. "Probe" candidates return the right answer only if the isolation held, so a pass
means the attack failed.
"""

import os
import secrets
import socket
import tempfile
import time
from pathlib import Path

import pytest

from mlx_repair.problems import Problem, load_problems
from mlx_repair.sandbox import Limits, Pool, levels, processes

MARK = f"987654.{secrets.randbelow(10**6)}"  # a unique `sleep` argument: findable in /proc
LIMITS = Limits(timeout_s=3.0, cpu_s=3.0)
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


def _body(code: str) -> str:
    return "".join(f"    {line}\n" for line in code.strip("\n").splitlines())


def hostile_candidates(caller_dir: Path, home_file: Path, port: int) -> dict[str, tuple[str, set]]:
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
        "huge_file": (_body("open('big', 'wb').write(b'x' * (200 << 20))\nreturn a + b"), {"failed"}),
        "output_flood": (_body("import sys\nsys.stdout.write('x' * (100 << 20))\nreturn a + b"), {"output_limit"}),
        "delete_host_files": (_body(
            "import os, shutil\nheld = 0\n"
            f"for attack in (lambda: os.remove({str(caller_file)!r}),\n"
            f"               lambda: os.remove({str(home_file)!r}),\n"
            f"               lambda: shutil.rmtree({str(caller_dir)!r}),\n"
            f"               lambda: open({str(caller_dir / 'new.txt')!r}, 'w').write('x')):\n"
            "    try:\n        attack()\n    except OSError:\n        held += 1\n"
            "return a + b if held == 4 else -held"), {"passed"}),
        "network": (_body(
            "import socket\nheld = 0\n"
            f"for address in (('127.0.0.1', {port}), ('1.1.1.1', 80), ('pypi.org', 443)):\n"
            "    try:\n        socket.create_connection(address, timeout=1).close()\n"
            "    except OSError:\n        held += 1\n"
            "return a + b if held == 3 else -held"), {"passed"}),
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


def _sandbox_processes() -> dict[int, str]:
    """Live processes that belong to a run: a throwaway uid, or our marker."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "\nState:\tZ" in status:
            continue
        uid = int(status.split("\nUid:\t", 1)[1].split()[0])
        if MARK in cmdline or processes.SANDBOX_UIDS[0] <= uid < processes.SANDBOX_UIDS[1]:
            found[int(entry.name)] = f"uid={uid} {cmdline[:80]}"
    return found


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


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The things a candidate must not touch: files here and in the real home, a secret
    in the environment, a server on loopback."""
    caller_dir = tmp_path_factory.mktemp("caller")
    (caller_dir / "keep.txt").write_text("keep")
    # Host-side work directories of this module's runs land here, not in the shared /tmp
    # where other processes on the machine make their own.
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("sandbox-tmp"))
    home_file = Path.home() / f".mlx-repair-sentinel-{MARK}"
    home_file.write_text("keep")
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    saved_cwd = os.getcwd()
    os.chdir(caller_dir)
    os.environ["HF_TOKEN"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "s3cr3t"
    yield caller_dir, home_file, server
    os.chdir(saved_cwd)
    tempfile.tempdir = saved_tempdir
    for key in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(key, None)
    server.close()
    home_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def outcomes(host):
    caller_dir, home_file, server = host
    candidates = hostile_candidates(caller_dir, home_file, server.getsockname()[1])
    humaneval = load_problems("humaneval")[:24]
    jobs = []
    for name, (completion, _) in candidates.items():
        jobs.append((name, ADD, completion))
        problem = humaneval[len(jobs) % len(humaneval)]
        jobs.append((f"canonical {problem.task_id} {len(jobs)}", problem, problem.canonical_solution))
    with Pool(2, LIMITS) as pool:
        verdicts = dict(pool.run(jobs))
    return candidates, verdicts, _sandbox_processes()


NAMES = list(hostile_candidates(Path("/x"), Path("/y"), 1))


@pytest.mark.parametrize("name", NAMES)
def test_hostile_candidate_gets_the_right_verdict(outcomes, name):
    candidates, verdicts, _ = outcomes
    verdict = verdicts[name]
    expected = candidates[name][1]
    assert verdict.status in expected, (verdict.status, verdict.error, verdict.feedback)
    assert verdict.passed == (expected == {"passed"})
    assert verdict.isolation == levels.isolation()


def test_pool_keeps_going(outcomes):
    _, verdicts, _ = outcomes
    canonical = {k: v for k, v in verdicts.items() if k.startswith("canonical")}
    assert len(canonical) == len(NAMES)
    assert all(v.passed for v in canonical.values()), [v.feedback for v in canonical.values() if not v.passed]


def test_no_process_outlives_its_run(outcomes):
    assert _survivors(outcomes[2]) == {}


def test_host_is_untouched(outcomes, host):
    caller_dir, home_file, server = host
    assert (caller_dir / "keep.txt").read_text() == "keep"
    assert home_file.read_text() == "keep"
    assert sorted(p.name for p in caller_dir.iterdir()) == ["keep.txt"]
    with pytest.raises(BlockingIOError):
        server.accept()  # nobody connected
    assert tempfile.gettempdir() != "/tmp" and not list(Path(tempfile.gettempdir()).glob("mlx-repair-*"))


def test_cold_start_also_contains_fork_bombs_and_orphans(host, monkeypatch):
    """The same guarantees without the warm fork server (one bwrap per candidate)."""
    monkeypatch.setattr(processes, "FORK_SERVER", False)
    caller_dir, home_file, server = host
    candidates = hostile_candidates(caller_dir, home_file, server.getsockname()[1])
    names = ["fork_bomb", "fork_count_is_bounded", "orphans", "delete_host_files", "always_equal"]
    with Pool(2, LIMITS) as pool:
        verdicts = dict(pool.run((n, ADD, candidates[n][0]) for n in names))
    for name in names:
        assert verdicts[name].status in candidates[name][1], (name, verdicts[name].feedback)
    assert _survivors(_sandbox_processes()) == {}
