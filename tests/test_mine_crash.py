"""Resuming a mining run: after a SIGKILL mid-run, and with more repair rounds."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

from mlx_repair.mining.store import STORE_FILE


def mine_command(model_dir, run_dir):
    return [
        sys.executable, "-m", "mlx_repair.cli", "mine",
        "--model", str(model_dir), "--problems", "humaneval", "--limit", "6",
        "--max-tokens", "12", "--rounds", "1", "--run-dir", str(run_dir),
    ]


def stored_attempts(run_dir):
    path = run_dir / STORE_FILE
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute(
            "SELECT id, task_id, kind, sample_index, round, code, passed FROM attempts ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        db.close()


def test_sigkill_mid_run_loses_nothing_and_duplicates_nothing(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(mine_command(tiny_model_dir, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(stored_attempts(run_dir)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = stored_attempts(run_dir)
    assert before, process.stderr.read().decode()[-2000:]

    finished = subprocess.run(mine_command(tiny_model_dir, run_dir), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = stored_attempts(run_dir)

    assert process.returncode == -signal.SIGKILL and len(before) < len(after)  # killed mid-run
    assert after[: len(before)] == before  # everything committed before the kill is intact
    keys = [row[1:5] for row in after]
    assert len(keys) == len(set(keys))
    drafts = {row[1] for row in after if row[2] == "draft"}
    assert len(drafts) == 6
    failed_drafts = {row[1] for row in after if row[2] == "draft" and not row[6]}
    assert {row[1] for row in after if row[2] == "repair"} == failed_drafts


def test_a_second_mine_on_the_same_run_directory_refuses_naming_the_first(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom mlx_repair.pipeline.stages import run_lock\n"
         "with run_lock(Path(sys.argv[1])):\n    print('locked', flush=True)\n    time.sleep(600)\n", str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        command = [sys.executable, "-m", "mlx_repair.cli", "mine", "--model", str(tiny_model_dir),
                   "--limit", "1", "--max-tokens", "8", "--run-dir", str(run_dir)]
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"another mlx-repair process (pid {holder.pid}) is writing this run" in second.stderr
        assert not (run_dir / "store.sqlite").exists()  # it refused before touching the store
    finally:
        holder.kill()
        holder.wait()
    # The holder died (SIGKILL): the kernel dropped its lock, and the run can go on.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_raising_rounds_on_a_run_dir_adds_repairs_and_keeps_its_drafts(tiny_model_dir, tmp_path):
    from mlx_repair.cli import main

    run_dir = tmp_path / "run"
    command = ["mine", "--model", str(tiny_model_dir), "--problems", "humaneval", "--limit", "3",
               "--max-tokens", "12", "--samples", "2", "--run-dir", str(run_dir)]
    assert main([*command, "--rounds", "0"]) == 0
    drafts = stored_attempts(run_dir)
    assert {row[2] for row in drafts} == {"draft"} and len(drafts) == 6

    assert main([*command, "--rounds", "1"]) == 0
    after = stored_attempts(run_dir)
    assert after[: len(drafts)] == drafts  # the drafts were read back, not written again
    repaired = {(row[1], row[3]) for row in after if row[2] == "repair"}
    assert repaired == {(row[1], row[3]) for row in drafts if not row[6]} and repaired

    assert main([*command, "--rounds", "1"]) == 0  # the continued run resumes as itself
    assert stored_attempts(run_dir) == after
    for refused in (["--rounds", "0"], ["--rounds", "2", "--repair-prompt", "code"]):
        assert main([*command, *refused]) == 2
    assert stored_attempts(run_dir) == after


def test_raising_rounds_without_a_run_dir_starts_from_a_copy_of_the_run_with_fewer(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """The default directory's name holds the rounds: a raised --rounds gets its own run,
    started from a copy of the one with fewer rounds (its drafts read back, not drawn
    again), and the run it came from still resumes as itself."""
    from mlx_repair.cli import main

    monkeypatch.chdir(tmp_path)
    command = ["mine", "--model", str(tiny_model_dir), "--problems", "humaneval", "--limit", "3",
               "--max-tokens", "12", "--samples", "2"]
    assert main([*command, "--rounds", "0"]) == 0
    (first,) = (tmp_path / "runs").iterdir()
    drafts = stored_attempts(first)
    assert len(drafts) == 6 and "writing 6 drafts" in capsys.readouterr().err

    assert main([*command, "--rounds", "1"]) == 0
    (second,) = set((tmp_path / "runs").iterdir()) - {first}
    copied = f"runs/{second.name}: starts from a copy of runs/{first.name} (the same drafts, 0 repair rounds)"
    printed = capsys.readouterr().err
    assert copied in printed and "writing 6 drafts" not in printed
    after = stored_attempts(second)
    assert after[: len(drafts)] == drafts and {row[2] for row in after[len(drafts):]} == {"repair"}
    assert main([*command, "--rounds", "0"]) == 0 and stored_attempts(first) == drafts

    assert main([*command, "--rounds", "2"]) == 0  # from the run with 1 round, the nearest
    (third,) = set((tmp_path / "runs").iterdir()) - {first, second}
    assert stored_attempts(third)[: len(after)] == after
