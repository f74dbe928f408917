"""The math domain: problems whose answer SymPy checks, the restricted answer parser, the
checker in a sandbox child, and the packaged math set."""

import json
import time

import pytest

from mlx_repair.cli import main
from mlx_repair.evaluation.report import TrainReport, markdown
from mlx_repair.problems import ProblemsError, Problem, load_problems
from mlx_repair.problems.split import split_problems
from mlx_repair.sandbox import Pool, run_candidate
from mlx_repair.sandbox.math_answer import InvalidAnswer, final_answer, parse_answer


def math_problem(answer: str, kind: str = "") -> Problem:
    return Problem("Math/t", "question", "answer", answer, domain="math", answer_kind=kind)


EQUIVALENT = [
    ("17/3", "Answer: 34/6"),
    ("1/2", "Answer: 0.5"),
    ("sqrt(2)/2", "Answer: 1/sqrt(2)"),
    ("sqrt(2)/2", "Answer: 0.7071"),  # rounded, written to 4 places
    ("x**2 - 1", "Answer: (x-1)*(x+1)"),
    ("x**2 - 1", "Answer: x^2 - 1"),
    ("{-2, 3}", "Answer: {3, -2}"),
    ("{-2, 3}", "Answer: x = -2, 3"),
    ("25*pi", "**Answer:** $25\\pi$".replace("\\pi", "*pi")),
    ("3/8", "The chance is \\boxed{3/8}."),
]
NEAR_MISSES = [
    ("17/3", "Answer: 17/4"),
    ("17/3", "Answer: 5.67"),  # two places are not enough to count as rounded
    ("x**2 - 1", "Answer: x**2 + 1"),
    ("{-2, 3}", "Answer: {-2, 3, 4}"),
    ("{-2, 3}", "Answer: {3}"),
    ("5", "Answer: x + 5"),
    ("x + 3", "Answer: {x + 3}"),
]


@pytest.mark.parametrize("expected, completion", EQUIVALENT)
def test_equivalent_forms_pass(expected, completion):
    verdict = run_candidate(math_problem(expected), completion)
    assert verdict.passed, verdict.feedback
    assert verdict.isolation == "rlimits-only" and verdict.feedback == ""


@pytest.mark.parametrize("expected, completion", NEAR_MISSES)
def test_near_misses_fail_with_expected_and_got(expected, completion):
    verdict = run_candidate(math_problem(expected), completion)
    assert not verdict.passed and verdict.status == "failed"
    assert verdict.feedback == f"Expected: {expected}\nGot: {final_answer(completion)}"


HOSTILE = [
    "9**9**9**9",
    "__import__('os').system('touch /tmp/pwned')",
    "1" * 100_000,
    "().__class__.__bases__[0].__subclasses__()",
    "x.__globals__",
    "lambda: 1",
    "[c for c in ()]",
    "open('/etc/passwd')",
    "2**100000",
    "exec('1')",
]


@pytest.mark.parametrize("answer", HOSTILE)
def test_hostile_answers_are_refused_fast_and_never_run(answer, tmp_path):
    started = time.monotonic()
    verdict = run_candidate(math_problem("17/3"), f"Answer: {answer}")
    assert time.monotonic() - started < 1.0
    assert not verdict.passed and verdict.status == "syntax_error"
    assert "not a valid answer" in verdict.feedback and verdict.feedback.startswith("Expected: 17/3\nGot: ")
    assert verdict.isolation == "none (not run)"  # refused before any process started


def test_an_answer_the_checker_cannot_finish_in_time_fails_within_the_limits():
    """A valid but costly comparison runs in the child and ends with its wall clock."""
    from mlx_repair.sandbox import Limits

    slow = "+".join(f"sin(x+{i})**{i % 7 + 2}*cos(x-{i})" for i in range(6))
    verdict = run_candidate(math_problem("0"), f"Answer: {slow}", Limits(timeout_s=1.0, cpu_s=1.0))
    assert not verdict.passed
    assert verdict.status in ("failed", "timeout")


def test_parser_trees_and_refusals():
    assert parse_answer("17/3") == ("div", ("int", "17"), ("int", "3"))
    assert parse_answer("{}") == ("set", ())
    assert parse_answer("$x = -0.5$.") == ("neg", ("dec", "0.5"))
    for text, reason in [("2**(3**2)", "power tower"), ("x**5000", "beyond"), ("sqrt", "is a function"),
                         ("f(x)", "not an allowed function"), ("", "empty"), ("1 +", "syntax")]:
        with pytest.raises(InvalidAnswer, match=reason):
            parse_answer(text)


def test_final_answer_line_wins_over_earlier_text():
    assert final_answer("First I get 4.\nAnswer: 5\n") == "5"
    assert final_answer("Answer: 4\nWait, no.\nFinal answer: 6") == "6"
    assert final_answer("some\nreasoning") is None
    assert final_answer("  42  ") == "42"


def test_missing_final_answer_says_what_format_to_use():
    verdict = run_candidate(math_problem("2"), "I think it is two\nbecause of reasons")
    assert not verdict.passed
    assert "end with a line 'Answer: ...'" in verdict.feedback


def test_math_jsonl_loads_and_bad_answers_are_one_line_errors(tmp_path):
    good = {"task_id": "M/1", "question": "What is 1/2 + 1/2?", "answer": "1", "difficulty": 1}
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n")
    [problem] = load_problems(path)
    assert (problem.domain, problem.test, problem.difficulty) == ("math", "1", 1)
    for bad, message in [({"answer": "__import__('os')"}, "cannot be checked"),
                         ({"answer_kind": "matrix"}, "answer_kind must be one of"),
                         ({"difficulty": "hard"}, "difficulty must be")]:
        path.write_text(json.dumps({**good, **bad}) + "\n")
        with pytest.raises(ProblemsError, match=message):
            load_problems(path)


def test_packaged_math_set_answers_pass_and_wrong_ones_fail():
    problems = load_problems("math")
    assert [p.task_id for p in problems] == [f"Math/{i}" for i in range(30)]
    assert {p.answer_kind for p in problems} == {"number", "expression", "set"}
    jobs = [((p.task_id, "right"), p, p.canonical_solution) for p in problems]
    jobs += [((p.task_id, "wrong"), p, "Answer: 1234567") for p in problems]
    with Pool() as pool:
        verdicts = dict(pool.run(jobs))
    assert {k: v.feedback for k, v in verdicts.items() if k[1] == "right" and not v.passed} == {}
    assert [k for k, v in verdicts.items() if k[1] == "wrong" and v.passed] == []
    split = split_problems(problems, 0.5)
    assert split.train and split.eval  # split by the same stable hash of the task id
    assert set(split.eval) == set(split_problems(list(reversed(problems)), 0.5).eval)


def test_exec_judges_math_answers(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        json.dumps({"task_id": "Math/0", "completion": "17/3"}) + "\n"
        + json.dumps({"task_id": "Math/0", "completion": "Answer: 6"}) + "\n"
    )
    assert main(["exec", "math", str(samples)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("1 passed, 1 failed")
    verdicts = [json.loads(line) for line in samples.with_name("samples.jsonl_verdicts.jsonl").read_text().splitlines()]
    assert [v["passed"] for v in verdicts] == [True, False]
    assert verdicts[1]["feedback"] == "Expected: 17/3\nGot: 6"


def test_math_prompts_stop_and_attempt_text():
    from mlx_repair.generation.extract import extract_code
    from mlx_repair.generation.prompts import draft_messages, repair_messages
    from mlx_repair.generation.stops import stop_check

    problem = load_problems("math")[0]
    assert "end with one line of the form `Answer: <answer>`" in draft_messages(problem)[1]["content"]
    for mode in ("code", "facts", "explain"):  # math repair turns always show the earlier solution
        assert "It is 5.\nAnswer: 5" in repair_messages(problem, "It is 5.\nAnswer: 5", "Expected: 17/3\nGot: 5", mode)[1]["content"]
    stop = stop_check(problem, chat=True)
    assert stop("17 / 3 is\nAnswer: 17/3") is None  # the line may go on
    text = "17 / 3 is\nAnswer: 17/3\nThat is all.\n"
    assert stop(text) == len("17 / 3 is\nAnswer: 17/3\n")
    assert extract_code(text, problem) == "17 / 3 is\nAnswer: 17/3"


def test_math_records_are_text_and_keep_records_stay_in_every_mode(tmp_path):
    from mlx_repair.mining.dataset import MixConfig, build_dataset
    from mlx_repair.mining.store import Attempt, Pair, Store

    problems = load_problems("math")[:4]
    with Store.open(tmp_path) as store:
        store.start_run("mine", "m", "math", {}, {})
        pairs = []
        for problem in problems:
            right = store.add_attempt(Attempt(problem.task_id, "draft", 0, 0, "p", "c", problem.canonical_solution, "m", True, "passed", ""))
            wrong = store.add_attempt(Attempt(problem.task_id, "draft", 1, 0, "p", "c", "Answer: 0", "m", False, "failed", f"Expected: {problem.test}\nGot: 0"))
            pairs += [Pair(problem.task_id, "keep", right.id, "", broken_id=right.id),
                      Pair(problem.task_id, "repair", right.id, wrong.feedback, broken_id=wrong.id, provenance="resample")]
        for pair in pairs:
            store.add_pair(pair)
        dataset = build_dataset(store, problems, MixConfig(prompt_mode="facts", valid_fraction=0))
        with pytest.raises(Exception, match="needs keep records"):
            build_dataset(store, problems, MixConfig(keep_ratio=0))
    kinds = [r["kind"] for r in dataset.train]
    assert kinds.count("keep") == 2 and kinds.count("repair") == 4
    answer = next(r for r in dataset.train if r["kind"] == "repair")["messages"][-1]["content"]
    assert answer.startswith("Answer: ") and "```" not in answer


def test_eval_runs_on_the_math_set_with_a_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["eval", "--model", str(tiny_model_dir), "--problems", "math", "--limit", "2", "--max-tokens", "8",
            "--json", "out.json"]
    assert main(args) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["n"] == 2 and all(r["task_id"].startswith("Math/") for r in result["per_problem"])
    assert result["metrics"]["cold_pass@1"] == 0.0  # random weights answer nothing right


def test_a_math_training_report_warns_that_its_repair_turn_saw_the_answer():
    def result(model, cold):
        rows = [{"task_id": f"Math/{i}", "cold": c, "repair": 1, "resample": c} for i, c in enumerate(cold)]
        metrics = {"cold_pass@1": sum(cold) / len(cold), "repair_pass@1": 1.0, "resample_pass@2": sum(cold) / len(cold)}
        return {"model": model, "problems": "math", "side": "eval", "n": len(cold), "metrics": metrics,
                "per_problem": rows, "languages": ["math"]}

    report = TrainReport(result("base", [0, 1]), result("adapter", [1, 1]), {}, [], [], [], "mlx-repair train --problems math")
    assert "judge math by cold pass@1 and resampling" in markdown(report, [])
    code = TrainReport(*(r | {"languages": ["python"]} for r in (report.base, report.adapter)), {}, [], [], [], "x")
    assert "Expected:" not in markdown(code, [])
