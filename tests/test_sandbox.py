"""The sandbox on real HumanEval: canonical solutions pass, empty bodies fail, feedback is
precise, completions of both shapes work, degraded isolation still works, and the CLI.
Tests of one platform's levels (bwrap, unshare) skip elsewhere and say why."""

import json
import os
import shutil
import signal

import pytest

from mlx_repair.cli import main as cli_main
from mlx_repair.problems import load_problems
from mlx_repair.sandbox import Limits, Pool, Verdict, levels, processes, run_candidate


@pytest.fixture(scope="module")
def humaneval():
    return {p.task_id: p for p in load_problems("humaneval")}


@pytest.fixture(scope="module")
def canonical_and_empty(humaneval):
    """Every problem twice through one Pool: canonical solution and `pass`."""
    jobs = [((tid, "canonical"), p, p.canonical_solution) for tid, p in humaneval.items()]
    jobs += [((tid, "pass"), p, "    pass\n") for tid, p in humaneval.items()]
    with Pool() as pool:
        return dict(pool.run(jobs))


def test_all_canonical_solutions_pass(canonical_and_empty):
    failed = {k: (v.status, v.feedback) for k, v in canonical_and_empty.items() if k[1] == "canonical" and not v.passed}
    assert not failed
    assert sum(k[1] == "canonical" for k in canonical_and_empty) == 164


def test_all_empty_bodies_fail(canonical_and_empty):
    passed = [k for k, v in canonical_and_empty.items() if k[1] == "pass" and v.passed]
    assert not passed
    assert all(v.isolation == levels.isolation() for v in canonical_and_empty.values())


def test_feedback_shows_real_input_expected_got(humaneval):
    verdict = run_candidate(humaneval["HumanEval/23"], "    return len(string) + 1\n")
    assert verdict.status == "failed" and not verdict.passed
    visible = [c for c in verdict.cases if not c.hidden]
    assert visible and all(not c.passed for c in verdict.cases)
    first = visible[0]
    expected_block = f"Input: {first.input}\nExpected: {first.expected}\nGot: {int(first.expected) + 1}"
    assert expected_block in verdict.feedback
    assert all(c.source not in verdict.feedback for c in verdict.cases if c.hidden)


def test_exception_feedback_is_trimmed_to_the_candidates_lines(humaneval):
    verdict = run_candidate(humaneval["HumanEval/23"], "    return string[100]\n")
    assert 'File "solution.py", line' in verdict.feedback
    assert "IndexError: string index out of range" in verdict.feedback
    assert "runner" not in verdict.feedback and "test.py" not in verdict.feedback


def test_whole_program_completions_pass(humaneval):
    problem = humaneval["HumanEval/0"]
    without_imports = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + problem.canonical_solution
    with_imports = "from typing import List\n\n" + without_imports + "\n\nprint('demo')\n"
    for completion in (without_imports, with_imports):
        assert run_candidate(problem, completion).passed


def test_prompt_helpers_are_kept_for_whole_programs(humaneval):
    problem = humaneval["HumanEval/38"]  # the test calls encode_cyclic from the prompt
    completion = "def decode_cyclic(s: str):\n" + problem.canonical_solution
    assert run_candidate(problem, completion).passed


def test_loop_tests_reject_always_equal_results(humaneval):
    problem = humaneval["HumanEval/53"]  # check() has a random loop of asserts
    cheat = "    class Same:\n        def __eq__(self, other):\n            return True\n    return Same()\n"
    verdict = run_candidate(problem, cheat)
    assert not verdict.passed
    assert run_candidate(problem, problem.canonical_solution).passed


def test_syntax_error_is_reported_without_running(humaneval):
    verdict = run_candidate(humaneval["HumanEval/0"], "    return (\n")
    assert verdict.status == "syntax_error" and not verdict.passed
    assert verdict.feedback.startswith("SyntaxError:")


def test_verdict_serialises(humaneval):
    verdict = run_candidate(humaneval["HumanEval/2"], "    return 0.5\n")
    assert isinstance(verdict, Verdict)
    record = json.loads(json.dumps(verdict.to_dict()))
    assert record["task_id"] == "HumanEval/2" and record["cases"][0]["source"].startswith("assert")


@pytest.mark.parametrize("level", levels.available())
def test_every_level_here_judges(humaneval, monkeypatch, level):
    monkeypatch.setattr(processes, "FORK_SERVER", False)
    problem = humaneval["HumanEval/0"]
    good = run_candidate(problem, problem.canonical_solution, Limits(timeout_s=20), level)
    bad = run_candidate(problem, "    return True\n", Limits(timeout_s=20), level)
    assert good.passed and good.isolation == level, good.feedback
    assert not bad.passed and "Expected: False\nGot: True" in bad.feedback


def _write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_exec_command_writes_verdicts(humaneval, tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    zero = humaneval["HumanEval/0"]
    _write_lines(samples, [
        {"task_id": "HumanEval/0", "completion": zero.canonical_solution},
        {"task_id": "HumanEval/0", "completion": "    return True\n"},
    ])
    out = tmp_path / "verdicts.jsonl"
    assert cli_main(["exec", "humaneval", str(samples), "--out", str(out), "--workers", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 1 failed"
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["passed"] for v in verdicts] == [True, False]
    assert set(verdicts[0]) == {"task_id", "passed", "status", "feedback", "isolation"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "samples.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        ('{"task_id": "HumanEval/0"}', "samples.jsonl:2: needs string fields"),
        ('{"task_id": "Nope/1", "completion": ""}', "samples.jsonl:2: task_id 'Nope/1' is not in"),
    ],
)
def test_exec_command_names_the_bad_line(tmp_path, capsys, line, message):
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n' + line + "\n")
    assert cli_main(["exec", "humaneval", str(samples)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_dead_fork_server_is_replaced(humaneval):
    problem = humaneval["HumanEval/0"]
    assert run_candidate(problem, problem.canonical_solution).passed
    zygote = getattr(processes._ZYGOTES, "zygote", None)
    if zygote is None:
        pytest.skip("no fork server here (needs bwrap and root)")
    os.killpg(zygote.process.pid, signal.SIGKILL)
    zygote.process.wait()
    assert run_candidate(problem, problem.canonical_solution).passed
    assert processes._ZYGOTES.zygote is not zygote


def test_exec_reads_the_sandbox_settings_of_the_config_file(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    spin = "    import time\n    time.sleep(3)\n    return True\n"
    _write_lines(samples, [{"task_id": "HumanEval/0", "completion": spin}])
    config = tmp_path / "mlx-repair.toml"
    config.write_text("[sandbox]\ntimeout_s = 1.0\n")
    out = tmp_path / "verdicts.jsonl"
    assert cli_main(["exec", "humaneval", str(samples), "--out", str(out), "--config", str(config)]) == 0
    assert json.loads(out.read_text())["status"] == "timeout"
    config.write_text("[sandbox]\ntimeout_s = -1\n")
    assert cli_main(["exec", "humaneval", str(samples), "--config", str(config)]) == 2
    assert "'sandbox.timeout_s' must be more than 0, got -1" in capsys.readouterr().err


# ---- which isolation a run gets ----------------------------------------------------------


@pytest.fixture
def without_bwrap(tmp_path, monkeypatch):
    """This machine as a Linux without bubblewrap: a PATH that has unshare but no bwrap;
    the probes are forgotten before and after, and no weaker level was announced yet."""
    if not levels.on_linux():
        pytest.skip("bubblewrap is the Linux sandbox")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "unshare").symlink_to(shutil.which("unshare"))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(levels, "_ANNOUNCED", set())
    levels.failure.cache_clear()
    yield
    levels.failure.cache_clear()


def _one_sample(tmp_path, humaneval):
    samples = tmp_path / "samples.jsonl"
    _write_lines(samples, [{"task_id": "HumanEval/0", "completion": humaneval["HumanEval/0"].canonical_solution}])
    return samples


def test_without_bwrap_eval_refuses_in_one_line_before_the_model_loads(without_bwrap, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["eval", "--model", str(tmp_path / "no-such-model"), "--limit", "1", "--run-dir", str(run_dir)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "bwrap not found" in err and "apt-get install bubblewrap" in err and "--isolation" in err
    assert '"unshare" or "rlimits-only"' in err  # the weaker levels that do work here
    assert not run_dir.exists()  # refused before the run directory and the model


def test_without_bwrap_exec_refuses_and_judges_nothing(without_bwrap, humaneval, tmp_path, capsys):
    samples = _one_sample(tmp_path, humaneval)
    out = tmp_path / "verdicts.jsonl"
    assert cli_main(["exec", "humaneval", str(samples), "--out", str(out)]) == 2
    assert "apt-get install bubblewrap" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("how", ["flag", "config"])
@pytest.mark.parametrize("level", ["unshare", "rlimits-only"])
def test_a_weaker_level_runs_when_chosen_and_says_so_once(without_bwrap, humaneval, tmp_path, capsys, how, level):
    samples = _one_sample(tmp_path, humaneval)
    _write_lines(samples, [json.loads(samples.read_text())] * 3)
    out = tmp_path / "verdicts.jsonl"
    argv = ["exec", "humaneval", str(samples), "--out", str(out)]
    if how == "flag":
        argv += ["--isolation", level]
    else:
        (tmp_path / "mlx-repair.toml").write_text(f'[sandbox]\nisolation = "{level}"\n')
        argv += ["--config", str(tmp_path / "mlx-repair.toml")]
    assert cli_main(argv) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sandbox:")]
    assert said == [f"sandbox: candidates run under {level}, weaker than bwrap, as chosen (--isolation, sandbox.isolation)"]
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(v["passed"], v["isolation"]) for v in verdicts] == [(True, level)] * 3


def test_a_chosen_level_that_does_not_work_is_one_line(without_bwrap, humaneval, tmp_path, capsys):
    samples = _one_sample(tmp_path, humaneval)
    assert cli_main(["exec", "humaneval", str(samples), "--isolation", "bwrap"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("sandbox.isolation = 'bwrap' does not work here (bwrap not found); levels that do: unshare, rlimits-only")
    assert len(err.splitlines()) == 1


def test_an_unknown_level_in_the_config_is_one_line(humaneval, tmp_path, capsys):
    samples = _one_sample(tmp_path, humaneval)
    (tmp_path / "mlx-repair.toml").write_text('[sandbox]\nisolation = "docker"\n')
    assert cli_main(["exec", "humaneval", str(samples), "--config", str(tmp_path / "mlx-repair.toml")]) == 2
    expected = "'sandbox.isolation' must be auto, bwrap, unshare, sandbox-exec, rlimits-only, got 'docker'"
    assert expected in capsys.readouterr().err


def test_doctor_says_candidates_would_be_refused_and_what_works(without_bwrap):
    from mlx_repair.commands.doctor import check_sandbox

    ok, what, detail = check_sandbox()
    assert not ok and what == "sandbox: bwrap"
    assert detail.startswith("bwrap not found: candidates are refused; install bubblewrap")
    assert detail.endswith("weaker levels that work here (--isolation): unshare, rlimits-only")


def test_doctor_says_the_real_sandbox_runs_candidates():
    from mlx_repair.commands.doctor import check_sandbox

    ok, what, detail = check_sandbox()
    assert ok and what == f"sandbox: {levels.real_sandbox()[0]}" and detail.startswith("candidates run in it")


def test_a_job_of_several_stages_says_its_weaker_level_once(tiny_model_dir, tmp_path, monkeypatch, capsys):
    real, *weaker = levels.available()  # Linux: unshare after bwrap; macOS: rlimits-only after sandbox-exec
    if real != levels.real_sandbox()[0] or not weaker:
        pytest.skip("needs the platform's real sandbox and a weaker level that works")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(levels, "_ANNOUNCED", set())
    args = [
        "train", "--model", str(tiny_model_dir), "--problems", "humaneval", "--preset", "default",
        "--limit", "1", "--mine-limit", "1", "--max-tokens", "8", "--out", str(tmp_path / "adapter"),
        "--isolation", weaker[0],
    ]
    assert cli_main(args) == 0
    shown = capsys.readouterr().err  # the job's console
    assert "== eval (" in shown and "== mine (" in shown  # two stages, two sandbox pools
    assert shown.count(f"sandbox: candidates run under {weaker[0]}, weaker than {real}") == 1, shown
