"""What can be checked of the macOS code paths on any machine: the seatbelt profile's text
and command line, the clean-up, process count and memory watch without /proc (through
`ps`, as on macOS), and what doctor and "auto" say on macOS. Running the profile itself
needs a Mac: docs/macos_verification.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_repair.errors import UserError
from mlx_repair.problems import Problem
from mlx_repair.sandbox import Limits, levels, limits, processes, run_candidate, seatbelt, tracking

REPOSITORY = Path(__file__).resolve().parents[1]
ADD = Problem(
    task_id="Mac/add",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    entry_point="add",
    test="def check(candidate):\n    assert candidate(1, 2) == 3\n",
)


# ---- the profile ----------------------------------------------------------------------------


def parse(text: str) -> list:
    """SBPL as nested lists: strings keep their quotes, `;` comments are dropped; raises
    on unbalanced parentheses or an unterminated string."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|;[^\n]*|[()]|[^\s()";]+|"', text)
    stack = [[]]
    for token in tokens:
        if token.startswith(";"):
            continue
        if token == '"':
            raise ValueError("unterminated string")
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise ValueError("unbalanced ')'")
            form = stack.pop()
            stack[-1].append(form)
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise ValueError("unbalanced '('")
    return stack[0]


RULES = parse(seatbelt.PROFILE)


def rules(action: str, operation: str) -> list[list]:
    """The filters of every `(action operation ...)` rule (a rule may name several)."""
    found = []
    for rule in RULES:
        operations = [item for item in rule[1:] if isinstance(item, str)]
        if rule[0] == action and operation in operations:
            found += [item for item in rule[1:] if isinstance(item, list)]
    return found


def test_the_profile_parses_and_denies_by_default():
    assert RULES[0] == ["version", "1"] and RULES[1] == ["deny", "default"]
    assert ["allow", "default"] not in RULES
    assert RULES[-2:] == [["deny", "network*"], ["deny", "file-link"]]  # last: nothing above reopens them
    with pytest.raises(ValueError):
        parse(seatbelt.PROFILE + "(")


def test_the_profile_writes_only_in_the_work_dir_and_devices():
    workdir = ["subpath", ["param", '"WORKDIR"']]
    devices = [["literal", '"/dev/null"'], ["literal", '"/dev/zero"'], ["subpath", '"/dev/fd"']]
    writes = rules("allow", "file-write*") + rules("allow", "file-write-data")
    assert writes and all(f == workdir or f in devices for f in writes), writes
    assert not [rule for rule in RULES if rule[0] == "allow" and any(str(op).startswith("network") for op in rule)]


def test_the_profile_reads_no_home_directory():
    reads = rules("allow", "file-read*")
    paths = [f[1].strip('"') for f in reads if f[0] in ("subpath", "literal") and isinstance(f[1], str)]
    assert paths and not [p for p in paths if p in ("/", "/Users", "/private", "/private/var", "/opt")]
    assert not [p for p in paths if os.path.expanduser("~").startswith(p.rstrip("/") + "/")]
    # stat of directories (path lookups) is all that reaches beyond those paths
    assert rules("allow", "file-read-metadata")[0] == ["vnode-type", "DIRECTORY"]


def test_the_profile_reaches_other_processes_only_in_its_sandbox():
    for operation in ("signal", "process-info*"):
        assert rules("allow", operation) == [["target", "same-sandbox"]]
    services = rules("allow", "mach-lookup")
    assert services and all(f[0] == "global-name" for f in services)  # no prefixes, no wildcard
    assert ["allow", "mach-lookup"] not in RULES


def test_every_parameter_of_the_profile_is_given():
    used = set(re.findall(r'\(param "([A-Z_]+)"\)', seatbelt.PROFILE))
    assert used == set(seatbelt.parameters("/tmp")) == {"WORKDIR", "PYTHON", "PYTHON_PREFIX"}


def test_a_hostile_work_dir_path_is_an_argument_never_profile_text(tmp_path):
    workdir = tmp_path / 'run "x") (allow default) (a;b'
    workdir.mkdir()
    linked = tmp_path / "link"
    linked.symlink_to(workdir)
    argv = levels.wrap("sandbox-exec", ["python", "-c", "pass"], Limits(), str(linked))
    assert argv[0] == "/usr/bin/sandbox-exec"  # never the first sandbox-exec on PATH
    assert argv[argv.index("-p") + 1] == seatbelt.PROFILE  # the same text whatever the path
    assert argv[-3:] == ["python", "-c", "pass"]
    defines = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-D"]
    assert f"WORKDIR={os.path.realpath(workdir)}" in defines  # resolved: Seatbelt sees real paths
    assert f"PYTHON_PREFIX={os.path.realpath(sys.base_prefix)}" in defines


# ---- clean-up, process count and memory without /proc --------------------------------------


@pytest.fixture
def like_macos(tmp_path, monkeypatch):
    """This machine as macOS looks to the sandbox's parent: no /proc (the run's processes
    are found with ps), no RLIMIT_AS (memory is watched), no throwaway uid (the parent
    counts processes). Candidates run under rlimits-only, so those here only sleep,
    allocate and fork."""
    monkeypatch.setattr(tracking, "PROC", str(tmp_path / "no-proc"))
    monkeypatch.setattr(limits, "ADDRESS_SPACE_LIMITED", False)
    monkeypatch.setattr(processes, "can_drop", lambda level: False)
    listings = []
    real_rows = tracking._ps_rows
    monkeypatch.setattr(tracking, "_ps_rows", lambda: listings.append(1) or real_rows())
    return listings


def _run(body: str, **limit_overrides):
    settings = {"timeout_s": 10.0, "cpu_s": 10.0} | limit_overrides
    return run_candidate(ADD, "".join(f"    {line}\n" for line in body.strip("\n").splitlines()),
                         Limits(**settings), "rlimits-only")


def _alive(mark: str) -> list[str]:
    listing = subprocess.run(["ps", "-axo", "stat=,command="], capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines() if mark in line and not line.lstrip().startswith("Z")]


def test_a_setsid_descendant_is_killed_by_its_marker_without_proc(like_macos):
    mark = f"765432.{os.getpid()}"
    verdict = _run(
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{mark}'])\n"
        "    os._exit(0)\n"
        "return a + b"
    )
    assert verdict.passed, verdict.feedback
    assert like_macos  # found through ps, not /proc
    assert _alive(mark) == []


def test_memory_is_summed_over_the_runs_processes_without_proc(like_macos):
    verdict = _run(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    hog = b'x' * (300 << 20)\n"
        "    time.sleep(30)\n"
        "time.sleep(30)",
        memory_mb=200,
    )
    assert verdict.status == "memory", (verdict.status, verdict.error)


def test_memory_is_watched_after_the_candidate_closes_its_pipes(like_macos):
    verdict = _run("import os, time\nos.closerange(0, 4096)\nhog = b'x' * (300 << 20)\ntime.sleep(30)", memory_mb=200)
    assert verdict.status == "memory", (verdict.status, verdict.error)


def test_the_parent_counts_the_runs_processes_without_proc(like_macos):
    """Root is exempt from RLIMIT_NPROC: the parent's count ends the run. Not root (a Mac),
    the kernel also stops the forks at about the limit, whichever comes first."""
    mark = f"765433.{os.getpid()}"
    verdict = _run(
        "import os, time\nn = 0\n"
        "while n < 60:\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{mark}'])\n"
        "    n += 1\n"
        "time.sleep(1)\n"
        "return a + b if n <= 8 else -n",
        max_processes=8,
    )
    assert verdict.status in ({"error"} if os.geteuid() == 0 else {"error", "passed"}), verdict.status
    assert verdict.passed or "started more than 8 processes" in verdict.error
    assert _alive(mark) == []


def test_the_users_processes_are_counted_with_ps_as_with_proc(tmp_path, monkeypatch):
    """ps and /proc agree (ps counts itself) at a moment when no process of the user
    started or ended around the ps count. Other jobs on this machine (an eval's sandbox
    workers) start and end processes all the time, so it takes the first of many tries in
    which the counts agree: a wrong count would agree in none."""
    no_proc = str(tmp_path / "no-proc")
    readings = []
    for _ in range(50):
        before = tracking.user_process_count(os.getuid())
        with monkeypatch.context() as patch:
            patch.setattr(tracking, "PROC", no_proc)
            with_ps = tracking.user_process_count(os.getuid())
            nproc = limits.rlimits(Limits(), "rlimits-only", None)["RLIMIT_NPROC"]
        readings.append((before, with_ps, nproc - 32))
        if before <= with_ps <= before + 1 and before <= nproc - 32 <= before + 1:
            break
    assert before <= with_ps <= before + 1 and before <= nproc - 32 <= before + 1, readings


# ---- what a Mac user is told ---------------------------------------------------------------


MISSING = "/nonexistent/sandbox-exec"


@pytest.fixture
def on_macos(monkeypatch):
    """This machine's levels seen as macOS's: sandbox-exec is the real sandbox (at a path
    where it is not, on a Mac too), then rlimits-only."""
    probed = levels.failure  # a test may replace it
    monkeypatch.setattr(levels, "_platform", lambda: "darwin")
    monkeypatch.setattr(seatbelt, "SANDBOX_EXEC", MISSING)
    probed.cache_clear()
    yield
    probed.cache_clear()


def test_doctor_on_macos_reports_sandbox_exec(on_macos, monkeypatch):
    from mlx_repair.commands.doctor import check_sandbox

    ok, what, detail = check_sandbox()
    assert not ok and what == "sandbox: sandbox-exec"
    assert detail.startswith(f"{MISSING} not found: candidates are refused; /usr/bin/sandbox-exec ships with macOS")
    assert detail.endswith("weaker levels that work here (--isolation): rlimits-only") and "apt-get" not in detail
    monkeypatch.setattr(levels, "failure", lambda level: None)
    assert check_sandbox() == (True, "sandbox: sandbox-exec", "candidates run in it; weaker levels that work here (--isolation): rlimits-only")


def test_auto_on_macos_without_sandbox_exec_refuses_in_one_line(on_macos):
    with pytest.raises(UserError) as refused:
        levels.isolation("auto")
    message = str(refused.value)
    assert "sandbox-exec" in message and '"rlimits-only"' in message and "\n" not in message


def test_the_auto_train_preset_on_metal_is_the_default_one(monkeypatch):
    import mlx.core as mx

    from mlx_repair.training.config import preset

    monkeypatch.setattr(mx, "default_device", lambda: mx.gpu)
    assert preset("auto") == preset("default")


# ---- set-up on a stock Mac: the Makefile's Python check -------------------------------------


def fake_python(path, version=(3, 9), system="darwin", machine="arm64"):
    """An interpreter that says it is `version` on `system` and `machine` (it runs `-c` only)."""
    path.write_text(
        f"#!{sys.executable}\nimport platform, sys\n"
        f"sys.version_info, sys.platform = {version + (0, 'final', 0)!r}, {system!r}\n"
        f"platform.machine = lambda: {machine!r}\nexec(sys.argv[2])\n"
    )
    path.chmod(0o755)
    return path


def make_venv(venv, path=os.environ["PATH"], **variables):
    """`make venv` of this repository on `venv`, the (re)build itself replaced by `true`."""
    settings = [f"{name}={value}" for name, value in variables.items()]
    argv = ["make", "--no-print-directory", "-C", str(REPOSITORY), "venv", f"VENV={venv}", "MAKE=true", *settings]
    return subprocess.run(argv, capture_output=True, text=True, env=os.environ | {"PATH": path})


@pytest.mark.parametrize("version, machine, problem", [((3, 9), "arm64", "is Python 3.9"), ((3, 12), "x86_64", "runs as x86_64, not arm64")])
def test_make_refuses_a_python_mlx_cannot_use_and_says_where_to_get_one(tmp_path, version, machine, problem):
    python = fake_python(tmp_path / "python3", version, machine=machine)
    result = make_venv(tmp_path / "venv", PYTHON=python)
    assert result.returncode != 0 and not (tmp_path / "venv").exists()
    error = result.stderr.splitlines()[0]
    assert error.startswith(f"error: mlx-repair needs Python 3.11 or newer and {python} {problem}; get Python 3.11")
    assert all(where in error for where in ("python.org", "brew install python@3.12", 'PYTHON="$(uv python find 3.12)"'))


def test_make_rebuilds_a_venv_of_another_python(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake_python(venv / "bin" / "python", (3, 9))  # what a stock Mac's python3 left behind
    result = make_venv(venv, PYTHON=sys.executable)
    want = "%d.%d" % sys.version_info[:2]
    assert result.returncode == 0, result.stderr
    assert f"was made by Python 3.9, not {sys.executable} ({want}): rebuilding it" in result.stdout
    assert not venv.exists()


def test_make_keeps_a_good_venv_when_no_python_is_given(tmp_path):
    venv, bin_dir = tmp_path / "venv", tmp_path / "bin"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    bin_dir.mkdir()
    fake_python(bin_dir / "python3", (3, 9))  # the PATH's python3 is too old, the venv is not
    result = make_venv(venv, path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result
    assert (venv / "bin" / "python").exists()
