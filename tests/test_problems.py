import gzip
import json

import pytest

from mlx_repair.problems import ProblemsError, load_problems
from mlx_repair.problems.split import is_eval_task, select, split_problems


def write_jsonl(path, records, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return path


HE_RECORD = {
    "task_id": "Fresh/0",
    "prompt": "def double(x):\n    \"\"\"Return twice x.\"\"\"\n",
    "entry_point": "double",
    "test": "def check(candidate):\n    assert candidate(2) == 4\n",
    "canonical_solution": "    return 2 * x\n",
}

MBPP_RECORD = {
    "task_id": 11,
    "text": "Write a function to remove first and last occurrence of a given character.",
    "code": "def remove_Occ(s,ch):\n    return s.replace(ch, '', 1)[::-1].replace(ch, '', 1)[::-1]",
    "test_list": [
        'assert remove_Occ("hello","l") == "heo"',
        'assert remove_Occ("abcda","a") == "bcd"',
    ],
    "test_setup_code": "",
}


def test_packaged_humaneval_has_164_problems():
    problems = load_problems("humaneval")
    assert len(problems) == 164
    first = problems[0]
    assert first.task_id == "HumanEval/0"
    assert first.entry_point == "has_close_elements"
    assert "def check(candidate)" in first.test
    assert first.canonical_solution


def test_humaneval_jsonl_and_gzip(tmp_path):
    (plain,) = load_problems(write_jsonl(tmp_path / "p.jsonl", [HE_RECORD]))
    (gz,) = load_problems(write_jsonl(tmp_path / "p.jsonl.gz", [HE_RECORD], gz=True))
    for problem in (plain, gz):
        assert (problem.task_id, problem.entry_point) == ("Fresh/0", "double")
        assert problem.prompt == HE_RECORD["prompt"] and problem.test == HE_RECORD["test"]
        assert problem.canonical_solution == HE_RECORD["canonical_solution"]
    assert plain.source == str(tmp_path / "p.jsonl")


def test_mbpp_record_becomes_a_humaneval_shaped_problem(tmp_path):
    (problem,) = load_problems(write_jsonl(tmp_path / "mbpp.jsonl", [MBPP_RECORD]))
    assert problem.task_id == "MBPP/11"
    assert problem.entry_point == "remove_Occ"
    assert problem.prompt.startswith("def remove_Occ(s, ch):")
    assert "remove first and last occurrence" in problem.prompt
    # The tests call `candidate`, and the reference code passes them.
    namespace: dict = {}
    exec(problem.canonical_solution + "\n" + problem.test, namespace)
    namespace["check"](namespace["remove_Occ"])
    assert "candidate(" in problem.test and "remove_Occ(" not in problem.test


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", ":2: not valid JSON"),
        ('["a list"]', ":2: expected a JSON object"),
        ('{"task_id": "x", "prompt": "p"}', ":2: not HumanEval format (missing entry_point, test)"),
        (json.dumps({**HE_RECORD, "task_id": "T/1", "test": "assert True"}), ":2: field 'test' must define check"),
        (json.dumps({**HE_RECORD, "task_id": "T/1", "prompt": ""}), ":2: field 'prompt' must be a non-empty string"),
        (json.dumps(HE_RECORD), ":2: task_id 'Fresh/0' repeats line 1"),
        (json.dumps({**MBPP_RECORD, "code": "def other(): pass"}), ":2: code does not define remove_Occ()"),
        (json.dumps({**MBPP_RECORD, "test_list": []}), ":2: field 'test_list' must be a non-empty list"),
    ],
)
def test_bad_files_name_file_line_and_problem(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(HE_RECORD) + "\n" + line + "\n")
    with pytest.raises(ProblemsError) as error:
        load_problems(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ProblemsError, match="no such problem set"):
        load_problems(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ProblemsError, match="holds no problems"):
        load_problems(tmp_path / "empty.jsonl")


def test_split_is_disjoint_complete_and_stable():
    problems = load_problems("humaneval")
    split = split_problems(problems, eval_fraction=0.5)
    assert set(split.train).isdisjoint(split.eval)
    assert len(split.train) + len(split.eval) == 164
    assert 60 < len(split.eval) < 104
    # Stable across runs and independent of which other problems are present.
    again = split_problems(list(reversed(problems[:50])), eval_fraction=0.5)
    assert set(again.eval) == set(split.eval) & {p.task_id for p in problems[:50]}
    # Pinned: a change to the hashing would silently move problems between sides
    # and mix training and evaluation problems of earlier runs.
    assert [is_eval_task(f"HumanEval/{i}", 0.5) for i in range(8)] == [True] * 5 + [False] * 3
    assert (len(split.train), len(split.eval)) == (84, 80)
    assert {p.task_id for p in select(problems, split, "eval")} == set(split.eval)
    assert split.to_dict()["train"] == list(split.train)
