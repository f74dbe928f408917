"""Problems the model invents (issue 15): each filter rejects the crafted problem it is for,
the difficulty moves as specified, invented problems are mined but never evaluated, and a
tiny real model runs `invent` end to end."""

import json
from dataclasses import replace

import pytest
from tiny_repairer import RIGHT, WRONG, double_problems

from mlx_repair.cli import main
from mlx_repair.config import Config, InventSection, RunSection
from mlx_repair.console import Console
from mlx_repair.errors import UserError
from mlx_repair.generation.invent_prompts import CODE_FORM, CODE_TOPICS, code_request
from mlx_repair.mining.loop import Output
from mlx_repair.mining.store import Store
from mlx_repair.pipeline.invent import FORM_EXAMPLE, Difficulty, _Inventor, solve_reason
from mlx_repair.pipeline.stages import problems_for
from mlx_repair.problems import load_problems
from mlx_repair.problems.invented import Rejected, examples_problem, known_ngrams, nearest, read_code, write_invented
from mlx_repair.problems.split import split_problems
from mlx_repair.sandbox import Pool, run_candidate


def code_problem(name: str, examples: str, asserts: list[str], doc: str = "Return x times three.") -> str:
    checks = "\n".join(f"    {line}" for line in asserts)
    return (
        "Here is an exercise.\n```python\n"
        f'def {name}(x):\n    """{doc}\n{examples}    """\n\n\ndef check(candidate):\n{checks}\n```\n'
    )


TRIPLE = code_problem("triple", "    >>> triple(2)\n    6\n", [f"assert candidate({x}) == {3 * x}" for x in (1, 2, 5, 7)])
RIGHT_TRIPLE, WRONG_TRIPLE = "def triple(x):\n    return 3 * x\n", "def triple(x):\n    return x + 3\n"
HUMANEVAL_0 = load_problems("humaneval")[0]
CRAFTED = [
    ("kept", TRIPLE),
    ("unreadable", "```python\ndef broken(x:\n    return\n```"),
    ("unsplittable", code_problem("loops", "    >>> loops(1)\n    3\n", ["for x in range(3):", "    assert candidate(x) == 3 * x"])),
    ("no examples", code_problem("quiet", "", [f"assert candidate({x}) == {3 * x}" for x in (1, 2, 3)])),
    ("near-copy", f"```python\n{HUMANEVAL_0.prompt}\n{HUMANEVAL_0.test}\n```"),
    # Each with its own asserts: copied asserts would make it a near-copy of the first.
    ("trivial", code_problem("easy", "    >>> easy(1)\n    3\n", [f"assert candidate({x}) == {3 * x}" for x in (4, 8, 9)])),
    ("impossible", code_problem("hard", "    >>> hard(1)\n    3\n", [f"assert candidate({x}) == {3 * x}" for x in (10, 11, 12)])),
    ("examples disagree", code_problem("contra", "    >>> contra(2)\n    7\n", [f"assert candidate({x}) == {3 * x}" for x in (13, 14, 15)])),
    ("near-copy", TRIPLE.replace("Here is an exercise.", "Another one.")),  # of the problem kept first
]
SOLUTIONS = {  # per entry point: the model's k=4 solutions
    "triple": [RIGHT_TRIPLE, WRONG_TRIPLE, RIGHT_TRIPLE, WRONG_TRIPLE],
    "easy": [RIGHT_TRIPLE.replace("triple", "easy")] * 4,
    "hard": [WRONG_TRIPLE.replace("triple", "hard")] * 4,
    "contra": [RIGHT_TRIPLE.replace("triple", "contra"), WRONG_TRIPLE.replace("triple", "contra")] * 2,
}


class ScriptedWriter:
    """The loop's model side, scripted: the n-th invention request gets `problems[n]`, a
    solution draft the entry point's `solutions[sample]`."""

    name = "scripted"

    def __init__(self, problems: list[str], solutions: dict[str, list[str]]):
        self.problems, self.solutions = problems, solutions

    def sampling_for(self, kind: str) -> dict:
        return {}

    def write(self, requests):
        for request in requests:
            problem = request.problem
            if problem.domain.startswith("invent"):
                text = self.problems[int(problem.task_id.rsplit("/", 1)[1])]
            else:
                text = self.solutions[problem.entry_point][request.sample_index]
            yield Output(request, "", text, text, 1)


def run_inventor(tmp_path, problems, solutions, **invent):
    config = Config(invent=InventSection(batch=1, requests_per_problem=1, **invent))
    with Store.open(tmp_path) as store, Pool() as pool:
        store.start_run("invent", "scripted", "invent", {}, {})
        _Inventor(config, len(problems), ScriptedWriter(problems, solutions), pool, store, Console()).run()
        return store.inventions()


def test_each_filter_rejects_the_crafted_problem_it_is_for(tmp_path):
    inventions = run_inventor(tmp_path, [text for _, text in CRAFTED], SOLUTIONS)
    assert [i.reason or "kept" for i in inventions] == [reason for reason, _ in CRAFTED]
    near_humaneval, near_kept = inventions[4], inventions[8]
    assert near_humaneval.overlap_with == "HumanEval/0" and near_humaneval.overlap > 0.5
    assert near_kept.overlap_with == "Invented/0" and near_kept.overlap == 1.0
    assert [(i.passing, i.solutions) for i in inventions if i.solutions] == [(2, 4), (4, 4), (0, 4), (2, 4)]
    # The level moves after problems that were solved: up after all 4 passed, down after
    # none; and down after 4 requests in a row rejected before solving.
    assert [i.level for i in inventions] == [2, 2, 2, 2, 2, 1, 2, 1, 1]
    kept = load_problems(f"invented:{tmp_path}")
    assert [(p.task_id, p.entry_point, p.origin, p.difficulty) for p in kept] == [("Invented/0", "triple", "invented", 2)]


def test_a_resumed_run_judges_stored_outputs_and_asks_for_nothing_again(tmp_path):
    problems = [TRIPLE, CRAFTED[1][1]]
    config = Config(invent=InventSection(batch=2, requests_per_problem=1))
    writer = ScriptedWriter(problems, SOLUTIONS)
    with Store.open(tmp_path) as store, Pool() as pool:
        store.start_run("invent", "scripted", "invent", {}, {})
        inventor = _Inventor(config, 2, writer, pool, store, Console())
        inventor._ask(2)  # killed after the outputs were stored, before they were judged
    writer.problems = []  # asking again would fail
    with Store.open(tmp_path) as store, Pool() as pool:
        store.select_run("invent")
        _Inventor(config, 2, writer, pool, store, Console()).run()
        assert [i.reason or "kept" for i in store.inventions()] == ["kept", "unreadable"]


def test_read_code_keeps_signature_docstring_and_test_only():
    problem = read_code(TRIPLE, "Invented/7", 3)
    assert problem.prompt == 'def triple(x):\n    """Return x times three.\n    >>> triple(2)\n    6\n    """\n'
    assert problem.test.startswith("def check(candidate):") and problem.difficulty == 3
    with pytest.raises(Rejected, match="no check"):
        read_code("```python\ndef f(x):\n    '''Doc.'''\n```", "I/0", 1)
    with pytest.raises(Rejected, match="fewer than 3"):
        read_code(code_problem("f", "    >>> f(1)\n    3\n", ["assert candidate(1) == 3"]), "I/0", 1)


DOCUMENTED = 'def triple(x):\n    """Return x times three.\n    >>> triple(2)\n    6\n    """\n    return 3 * x\n\n'
ASSERTS = "    assert candidate(1) == 3, 'case 1'\n    assert candidate(2) == 6\n    assert candidate(0) == 0\n"


@pytest.mark.parametrize("test", [
    # what Qwen 0.5B wrote: the test's parameter named after the function, messages, a print
    "def check(triple):\n    assert triple(1) == 3, 'case 1'\n    assert triple(2) == 6\n    assert triple(0) == 0\n"
    "    print('All test cases passed!')\n\ncheck(triple)\n",
    # asserts at the top level, calling the function by name
    "assert triple(1) == 3, 'case 1'\nassert triple(2) == 6\nassert triple(0) == 0\n",
    # a check() without parameters, with a docstring and a closing return
    "def check_triple():\n    'Checks.'\n    assert triple(1) == 3, 'case 1'\n    assert triple(2) == 6\n"
    "    assert triple(0) == 0\n    return True\n",
])
def test_a_test_in_another_shape_is_read_as_check_candidate_of_its_asserts(test):
    problem = read_code(f"```python\n{DOCUMENTED}{test}```", "I/0", 2)
    assert problem.test == "def check(candidate):\n" + ASSERTS
    assert problem.prompt == DOCUMENTED.split("    return")[0].rstrip() + "\n"  # the solution is not shown


def test_a_test_that_loops_or_never_calls_the_function_is_not_read():
    looped = "def check(candidate):\n    for x in range(3):\n        assert candidate(x) == 3 * x\n"
    with pytest.raises(Rejected, match="not an assert"):
        read_code(f"```python\n{DOCUMENTED}{looped}```", "I/0", 2)
    with pytest.raises(Rejected, match="no check"):
        read_code(f"```python\n{DOCUMENTED}print(triple(2))\n```", "I/0", 2)


def test_asserts_calling_the_function_with_other_arguments_are_left_out():
    mixed = "def check(candidate):\n    assert candidate(1) == 3\n    assert candidate(2) == 6\n    assert candidate([5], 0) == []\n"
    with pytest.raises(Rejected, match="calls triple with 2 arguments; it takes 1"):  # 2 left: too few
        read_code(f"```python\n{DOCUMENTED}{mixed}```", "I/0", 2)
    three_left = read_code(f"```python\n{DOCUMENTED}{mixed}    assert candidate(4) == 12\n```", "I/0", 2)
    assert three_left.test == ("def check(candidate):\n    assert candidate(1) == 3\n    assert candidate(2) == 6\n"
                               "    assert candidate(4) == 12\n")
    optional = DOCUMENTED.replace("def triple(x):", "def triple(x, times=3):")
    assert "candidate([5], 0)" in read_code(f"```python\n{optional}{mixed}```", "I/0", 2).test  # 1 to 2 arguments


def test_a_test_cut_off_by_the_token_limit_keeps_its_complete_asserts():
    runaway = "".join(f"    assert candidate({x}) == {3 * x}\n" for x in range(1, 5)) + "    assert candidate(123456789"
    problem = read_code(f"```python\n{DOCUMENTED}def check(candidate):\n{runaway}", "I/0", 2)
    assert problem.test.count("assert") == 4 and "123456789" not in problem.test
    with pytest.raises(Rejected, match="does not parse"):  # broken before the test: nothing to read
        read_code(f"```python\ndef triple(x:\n    return 3 * x\n\ndef check(candidate):\n{runaway}", "I/0", 2)


def with_body(name: str, body: str, examples: str, asserts: list[str]) -> str:
    """An invention whose function has a body: the model's reference."""
    return code_problem(name, examples, asserts).replace('    """\n\n\ndef check', f'    """\n    {body}\n\n\ndef check')


def test_the_models_own_function_decides_which_of_its_asserts_and_examples_are_kept(tmp_path):
    # The 0.5B model's expected values are often wrong: an assert its function does not
    # pass is dropped before any solution is drawn, a docstring example is given the
    # function's result (or left out when it raises), and the problem is solved on the rest.
    quad = with_body("quad", "return 4 * x", "    >>> quad(2)\n    8\n",
                     ["assert candidate(1) == 4", "assert candidate(2) == 9", "assert candidate(3) == 12", "assert candidate(5) == 20"])
    few = with_body("few", "return 5 * x", "    >>> few(2)\n    10\n",
                    ["assert candidate(1) == 5", "assert candidate(2) == 11", "assert candidate(3) == 16", "assert candidate(4) == 20"])
    wrong_doc = with_body("wrong_doc", "return 6 * x", "    >>> wrong_doc(2)\n    13\n    >>> wrong_doc(None)\n    0\n"
                          "    >>> wrong_doc(1)\n    6\n", [f"assert candidate({x}) == {6 * x}" for x in (1, 2, 3)])
    no_example = with_body("no_example", "return 8 * x", "    >>> no_example(None)\n    0\n",
                           [f"assert candidate({x}) == {8 * x}" for x in (1, 2, 3)])
    loops = with_body("loops_forever", "while True: pass", "    >>> loops_forever(2)\n    14\n",
                      [f"assert candidate({x}) == {7 * x}" for x in (1, 2, 3)])
    solutions = {name: [f"def {name}(x):\n    return {times} * x\n", f"def {name}(x):\n    return x\n"] * 2
                 for name, times in (("quad", 4), ("wrong_doc", 6))}
    inventions = run_inventor(tmp_path, [quad, few, wrong_doc, no_example, loops], solutions, fall_after=0)
    assert [i.reason or "kept" for i in inventions] == ["kept", "reference fails", "kept", "reference fails", "reference fails"]
    assert [(i.passing, i.solutions) for i in inventions] == [(2, 4), (None, None), (2, 4), (None, None), (None, None)]
    assert "passes 2 of its 4 asserts, fewer than 3" in inventions[1].problem["detail"]
    assert "gives none of its docstring's examples" in inventions[3].problem["detail"]
    assert "passes 0 of its 3 asserts" in inventions[4].problem["detail"]
    kept_quad, kept_wrong_doc = load_problems(f"invented:{tmp_path}")
    assert kept_quad.test == ("def check(candidate):\n    assert candidate(1) == 4\n    assert candidate(3) == 12\n"
                              "    assert candidate(5) == 20\n")
    assert "return" not in kept_quad.prompt  # the solvers see the signature and docstring only
    assert kept_wrong_doc.prompt.endswith("    >>> wrong_doc(2)\n    12\n    >>> wrong_doc(1)\n    6\n    \"\"\"\n")


def test_a_body_left_for_the_solver_is_no_reference():
    for body in ("pass", "...", "raise NotImplementedError", "raise NotImplementedError('later')"):
        problem = read_code(with_body("triple", body, "    >>> triple(2)\n    6\n", [f"assert candidate({x}) == {3 * x}" for x in (1, 2, 0)]), "I/0", 1)
        assert problem.canonical_solution is None, body
    helper = read_code(f"```python\nimport math\n\ndef helper(x):\n    return 3 * x\n\n{DOCUMENTED}"
                       f"def check(candidate):\n{ASSERTS}```", "I/0", 1)
    assert helper.canonical_solution.startswith("import math\n\ndef helper(x):") and "return 3 * x" in helper.canonical_solution
    assert run_candidate(helper, helper.canonical_solution).passed


def test_requests_of_one_topic_and_level_differ_so_that_their_samples_do():
    assert code_request(1, 4, ["a"]) != code_request(1, 4 + len(CODE_TOPICS), ["a"])


def test_a_copy_of_the_requests_own_example_is_a_near_copy(tmp_path):
    (invention,) = run_inventor(tmp_path, [f"Sure.\n{CODE_FORM}\n"], {"repeat_each": []})
    assert invention.reason == "near-copy" and invention.overlap_with == FORM_EXAMPLE


def test_docstring_examples_run_against_a_solution_in_the_sandbox():
    contra = read_code(CRAFTED[7][1], "I/1", 2)
    right = RIGHT_TRIPLE.replace("triple", "contra")
    assert run_candidate(contra, right).passed  # the tests agree with it ...
    verdict = run_candidate(examples_problem(contra), right)  # ... the docstring does not
    assert not verdict.passed and "Expected: 7" in verdict.feedback and "Got: 6" in verdict.feedback


def test_near_copy_overlap_is_a_share_of_the_new_problems_ngrams():
    known = known_ngrams(load_problems("humaneval"), 6)
    copy = replace(HUMANEVAL_0, task_id="I/0")
    assert nearest(copy, known, 6) == (1.0, "HumanEval/0")
    own = read_code(TRIPLE, "I/1", 2)
    assert nearest(own, known, 6)[0] < 0.5
    # Renamed and reworded around the same asserts: a copy all the same.
    disguised = replace(own, prompt='def times_three(n):\n    """Multiply n by 3.\n    >>> times_three(2)\n    6\n    """\n')
    assert nearest(disguised, known_ngrams([own], 6), 6) == (1.0, "I/1")


def test_difficulty_moves_up_after_all_solved_down_after_none_within_bounds():
    difficulty = Difficulty(2)
    assert [difficulty.after(p, 4) for p in (4, 4, 4, 4, 2, 0, 0, 0, 0, 0)] == [3, 4, 5, 5, 5, 4, 3, 2, 1, 1]
    assert difficulty.after(None, None) == 1  # rejected before solving: no move (fall_after 0: never)
    falling = Difficulty(3, fall_after=2)
    assert [falling.after(None, None) for _ in range(5)] == [3, 2, 2, 1, 1]
    assert [falling.after(*solved) for solved in ((2, 4), (None, None), (4, 4), (None, None))] == [1, 1, 2, 2]
    assert solve_reason(0, 4, 1, 1) == "impossible" and solve_reason(4, 4, 1, 1) == "trivial"
    assert solve_reason(1, 4, 1, 1) is None and solve_reason(3, 4, 1, 2) == "trivial"


def test_math_inventions_are_checked_by_the_answer_checker(tmp_path):
    problems = [
        "Question: A box holds 3 rows of 7 apples. How many apples?\nAnswer: 21\n",
        "Question: What is it?\nAnswer: __import__('os')\n",
        "Question: " + load_problems("math")[0].prompt + "\nAnswer: 17/3\n",
    ]
    solutions = {"answer": ["Answer: 21", "Answer: 20", "Answer: 21", "Answer: 10"]}
    inventions = run_inventor(tmp_path, problems, solutions, domain="math")
    assert [i.reason or "kept" for i in inventions] == ["kept", "unreadable", "near-copy"]
    assert inventions[2].overlap_with == "Math/0"
    [kept] = load_problems(f"invented:{tmp_path}")
    assert (kept.domain, kept.test, kept.origin) == ("math", "21", "invented")


def test_invented_problems_are_mined_never_evaluated(tmp_path):
    invented = [replace(p, task_id=f"Invented/{i}") for i, p in enumerate(double_problems(6))]
    write_invented(tmp_path / "invented.jsonl", invented)
    spec = f"humaneval+invented:{tmp_path}"
    problems = load_problems(spec)
    split = split_problems(problems, 0.5)
    assert {f"Invented/{i}" for i in range(6)} <= set(split.train)
    assert not any(t.startswith("Invented/") for t in split.eval)
    config = Config(run=RunSection(problems=spec, limit=3))
    train, _ = problems_for(config, "train")
    assert [p.task_id for p in train][3:] == [f"Invented/{i}" for i in range(6)]  # the limit counts given ones
    for side in ("eval", "all"):
        with pytest.raises(UserError, match="invented problems are for mining only"):
            problems_for(config, side)


def test_mining_an_invented_set_stores_pairs_of_origin_invented(tiny_sampler_dir, tmp_path, capsys):
    invented = [replace(p, task_id=f"Invented/{i}") for i, p in enumerate(double_problems(2))]
    write_invented(tmp_path / "invented.jsonl", invented)
    args = ["mine", "--model", str(tiny_sampler_dir), "--problems", f"invented:{tmp_path}", "--samples", "4",
            "--rounds", "0", "--max-tokens", "40", "--run-dir", str(tmp_path / "mine")]
    assert main(args) == 0
    with Store.open(tmp_path / "mine") as store:
        store.select_run("mine")
        pairs = store.pairs()
        codes = {a.code for a in store.attempts()}
    assert {RIGHT, WRONG} <= codes  # the tiny model drafts both
    assert pairs and {p.origin for p in pairs} == {"invented"}
    assert {p.provenance for p in pairs if p.kind == "repair"} == {"resample"}
    assert main(["eval", "--model", str(tiny_sampler_dir), "--problems", f"invented:{tmp_path}"]) == 2
    assert "invented problems are for mining only" in capsys.readouterr().err


def test_invent_end_to_end_on_a_tiny_model_stores_every_request_with_its_reason(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["invent", "--model", str(tiny_model_dir), "--count", "1", "--max-tokens", "12", "--run-dir", str(run)]
    assert main(args) == 0
    assert f"invented: {run}" in capsys.readouterr().out
    with Store.open(run) as store:
        store.select_run("invent")
        inventions = store.inventions()
    # A random model writes no readable problem: five requests (count x requests_per_problem), each with its reason.
    assert [i.request for i in inventions] == list(range(5))
    assert {i.reason for i in inventions} == {"unreadable"} and all(i.output for i in inventions)
    report = json.loads((run / "report.json").read_text())
    assert report["requests"] == 5 and report["kept"] == 0 and report["rejected"]["unreadable"] == 5
    assert report["filters"][0] == {"filter": "unreadable", "reached": 5, "passed": 0, "rate": 0.0}
    assert report["settings"]["max_overlap"] == 0.5 and report["settings"]["ngram"] == 6
    assert (run / "levels.png").stat().st_size > 0 and "| unreadable | 5 | 0 | 0% |" in (run / "report.md").read_text()
    assert load_problems(f"invented:{run}", empty_ok=True) == []
    # Re-running resumes: nothing is asked again.
    assert main(args) == 0
    with Store.open(run) as store:
        store.select_run("invent")
        assert store.inventions() == inventions
    assert main(["invent", "--model", str(tiny_model_dir)]) == 2
    assert "give --count N" in capsys.readouterr().err


def test_train_invent_adds_kept_problems_to_the_mining_side_only(tiny_repairer_dir, tmp_path, monkeypatch, capsys):
    """`train --invent 1` resumes an invent run that already kept a problem (scripted into
    the directory the job chooses), mines it beside the given train side, never evaluates it."""
    from mlx_repair.config import config_from_args
    from mlx_repair.cli import build_parser
    from mlx_repair.pipeline.invent import invent_settings
    from mlx_repair.pipeline.stages import run_dir
    from tiny_repairer import write_problems

    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "double.jsonl", double_problems(4))
    args = ["train", "--model", str(tiny_repairer_dir), "--problems", str(problems), "--preset", "default",
            "--iters", "2", "--max-tokens", "40", "--min-pairs", "1", "--samples", "1", "--rounds", "1", "--invent", "1",
            "--out", str(tmp_path / "adapter")]
    config = config_from_args(build_parser().parse_args(args))
    directory = run_dir(config, "invent", invent_settings(config))
    with Store.open(directory) as store, Pool() as pool:
        store.start_run("invent", str(tiny_repairer_dir), "invent-code", invent_settings(config), {})
        _Inventor(config, 1, ScriptedWriter([TRIPLE] * 4, SOLUTIONS), pool, store, Console()).run()
    assert main(args) == 0
    report = json.loads((tmp_path / "adapter" / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]][:3] == ["evaluate base", "invent problems", "mine pairs"]
    base = json.loads((tmp_path / "adapter" / "eval-base.json").read_text())
    assert not any(t.startswith("Invented/") for t in base["split"]["eval"] + [r["task_id"] for r in base["per_problem"]])
    [mine_dir] = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("mine-")]
    with Store.open(mine_dir) as store:
        store.select_run("mine")
        mined = {a.task_id for a in store.attempts()}
    assert "Invented/0" in mined and mined - {"Invented/0"}
