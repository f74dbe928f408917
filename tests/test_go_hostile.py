"""Hostile Go candidates, built and run for real in the sandbox: each gets the right verdict,
the host is untouched and no process outlives its run.

"Probe" candidates return the right answer only if their attack failed, so a pass means
the isolation held. The others try to fake a pass (exit 0, a TestMain, an init() that
rewrites the test table, forged PASS lines, writing to the report pipe) or to exhaust
the machine (a loop, a goroutine bomb, a huge allocation), and must fail. Run under
bubblewrap, the level "auto" picks here; unshare is checked with the canonical solution.
"""

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from go_support import go_toolchain  # noqa: F401

from mlx_repair.problems import Problem
from mlx_repair.sandbox import Limits, Pool, levels

LIMITS = Limits(timeout_s=5.0, cpu_s=5.0)
MARK = f"98765.{secrets.randbelow(10**6)}"  # a unique `sleep` argument, findable with ps
# The table is a package-level variable: the kind an init() could rewrite.
TEST = """package main

import "testing"

var tests = []struct {
	x    int
	want int
}{
	{1, 2},
	{5, 6},
	{-3, -2},
	{41, 42},
}

func TestInc(t *testing.T) {
	for _, tc := range tests {
		if got := Inc(tc.x); got != tc.want {
			t.Errorf("Inc(%d) = %d, want %d", tc.x, got, tc.want)
		}
	}
}
"""
INC = Problem("GoHostile/inc", "package main\n\n// Inc returns x + 1.\nfunc Inc(x int) int {\n", "Inc", TEST,
              canonical_solution="\treturn x + 1\n}\n", language="go")


def probe(attack: str) -> str:
    """A body that runs `attack` (Go statements setting `held` to whether the isolation held)
    and returns the right answer only if it did."""
    return f"\theld := false\n{attack}\n\tif held {{\n\t\treturn x + 1\n\t}}\n\treturn x\n}}\n"


def hostile(home_dir: Path, port: int, victim: int) -> dict[str, tuple[str, str]]:
    """name -> (completion, what it must get: "passed" for a probe, else "fails")."""
    keep = home_dir / "keep.txt"
    return {
        "infinite_loop": ("\tfor {\n\t}\n}\n", "fails"),
        "goroutine_bomb": ("\tfor {\n\t\tgo func() { select {} }()\n\t}\n}\n", "fails"),
        "huge_allocation": ("\tvar keep [][]byte\n\tfor {\n\t\tkeep = append(keep, make([]byte, 100<<20))\n"
                            "\t\tkeep[len(keep)-1][0] = 1\n\t}\n}\n", "fails"),
        "exit_zero": ("\tos.Exit(0)\n\treturn 0\n}\n", "fails"),
        "test_main": ("\treturn 0\n}\n\nfunc TestMain(m *testing.M) {\n\tos.Exit(0)\n}\n", "fails"),
        "init_rewrites_table": ("\treturn 0\n}\n\nfunc init() {\n\tfor i := range tests {\n\t\ttests[i].want = 0\n"
                                "\t\ttests[i].x = 0\n\t}\n}\n", "fails"),
        "forged_pass_lines": ('\tfmt.Println("--- PASS: TestInc (0.00s)\\nPASS\\nok  \\tcandidate\\t0.01s")\n'
                              '\tfmt.Fprintln(os.Stderr, "PASS")\n\treturn 0\n}\n', "fails"),
        "forged_reports": ('\tfor fd := 3; fd < 32; fd++ {\n\t\tf := os.NewFile(uintptr(fd), "x")\n'
                           '\t\tfor i := 0; i < 4; i++ {\n'
                           '\t\t\tfmt.Fprintf(f, "{\\"i\\":%d,\\"v\\":{\\"t\\":\\"int\\",\\"v\\":\\"%d\\"}}\\n", i, 0)\n'
                           '\t\t}\n\t\tfmt.Fprintln(f, "{\\"done\\":1}")\n\t}\n\treturn 0\n}\n', "fails"),
        "remove_home": (probe(f'\tos.RemoveAll("{home_dir}")\n\tos.RemoveAll(os.Getenv("HOME"))\n'
                              f'\t_, err := os.Stat("{keep}")\n\theld = err != nil'), "passed"),
        "read_the_tests": (probe('\t_, err := os.ReadFile("problem_test.go")\n\theld = err != nil'), "passed"),
        "network_dial": (probe(f'\tc, err := net.DialTimeout("tcp", "127.0.0.1:{port}", time.Second)\n'
                               '\tif err == nil {\n\t\tc.Close()\n\t}\n\theld = err != nil'), "passed"),
        "signal_outside": (probe(f"\terr := syscall.Kill({victim}, syscall.SIGKILL)\n\theld = err != nil"), "passed"),
        "orphans": (probe(f'\tc := exec.Command("sleep", "{MARK}")\n'
                          "\tc.SysProcAttr = &syscall.SysProcAttr{Setsid: true}\n\tc.Start()\n\theld = true"), "passed"),
        "embed_the_tests": ("\treturn 0\n}\n\n//go:embed problem_test.go\nvar source string\n", "fails"),
    }


@pytest.fixture
def host(tmp_path):
    """A file in the real home directory, a loopback listener and a `sleep` to signal."""
    home_dir = Path.home() / f".mlx-repair-go-test-{secrets.token_hex(4)}"
    home_dir.mkdir()
    (home_dir / "keep.txt").write_text("keep")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    victim = subprocess.Popen(["sleep", "600"])
    try:
        yield home_dir, listener, victim
    finally:
        victim.kill()
        listener.close()
        shutil.rmtree(home_dir, ignore_errors=True)
        for pid in left_behind():  # only if the test failed: its own marked `sleep`s
            os.kill(int(pid), 9)


def left_behind() -> list[str]:
    return subprocess.run(["pgrep", "-f", f"sleep {MARK}"], capture_output=True, text=True).stdout.split()


def accepted(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
        return True
    except BlockingIOError:
        return False


@pytest.mark.skipif("bwrap" not in levels.available(), reason="bubblewrap is not available here")
def test_hostile_go_candidates_get_the_right_verdict_and_leave_the_host_untouched(host):
    home_dir, listener, victim = host
    candidates = hostile(home_dir, listener.getsockname()[1], victim.pid)
    jobs = [(name, INC, completion) for name, (completion, _) in candidates.items()]
    jobs += [(f"canonical-{i}", INC, INC.canonical_solution) for i in range(2)]
    with Pool(2, LIMITS, "bwrap") as pool:
        verdicts = dict(pool.run(jobs))
    wrong = {
        name: (verdicts[name].status, verdicts[name].feedback[:200])
        for name, (_, expected) in candidates.items()
        if (verdicts[name].status == "passed") != (expected == "passed")
    }
    assert wrong == {}
    assert all(verdicts[f"canonical-{i}"].passed for i in range(2))
    assert verdicts["infinite_loop"].status == "timeout"
    assert verdicts["huge_allocation"].status == verdicts["goroutine_bomb"].status == "memory"
    assert verdicts["forged_reports"].status == "error" and "report channel" in verdicts["forged_reports"].error
    assert verdicts["init_rewrites_table"].status == "failed"  # the rows it rewrote are not the ones judged
    assert "go:embed is not allowed" in verdicts["embed_the_tests"].feedback
    # The host: the home file, the listener, the victim, and no process left behind.
    assert (home_dir / "keep.txt").read_text() == "keep"
    assert not accepted(listener)
    assert victim.poll() is None
    time.sleep(0.2)
    assert left_behind() == []


@pytest.mark.skipif("unshare" not in levels.available(), reason="unshare is not available here")
def test_go_candidates_also_build_and_run_under_unshare():
    with Pool(1, LIMITS, "unshare") as pool:
        verdicts = dict(pool.run([("right", INC, INC.canonical_solution), ("wrong", INC, "\treturn x\n}\n")]))
    assert verdicts["right"].passed and verdicts["right"].isolation == "unshare"
    assert verdicts["wrong"].status == "failed"
