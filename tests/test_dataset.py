"""Pairs -> chat records: the exact loop prompts, prompt masking, mixing, the garbage
control, and validation on other problems."""

import json
from pathlib import Path
from dataclasses import replace

import pytest

from mlx_repair.mining.dataset import (
    KEEP_FEEDBACK,
    MixConfig,
    build_dataset,
    data_hash,
    prepare_dataset,
    read_jsonl,
    split_tasks,
    tokenize,
    too_few_pairs,
)
from mlx_repair.config import Config
from mlx_repair.errors import UserError
from mlx_repair.problems import Problem
from mlx_repair.generation.prompts import draft_messages, render, repair_messages
from mlx_repair.mining.pairing import pair_total
from mlx_repair.mining.store import Attempt, Pair, Store
from mlx_repair.pipeline.train import mined_dataset, mix_of, with_added_run
from mlx_repair.problems.split import split_problems

FEEDBACK = "Test: assert candidate(2) == 4\nInput: 2\nExpected: 4\nGot: 6"


def problem(i: int) -> Problem:
    return Problem(
        task_id=f"T/{i}",
        prompt=f'def f{i}(x):\n    """Twice x."""\n',
        entry_point=f"f{i}",
        test="def check(candidate):\n    assert candidate(2) == 4\n",
    )


PROBLEMS = [problem(i) for i in range(10)]


def _attempt(store, task, kind, sample, code, passed):
    return store.add_attempt(
        Attempt(task_id=task, kind=kind, sample_index=sample, round=0 if kind == "draft" else 1,
                prompt="p", completion=code, code=code, model="tiny", passed=passed,
                status="passed" if passed else "failed", feedback="" if passed else FEEDBACK)
    )


def fill_store(store: Store, repairs_per_task: int = 2, problems=PROBLEMS) -> None:
    """Each task: failing drafts repaired (repair pairs) and failed repairs (garbage);
    even tasks also have a passing draft (solve + keep)."""
    for p in problems:
        head = f"def {p.entry_point}(x):\n    return"
        for s in range(repairs_per_task):
            broken = _attempt(store, p.task_id, "draft", s, f"{head} 3 * x  # {s}\n", False)
            fixed = _attempt(store, p.task_id, "repair", s, f"{head} 2 * x  # {s}\n", True)
            wrong = _attempt(store, p.task_id, "resample", s, f"{head} x  # {s}\n", False)
            store.add_pair(Pair(p.task_id, "repair", fixed.id, FEEDBACK, broken.id, near_copy=(s == 1)))
            store.add_pair(Pair(p.task_id, "garbage", wrong.id, FEEDBACK, broken.id))
        if int(p.task_id.split("/")[1]) % 2 == 0:
            good = _attempt(store, p.task_id, "draft", 9, f"{head} x + x\n", True)
            store.add_pair(Pair(p.task_id, "solve", good.id, ""))
            store.add_pair(Pair(p.task_id, "keep", good.id, "", good.id))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "run") as store:
        store.start_run("r", "tiny", "test", {}, {"train": [p.task_id for p in PROBLEMS], "eval": []})
        fill_store(store)
        yield store


def test_records_hold_the_exact_loop_turns_and_a_fenced_answer(store):
    data = build_dataset(store, PROBLEMS, MixConfig(keep_ratio=1.0, solve_ratio=1.0, valid_fraction=0, include_near_copies=False, prompt_mode="code"))
    by_kind = {r["kind"]: r for r in data.train}
    task = {p.task_id: p for p in PROBLEMS}
    repair, solve, keep = by_kind["repair"], by_kind["solve"], by_kind["keep"]
    head = f"def {task[repair['task_id']].entry_point}(x):\n    return"
    assert repair["messages"][:-1] == repair_messages(task[repair["task_id"]], f"{head} 3 * x  # 0", FEEDBACK, "code")
    assert repair["messages"][-1] == {"role": "assistant", "content": f"```python\n{head} 2 * x  # 0\n```"}
    assert solve["messages"][:-1] == draft_messages(task[solve["task_id"]])
    code = f"def {task[keep['task_id']].entry_point}(x):\n    return x + x"
    assert keep["messages"][:-1] == repair_messages(task[keep["task_id"]], code, KEEP_FEEDBACK, "code")
    assert keep["messages"][-1]["content"] == f"```python\n{code}\n```"


def test_near_copies_are_kept_unless_excluded(store):
    without = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0, include_near_copies=False))
    assert all("# 1" not in r["messages"][-1]["content"] for r in without.train if r["kind"] == "repair")
    assert pair_total(without.counts["train"], "repair") == 10
    default = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0))
    assert pair_total(default.counts["train"], "repair") == 20


def test_keep_and_solve_are_capped_at_their_ratio_of_repairs(store):
    data = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0, keep_ratio=0.3, solve_ratio=0.2, include_near_copies=False, prompt_mode="code"))
    assert data.counts["train"] == {"repair": {"self-repair": 10}, "keep": {"draft": 3}, "solve": {"draft": 2}}
    assert data.available == {"repair": {"self-repair": 10}, "solve": {"draft": 5}, "keep": {"draft": 5}, "garbage": {"self-repair": 20}}


def test_garbage_control_swaps_repairs_for_as_many_garbage_pairs(store):
    real = build_dataset(store, PROBLEMS, MixConfig(prompt_mode="code"))
    control = build_dataset(store, PROBLEMS, MixConfig(control="garbage", prompt_mode="code"))
    assert "repair" not in control.counts["train"]
    assert pair_total(control.counts["train"], "garbage") == pair_total(real.counts["train"], "repair")
    assert control.counts["train"]["keep"] == real.counts["train"]["keep"]
    assert control.train_tasks == real.train_tasks and control.valid_tasks == real.valid_tasks
    garbage = next(r for r in control.train if r["kind"] == "garbage")
    assert "return x  #" in garbage["messages"][-1]["content"]  # the failing "fix"
    with pytest.raises(UserError, match="control"):
        MixConfig(control="shuffled")


def test_repair_pairs_can_be_limited_to_one_provenance(store):
    head = "def f0(x):\n    return"
    broken = _attempt(store, "T/0", "draft", 5, f"{head} -x\n", False)
    passing = _attempt(store, "T/0", "draft", 6, f"{head} x * 2\n", True)
    store.add_pair(Pair("T/0", "repair", passing.id, FEEDBACK, broken.id, provenance="resample"))
    both = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0, pairs_per_problem=9))
    assert both.counts["train"]["repair"] == {"self-repair": 20, "resample": 1}
    for provenance, count in (("self-repair", 20), ("resample", 1)):
        only = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0, pairs_per_problem=9, repair_provenance=provenance))
        assert only.counts["train"]["repair"] == {provenance: count}
        assert {r["provenance"] for r in only.train if r["kind"] == "repair"} == {provenance}
    with pytest.raises(UserError, match="repair_provenance"):
        MixConfig(repair_provenance="draft")


def test_validation_comes_from_other_problems_and_is_deterministic(store, tmp_path):
    data = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0.2))
    assert len(data.valid_tasks) == 2 and not set(data.valid_tasks) & set(data.train_tasks)
    assert {r["task_id"] for r in data.valid} <= set(data.valid_tasks)
    assert {r["task_id"] for r in data.train} <= set(data.train_tasks)
    ids = [p.task_id for p in PROBLEMS]
    forward, backward = (split_tasks(order, MixConfig(valid_fraction=0.2)) for order in (ids, ids[::-1]))
    assert set(forward[1]) == set(backward[1]) == set(data.valid_tasks)
    first = prepare_dataset(store, PROBLEMS, tmp_path / "a")
    second = prepare_dataset(store, PROBLEMS, tmp_path / "b")
    assert first.sha256 == second.sha256 == data_hash(tmp_path / "a")
    assert (tmp_path / "a" / "train.jsonl").read_bytes() == (tmp_path / "b" / "train.jsonl").read_bytes()
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert info["split"]["valid"] == data.valid_tasks and info["sha256"] == first.sha256
    assert info["languages"] == {"python": len(data.train) + len(data.valid)}  # every record names it
    assert {r["language"] for r in data.train + data.valid} == {"python"}
    other_seed = prepare_dataset(store, PROBLEMS, tmp_path / "c", MixConfig(seed=1))
    assert other_seed.sha256 != first.sha256


def test_the_only_repair_is_trained_on_not_held_out(tmp_path):
    """Validation problems come from those with repair pairs; solve/keep-only problems
    do not count, so one mined repair cannot end up alone in validation."""
    with Store.open(tmp_path / "run") as store:
        store.start_run("r", "tiny", "test", {}, {"train": [p.task_id for p in PROBLEMS], "eval": []})
        head = "def f0(x):\n    return"
        broken = _attempt(store, "T/0", "draft", 0, f"{head} 3 * x\n", False)
        fixed = _attempt(store, "T/0", "repair", 0, f"{head} 2 * x\n", True)
        store.add_pair(Pair("T/0", "repair", fixed.id, FEEDBACK, broken.id))
        for p in PROBLEMS[1:]:
            good = _attempt(store, p.task_id, "draft", 0, f"def {p.entry_point}(x):\n    return x + x\n", True)
            store.add_pair(Pair(p.task_id, "solve", good.id, ""))
        data = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0.5))
    assert data.valid_tasks == [] and "T/0" in data.train_tasks
    assert pair_total(data.counts["train"], "repair") == 1


def test_no_pairs_is_a_one_line_error(tmp_path):
    with Store.open(tmp_path / "empty") as empty:
        empty.start_run("r", "tiny", "test", {}, {"train": [], "eval": []})
        with pytest.raises(UserError, match="no training records"):
            prepare_dataset(empty, PROBLEMS, tmp_path / "out")


def test_loss_mask_covers_exactly_the_assistant_turn(store, tiny_tokenizer):
    record = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0)).train[0]
    (tokens, offset), = tokenize([record], tiny_tokenizer, max_seq_length=4096)[0]
    prompt = render(tiny_tokenizer, record["messages"][:-1])
    assert tiny_tokenizer.decode(tokens[:offset]) == prompt
    answer = record["messages"][-1]["content"]
    assert tiny_tokenizer.decode(tokens[offset:]).strip() == f"{answer}<|im_end|>"
    # mlx-lm's default_loss counts target position t (predicting token t+1) when
    # offset <= t+1 <= length: exactly the tokens from the offset on.
    import mlx.core as mx

    steps = mx.arange(1, len(tokens))
    mask = (steps >= offset) & (steps <= len(tokens))
    assert int(mask.sum().item()) == len(tokens) - offset


def test_too_long_records_are_dropped_not_truncated(store, tiny_tokenizer):
    records = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0)).train[:3]
    examples, dropped = tokenize(records, tiny_tokenizer, max_seq_length=10)
    assert examples == [] and dropped == 3


def test_jsonl_reads_back_and_is_what_mlx_lm_loads(store, tmp_path, tiny_tokenizer):
    from types import SimpleNamespace

    from mlx_lm.tuner.datasets import ChatDataset, load_local_dataset

    prepare_dataset(store, PROBLEMS, tmp_path)
    train, valid, _ = load_local_dataset(tmp_path, tiny_tokenizer, SimpleNamespace(mask_prompt=True))
    assert isinstance(train, ChatDataset) and len(train) == len(read_jsonl(tmp_path / "train.jsonl"))
    assert len(valid) > 0


def test_each_problem_gives_at_most_its_cap_of_each_kind_and_no_duplicate_records(tmp_path):
    with Store.open(tmp_path / "run") as store:
        store.start_run("r", "tiny", "test", {}, {"train": [p.task_id for p in PROBLEMS[:2]], "eval": []})
        for p in PROBLEMS[:2]:
            head = f"def {p.entry_point}(x):\n    return"
            fixed = _attempt(store, p.task_id, "draft", 0, f"{head} 2 * x\n", True)
            same = _attempt(store, p.task_id, "draft", 1, f"{head} 2 * x\n", True)
            for s in range(2, 7):
                broken = _attempt(store, p.task_id, "draft", s, f"{head} {s} * x\n", False)
                store.add_pair(Pair(p.task_id, "repair", fixed.id, FEEDBACK, broken.id, provenance="resample"))
            for good in (fixed, same):  # two passing drafts with the same code: one solve record
                store.add_pair(Pair(p.task_id, "solve", good.id, ""))
        cap = MixConfig(valid_fraction=0, pairs_per_problem=3, solve_ratio=1.0, min_pairs=7)
        capped = build_dataset(store, PROBLEMS, cap)
        wide = build_dataset(store, PROBLEMS, replace(cap, pairs_per_problem=10))
    for data, repairs in ((capped, 3), (wide, 5)):
        for p in PROBLEMS[:2]:
            kinds = [r["kind"] for r in data.train if r["task_id"] == p.task_id]
            assert kinds.count("repair") == repairs and kinds.count("solve") == 1
        assert all(r["provenance"] == "resample" for r in data.train if r["kind"] == "repair")
    assert capped.counts["train"]["repair"] == {"resample": 6}
    # Too few after the cap: the reason says how many were mined and where the rest went.
    assert too_few_pairs(capped, cap) == (
        "repair pairs to train on: 6 (of 10 mined: at most 3 per problem, train.pairs_per_problem, "
        "and 0 on the validation problems), fewer than the minimum of 7 (--min-pairs)"
    )
    assert too_few_pairs(wide, cap) is None


def test_a_prompt_without_code_trains_that_prompt_and_gives_the_keep_share_to_solve(store):
    data = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0, keep_ratio=0.3, solve_ratio=0.2, prompt_mode="facts"))
    task = {p.task_id: p for p in PROBLEMS}
    assert data.counts["train"] == {"repair": {"self-repair": 20}, "solve": {"draft": 5}}
    repair = next(r for r in data.train if r["kind"] == "repair")
    shown = repair["messages"][1]["content"]
    assert repair["messages"][:-1] == repair_messages(task[repair["task_id"]], "unused", FEEDBACK, "facts")
    assert "3 * x" not in shown and FEEDBACK in shown


def test_answers_leave_out_the_prompts_docstrings_unless_asked_and_name_what_they_import(tmp_path):
    with Store.open(tmp_path / "run") as store:
        store.start_run("r", "tiny", "test", {}, {"train": [p.task_id for p in PROBLEMS], "eval": []})
        for p in PROBLEMS:
            head = f'from math import *\n\ndef {p.entry_point}(x):\n    """Twice x."""\n    return'
            broken = _attempt(store, p.task_id, "draft", 0, f"{head} 3 * x\n", False)
            fixed = _attempt(store, p.task_id, "draft", 1, f"{head} 2 * floor(x)\n", True)
            store.add_pair(Pair(p.task_id, "repair", fixed.id, FEEDBACK, broken.id, provenance="resample"))
            store.add_pair(Pair(p.task_id, "solve", fixed.id, ""))
        whole = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0, answer_docstrings=True))
        short = build_dataset(store, PROBLEMS, MixConfig(valid_fraction=0))
    assert {r["kind"] for r in short.train} == {"repair", "solve"}
    for kept, left_out in zip(whole.train, short.train):
        assert kept["messages"][:-1] == left_out["messages"][:-1]  # the same turns the loop shows
        assert '"""Twice x."""' in kept["messages"][-1]["content"]
        name = PROBLEMS[int(kept["task_id"][2:])].entry_point
        answer = f"```python\nfrom math import floor\n\ndef {name}(x):\n    return 2 * floor(x)\n```"
        assert left_out["messages"][-1]["content"] == answer


def test_preference_records_set_a_failing_answer_against_each_passing_one(store):
    config = MixConfig(valid_fraction=0, keep_ratio=1.0, solve_ratio=1.0, prompt_mode="code", preference=True)
    data = build_dataset(store, PROBLEMS, config)
    kinds = {kind: sum(by.values()) for kind, by in data.counts["train"].items()}
    assert kinds == {"repair": 20, "solve": 5}  # keep records have no failing answer
    for record in data.train:
        rejected, chosen = record["rejected"], record["messages"][-1]["content"]
        assert rejected.startswith("```python\n") and "3 * x  #" in rejected  # a failing draft
        assert rejected != chosen and "3 * x" not in chosen
        if record["kind"] == "repair":  # the broken code its prompt shows
            assert rejected.strip("`").removeprefix("python\n").rstrip() in record["messages"][1]["content"]


def test_solve_records_without_a_failing_draft_are_left_out_of_preference_data(tmp_path):
    with Store.open(tmp_path / "run") as store:
        store.start_run("r", "tiny", "test", {}, {"train": ["T/0", "T/2"], "eval": []})
        for task in ("T/0", "T/2"):
            good = _attempt(store, task, "draft", 0, f"def f{task[2]}(x):\n    return x + x\n", True)
            store.add_pair(Pair(task, "solve", good.id, ""))
        broken = _attempt(store, "T/2", "draft", 1, "def f2(x):\n    return 3 * x\n", False)
        store.add_pair(Pair("T/2", "repair", good.id, FEEDBACK, broken.id, provenance="resample"))
        config = MixConfig(valid_fraction=0, solve_ratio=1.0, pairs_per_problem=4, preference=True)
        data = build_dataset(store, PROBLEMS, config)
        plain = build_dataset(store, PROBLEMS, replace(config, preference=False))
    assert sorted((r["task_id"], r["kind"]) for r in data.train) == [("T/2", "repair"), ("T/2", "solve")]
    assert all(r["rejected"] == "```python\ndef f2(x):\n    return 3 * x\n```" for r in data.train)
    assert len(plain.train) == 3 and "rejected" not in plain.train[0]


def mined_store(path, problems) -> Path:
    with Store.open(path) as store:
        store.start_run("mine", "tiny", "test", {}, {"train": [p.task_id for p in problems], "eval": []})
        fill_store(store, problems=problems)
    return path


def test_a_second_mining_run_joins_the_training_side_with_its_sets_eval_side_held_out(tmp_path):
    written = [replace(problem(i), task_id=f"Written/{i}") for i in range(8)]
    problems_file = tmp_path / "written.jsonl"
    problems_file.write_text("".join(
        json.dumps({"task_id": p.task_id, "prompt": p.prompt, "entry_point": p.entry_point, "test": p.test}) + "\n"
        for p in written
    ))
    config = Config()
    split = split_problems(written, config.run.eval_fraction)
    assert split.train and split.eval  # the run below mined both sides
    first = mined_dataset(PROBLEMS, mined_store(tmp_path / "first", PROBLEMS), mix_of(config))
    joined, added = with_added_run(config, first, mined_store(tmp_path / "second", written), str(problems_file))

    assert added.trained_problems == {r["task_id"] for r in added.train} == set(split.train) and not added.valid
    assert sum(added.counts["train"]["repair"].values()) == sum(r["kind"] == "repair" for r in added.train)
    assert joined.train == first.train + added.train
    assert joined.valid == first.valid and joined.valid_tasks == first.valid_tasks
    assert set(joined.train_tasks) == set(first.train_tasks) | set(split.train)
    assert joined.trained_problems == first.trained_problems | added.trained_problems
    for kind in ("repair", "solve"):  # the joined counts are its records'
        assert sum(joined.counts["train"].get(kind, {}).values()) == sum(r["kind"] == kind for r in joined.train)
    assert joined.counts["valid"] == first.counts["valid"]
