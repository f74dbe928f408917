"""The packaged `fresh` problems (issue #4): a set we wrote that passes the harness checks
HumanEval passes, and `eval --fresh`, which shows it beside the leaked set. The two sets
written to measure training on more problems (benchmarks/problems/) pass the same checks."""

import doctest
import json
from pathlib import Path

import pytest

from mlx_repair.sandbox.cases import plan_tests
from mlx_repair.cli import main
from mlx_repair.problems import load_problems
from mlx_repair.problems.split import split_problems
from mlx_repair.sandbox import Pool


WRITTEN = sorted((Path(__file__).parent.parent / "benchmarks" / "problems").glob("written-*.jsonl"))


@pytest.fixture(scope="module")
def fresh():
    return load_problems("fresh")


@pytest.fixture(scope="module", params=["fresh", *WRITTEN], ids=lambda spec: Path(spec).stem)
def written(request):
    """Every set we wrote: what a model reads of them has to be right."""
    return load_problems(request.param)


def test_the_written_sets_are_there_and_not_humaneval():
    assert [path.stem for path in WRITTEN] == ["written-easy-2", "written-easy", "written-harder"]
    humaneval = {p.entry_point for p in load_problems("humaneval")}
    for path in WRITTEN:
        problems = load_problems(path)
        assert len(problems) == 160 and all(p.canonical_solution for p in problems)
        assert not humaneval & {p.entry_point for p in problems}, path


def test_fresh_set_is_complete_and_not_humaneval(fresh):
    assert [p.task_id for p in fresh] == [f"Fresh/{i}" for i in range(30)]
    assert all(p.canonical_solution and p.source == "fresh" for p in fresh)
    humaneval = {p.entry_point for p in load_problems("humaneval")}
    assert not humaneval & {p.entry_point for p in fresh}


def test_canonical_solutions_pass_and_empty_bodies_fail(written):
    jobs = [((p.task_id, "canonical"), p, p.canonical_solution) for p in written]
    jobs += [((p.task_id, "pass"), p, "    pass\n") for p in written]
    with Pool() as pool:
        verdicts = dict(pool.run(jobs))
    assert {k: v.feedback for k, v in verdicts.items() if k[1] == "canonical" and not v.passed} == {}
    assert [k for k, v in verdicts.items() if k[1] == "pass" and v.passed] == []


def test_docstring_examples_agree_with_the_canonical_solutions(written):
    """The model reads the examples: a wrong one would teach it the wrong answer."""
    for problem in written:
        namespace = {}
        exec(problem.prompt + problem.canonical_solution, namespace)
        function = namespace[problem.entry_point]
        examples = doctest.DocTestFinder().find(function, globs=namespace)
        runner = doctest.DocTestRunner()
        for example in examples:
            runner.run(example, out=lambda text: None)
        assert runner.summarize(verbose=False) == (0, runner.tries) and runner.tries, problem.task_id


def test_every_problem_has_visible_and_hidden_cases(written):
    for problem in written:
        hidden = [case.hidden for case in plan_tests(problem).cases]
        assert len(hidden) >= 5 and any(hidden) and not all(hidden), problem.task_id


def test_split_puts_fresh_problems_on_both_sides(fresh):
    split = split_problems(fresh)
    assert split.train and split.eval
    assert sorted(split.train + split.eval) == sorted(p.task_id for p in fresh)


def test_eval_fresh_shows_both_results_side_by_side(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out, run_dir = tmp_path / "result.json", tmp_path / "run"
    args = [
        "eval", "--model", str(tiny_model_dir), "--problems", "humaneval", "--fresh", "fresh",
        "--limit", "1", "--max-tokens", "8", "--run-dir", str(run_dir), "--json", str(out),
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    fresh = result.pop("fresh")
    assert result["problems"] == "humaneval" and result["n"] == 1
    assert fresh["problems"] == "fresh" and fresh["n"] == 1
    assert fresh["per_problem"][0]["task_id"].startswith("Fresh/")
    assert set(fresh) == set(result) and fresh["metrics"].keys() == result["metrics"].keys()
    assert (result["run_dir"], fresh["run_dir"]) == (str(run_dir), f"{run_dir}-fresh")

    printed = capsys.readouterr().err
    assert "on humaneval (eval side, n=1)" in printed and "on fresh (eval side, n=1)" in printed
    assert ", eval side: leaked vs fresh" in printed
    assert any(line.split() == ["problems", "humaneval", "|", "fresh"] for line in printed.splitlines())
    side_by_side = [line for line in printed.splitlines() if line.startswith("  cold pass@1") and "| " in line]
    assert len(side_by_side) == 1 and side_by_side[0].count("(n=1,") == 2

    # The same command again resumes both runs, and says so instead of "0 tokens generated".
    assert main(args) == 0
    again = capsys.readouterr().err
    assert again.count("resumed: every attempt was already stored, nothing generated") == 2
    assert "0 tokens generated" not in again
