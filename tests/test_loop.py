"""The loop's logic, driven by a scripted writer; the sandbox and the store are real."""

from dataclasses import dataclass, field

from tiny_repairer import double_problem

from mlx_repair.sandbox.cases import hidden_flags
from mlx_repair.evaluation.metrics import summarize
from mlx_repair.events import AttemptFinished, PairSaved, Progress
from mlx_repair.mining.loop import LoopConfig, Output, run_loop
from mlx_repair.sandbox import Pool
from mlx_repair.mining.store import Store

# Four cases: which are hidden is decided by a hash; the test reads it, not assumes it.
CASES = [(1, 2), (2, 4), (3, 6), (10, 20)]
HIDDEN = hidden_flags("T/double", len(CASES))


def problem(task_id="T/double"):
    return double_problem(task_id, CASES, doc="Twice x.")


RIGHT = "def double(x):\n    return 2 * x\n"
WRONG = "def double(x):\n    return 3 * x\n"
# Right on the visible cases only: a "fix" that must not count.
visible_table = ", ".join(f"{x}: {y}" for (x, y), hidden in zip(CASES, HIDDEN) if not hidden)
OVERFIT = f"def double(x):\n    return {{{visible_table}}}.get(x, 0)\n"


@dataclass
class ScriptedWriter:
    """Answers each (task, kind), or (task, kind, sample) where given, with a fixed code
    string; records what it was asked."""

    script: dict
    name: str = "scripted"
    calls: list = field(default_factory=list)

    def sampling_for(self, kind):
        return {"kind": kind}

    def write(self, requests):
        for request in requests:
            self.calls.append((request.problem.task_id, request.kind, request.sample_index, request.round))
            key = (request.problem.task_id, request.kind)
            code = self.script.get((*key, request.sample_index)) or self.script[key]
            yield Output(request, prompt=f"{request.kind} prompt", completion=code, code=code, num_tokens=7)


def run(tmp_path, script, config, problems=None):
    writer = ScriptedWriter(script)
    with Store.open(tmp_path) as store, Pool(workers=2) as pool:
        store.start_run("test", writer.name, "inline", {}, {"train": ["T/double"], "eval": []})
        events = list(run_loop(problems or [problem()], writer, pool, store, config))
        metrics, rows = summarize(store, problems or [problem()])
        return writer, events, store.attempts(), store.pairs(), metrics


def test_failing_draft_is_repaired_and_becomes_a_repair_pair(tmp_path):
    script = {("T/double", "draft"): WRONG, ("T/double", "repair"): RIGHT, ("T/double", "resample"): WRONG}
    writer, events, attempts, pairs, metrics = run(tmp_path, script, LoopConfig(rounds=1, resample=True))
    draft, repair, resample = attempts
    assert (draft.kind, draft.passed) == ("draft", False)
    assert (repair.kind, repair.passed, repair.parent_id) == ("repair", True, draft.id)
    assert (resample.kind, resample.passed) == ("resample", False)
    # The repair prompt's feedback names only visible cases.
    for (x, y), hidden in zip(CASES, HIDDEN):
        assert (f"Input: {x}\n" in draft.feedback) == (not hidden)
    assert [(p.kind, p.broken_id, p.fixed_id) for p in pairs] == [("repair", draft.id, repair.id)]
    assert pairs[0].feedback == draft.feedback
    assert metrics["cold_pass@1"] == 0.0 and metrics["repair_pass@1"] == 1.0
    assert metrics["resample_pass@2"] == 0.0 and metrics["oracle"] == 1.0
    assert sum(isinstance(e, PairSaved) for e in events) == 1
    # Progress counts the repair and the resample after the draft, so the bar keeps moving.
    progress = [(e.done, e.follow_ups_done, e.follow_ups_total) for e in events if isinstance(e, Progress)]
    assert progress == [(1, 0, 0), (1, 1, 1), (1, 2, 2)]


def test_a_fix_that_passes_only_the_visible_cases_is_not_a_repair(tmp_path):
    script = {("T/double", "draft"): WRONG, ("T/double", "repair"): OVERFIT}
    _, _, attempts, pairs, metrics = run(tmp_path, script, LoopConfig(rounds=1))
    repair = attempts[1]
    assert not repair.passed
    assert all(c["passed"] for c in repair.verdict["cases"] if not c["hidden"])
    assert [p.kind for p in pairs] == ["garbage"]
    assert metrics["repair_pass@1"] == 0.0


def test_passing_draft_makes_solve_and_keep_pairs_and_no_repair(tmp_path):
    script = {("T/double", "draft"): RIGHT}
    writer, _, attempts, pairs, metrics = run(tmp_path, script, LoopConfig(samples=2, rounds=1))
    assert [a.kind for a in attempts] == ["draft", "draft"]
    assert sorted(p.kind for p in pairs) == ["keep", "keep", "solve", "solve"]
    assert metrics["cold_pass@1"] == 1.0 and metrics["repair_pass@1"] == 1.0


def test_identical_fix_is_rejected_and_rounds_continue_the_chain(tmp_path):
    script = {("T/double", "draft"): WRONG, ("T/double", "repair"): WRONG}
    writer, _, attempts, pairs, _ = run(tmp_path, script, LoopConfig(rounds=3))
    assert [(a.kind, a.round) for a in attempts] == [("draft", 0), ("repair", 1), ("repair", 2), ("repair", 3)]
    assert [a.parent_id for a in attempts[1:]] == [a.id for a in attempts[:3]]
    assert pairs == []


def test_a_rerun_resumes_without_asking_the_model_again_or_duplicating(tmp_path):
    script = {("T/double", "draft"): WRONG, ("T/double", "repair"): RIGHT}
    config = LoopConfig(samples=2, rounds=1)
    first, _, attempts, pairs, _ = run(tmp_path, script, config)
    second, events, attempts_again, pairs_again, _ = run(tmp_path, script, config)
    assert len(first.calls) == 4 and second.calls == []
    assert [a.id for a in attempts_again] == [a.id for a in attempts]
    assert len(pairs_again) == len(pairs) == 2
    assert all(e.resumed for e in events if isinstance(e, AttemptFinished))


# A second wrong draft, far from RIGHT, and one close to it.
FAR_WRONG = "def double(x):\n    result = 0\n    for _ in range(3):\n        result += x\n    return result\n"


def test_independent_samples_pair_up_as_resample_repairs(tmp_path):
    """Each failing draft gets the passing draft most unlike it; a draft that passes only
    the visible cases is never an answer; the other failing drafts make the garbage control."""
    script = {
        ("T/double", "draft", 0): WRONG, ("T/double", "draft", 1): RIGHT,
        ("T/double", "draft", 2): OVERFIT, ("T/double", "draft", 3): FAR_WRONG,
        ("T/double", "draft", 4): "def double(x):\n    return x + x\n",
        ("T/double", "draft"): RIGHT,
    }
    _, events, attempts, pairs, _ = run(tmp_path, script, LoopConfig(samples=5, rounds=0))
    by_sample = {a.sample_index: a for a in attempts}
    passing = {by_sample[1].id, by_sample[4].id}
    repairs = [p for p in pairs if p.kind == "repair"]
    assert {p.broken_id for p in repairs} == {by_sample[s].id for s in (0, 2, 3)}
    assert all(p.fixed_id in passing and p.provenance == "resample" for p in repairs)
    assert all(p.feedback == next(a for a in attempts if a.id == p.broken_id).feedback for p in repairs)
    # WRONG ("return 3 * x") is nearer RIGHT ("return 2 * x") than "return x + x": paired with the latter.
    assert next(p.fixed_id for p in repairs if p.broken_id == by_sample[0].id) == by_sample[4].id
    garbage = [p for p in pairs if p.kind == "garbage"]
    assert len(garbage) == 3 and all(p.fixed_id not in passing and p.fixed_id != p.broken_id for p in garbage)
    assert sum(p.kind == "solve" for p in pairs) == 2
    assert sum(isinstance(e, PairSaved) for e in events) == len(pairs)


def test_a_resumed_run_keeps_pairs_and_their_provenance_once(tmp_path):
    script = {("T/double", "draft", 0): WRONG, ("T/double", "draft"): RIGHT, ("T/double", "repair"): FAR_WRONG.replace("3", "2")}
    config = LoopConfig(samples=2, rounds=1)
    _, _, _, pairs, _ = run(tmp_path, script, config)
    second, _, _, pairs_again, _ = run(tmp_path, script, config)
    assert second.calls == []
    key = lambda p: (p.kind, p.provenance, p.broken_id, p.fixed_id)  # noqa: E731
    assert sorted(map(key, pairs_again)) == sorted(map(key, pairs))
    assert sorted(p.provenance for p in pairs if p.kind == "repair") == ["resample", "self-repair"]
