import sqlite3

import pytest

from mlx_repair.errors import UserError
from mlx_repair.mining.store import Invention, STORE_FILE, Attempt, Pair, Store

SPLIT = {"train": ["T/0", "T/1"], "eval": ["T/2"]}


def attempt(task="T/0", kind="draft", sample=0, round=0, passed=False, **extra):
    fields = dict(
        task_id=task, kind=kind, sample_index=sample, round=round, prompt="p", completion="c",
        code="def f(): pass", model="tiny", passed=passed, status="passed" if passed else "failed",
        feedback="" if passed else "Input: 1\nExpected: 2\nGot: 3",
    )
    return Attempt(**{**fields, **extra})


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path) as store:
        store.start_run("r", "tiny", "humaneval", {"a": 1}, SPLIT)
        yield store


def test_attempts_round_trip_and_never_duplicate(store):
    first = store.add_attempt(attempt(verdict={"cases": [1, 2]}, sampling={"temperature": 0.8}))
    assert first.id is not None and first.verdict == {"cases": [1, 2]}
    again = store.add_attempt(attempt(completion="something else"))
    assert again.id == first.id and again.completion == "c"
    store.add_attempt(attempt(kind="repair", round=1, parent_id=first.id, passed=True))
    assert [a.kind for a in store.attempts("T/0")] == ["draft", "repair"]
    assert store.attempt_by_key("T/0", "repair", 0, 1).passed is True
    assert store.attempt_by_key("T/9", "draft", 0, 0) is None


def test_an_attempts_log_probability_is_stored_with_it(store):
    assert store.add_attempt(attempt(logprob=-0.25)).logprob == -0.25
    assert store.add_attempt(attempt(task="T/1")).logprob is None  # a writer that does not know it


def test_a_selection_is_stored_per_problem_and_replaced_when_made_again(store):
    store.save_picks("T/0", {"first": 0, "visible": 3})
    store.save_picks("T/1", {"first": 0})
    store.save_picks("T/0", {"visible": 2})
    assert store.picks() == {"T/0": {"first": 0, "visible": 2}, "T/1": {"first": 0}}


def test_a_store_of_a_schema_that_cannot_be_migrated_is_refused_in_one_line(tmp_path, store):
    store.db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    store.db.commit()
    with pytest.raises(UserError, match=r"store schema 2, this version reads 5\); use a new run directory"):
        Store.open(tmp_path)


def test_pairs_are_counted_per_kind_and_stored_once(store):
    broken = store.add_attempt(attempt())
    fixed = store.add_attempt(attempt(kind="repair", round=1, passed=True, parent_id=broken.id))
    pair = Pair(task_id="T/0", kind="repair", fixed_id=fixed.id, broken_id=broken.id, feedback="fb")
    assert store.add_pair(pair) is True
    assert store.add_pair(pair) is False
    assert store.pair_counts() == {"repair": 1, "solve": 0, "keep": 0, "garbage": 0}
    assert store.pairs("repair")[0].broken_id == broken.id
    # A solve pair has no broken attempt (NULL in SQL): a resumed run must not add it again.
    solve = Pair(task_id="T/0", kind="solve", fixed_id=fixed.id, feedback="")
    assert store.add_pair(solve) is True
    assert store.add_pair(solve) is False
    assert store.pair_counts()["solve"] == 1
    with pytest.raises(ValueError, match="pair kind"):
        store.add_pair(Pair(task_id="T/0", kind="bogus", fixed_id=fixed.id, feedback=""))


def test_reopening_resumes_the_same_run(tmp_path, store):
    store.add_attempt(attempt())
    with Store.open(tmp_path) as again:
        assert again.start_run("r", "tiny", "humaneval", {"a": 1}, SPLIT) == store.run_id
        assert len(again.attempts()) == 1
        with pytest.raises(UserError, match="started with other settings"):
            again.start_run("r", "other-model", "humaneval", {"a": 1}, SPLIT)


def test_a_run_continues_only_where_the_store_is_told_it_may(tmp_path, store):
    def more_a(stored, config):
        return config["a"] > stored["a"]

    with Store.open(tmp_path) as again:
        with pytest.raises(UserError, match="raising --rounds"):
            again.start_run("r", "tiny", "humaneval", {"a": 2}, SPLIT)
        assert again.start_run("r", "tiny", "humaneval", {"a": 2}, SPLIT, continues=more_a) == store.run_id
        assert again.start_run("r", "tiny", "humaneval", {"a": 2}, SPLIT) == store.run_id  # now recorded
        with pytest.raises(UserError, match="other settings"):  # a continuation never changes the model
            again.start_run("r", "other-model", "humaneval", {"a": 3}, SPLIT, continues=more_a)
        with pytest.raises(UserError, match="other settings"):
            again.start_run("r", "tiny", "humaneval", {"a": 1}, SPLIT, continues=more_a)


def test_store_of_another_version_is_refused(tmp_path, store):
    store.db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    store.db.commit()
    with pytest.raises(UserError, match="another mlx-repair version"):
        Store.open(tmp_path)


def test_corrupted_or_foreign_files_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a readable mlx-repair store"):
        Store.open(tmp_path / "a")
    (tmp_path / "b").mkdir()
    sqlite3.connect(tmp_path / "b" / STORE_FILE).execute("CREATE TABLE x (y)")
    with pytest.raises(UserError, match="not an mlx-repair store"):
        Store.open(tmp_path / "b")


def test_a_schema_3_store_opens_with_its_attempts_and_pairs(tmp_path, store):
    """Schema 4 only added log-probabilities and picks: an older store is migrated, not refused."""
    draft = store.add_attempt(attempt())
    store.add_pair(Pair(task_id="T/0", kind="solve", fixed_id=draft.id, feedback=""))
    store.db.executescript(
        "ALTER TABLE attempts DROP COLUMN logprob; DROP TABLE picks; ALTER TABLE pairs DROP COLUMN origin; "
        "DROP TABLE inventions; UPDATE meta SET value='3' WHERE key='schema_version';"
    )
    with Store.open(tmp_path) as again:
        again.select_run("r")
        assert [a.id for a in again.attempts()] == [draft.id] and again.attempts()[0].logprob is None
        assert again.pair_counts()["solve"] == 1 and again.picks() == {}
        version = again.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert version == "5"


def test_a_schema_4_store_opens_its_pairs_as_from_given_problems(tmp_path, store):
    """Schema 5 only added the pairs' origin and the inventions table."""
    draft = store.add_attempt(attempt())
    store.add_pair(Pair(task_id="T/0", kind="solve", fixed_id=draft.id, feedback="", origin="invented"))
    store.db.executescript(
        "ALTER TABLE pairs DROP COLUMN origin; DROP TABLE inventions; "
        "UPDATE meta SET value='4' WHERE key='schema_version';"
    )
    with Store.open(tmp_path) as again:
        again.select_run("r")
        assert [p.origin for p in again.pairs()] == ["given"] and again.inventions() == []
        again.add_pair(Pair(task_id="T/0", kind="keep", fixed_id=draft.id, feedback="", broken_id=draft.id, origin="invented"))
        assert [p.origin for p in again.pairs()] == ["given", "invented"]


def test_an_invention_is_stored_pending_then_replaced_by_its_outcome(store):
    store.add_invention(Invention(0, 2, "Invented/0", False, "pending", {}, "text"))
    store.add_invention(Invention(1, 3, "Invented/1", False, "unreadable", {"detail": "no check"}, "???"))
    kept = Invention(0, 2, "Invented/0", True, "", {"task_id": "Invented/0"}, "text", passing=1, solutions=4, overlap=0.1, overlap_with="HumanEval/3")
    store.add_invention(kept)
    assert store.inventions() == [kept, Invention(1, 3, "Invented/1", False, "unreadable", {"detail": "no check"}, "???")]
