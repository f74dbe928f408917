"""Selection among N samples: the strategies on crafted candidates (pure), extra inputs by
mutation, and crafted drafts run through the real loop, sandbox and store."""

import json
from dataclasses import dataclass, field, replace

import pytest

from mlx_repair.cli import main
from mlx_repair.config import SELECT_STRATEGIES, selected_strategies
from mlx_repair.evaluation.probes import extra_inputs, make_probe, mutations, variants
from mlx_repair.evaluation.selection import (
    PICKERS,
    Candidate,
    agreement_groups,
    candidate_rows,
    choose,
    gap_share,
    select_samples,
    selection_markdown,
    strategy_results,
)
from mlx_repair.mining.loop import LoopConfig, run_loop
from mlx_repair.mining.store import Attempt, Store
from mlx_repair.sandbox import Pool
from mlx_repair.sandbox.cases import hidden_flags
from test_loop import CASES, RIGHT, WRONG, ScriptedWriter, problem
from tiny_repairer import double_problems, write_problems

ALL = selected_strategies("all")  # the critic's test is in test_critic.py


def attempt_with(cases, passed):
    return Attempt(task_id="T/x", kind="draft", sample_index=0, round=0, prompt="", completion="", code="",
                   model="m", passed=passed, status="passed" if passed else "failed", feedback="",
                   verdict={"cases": cases}, logprob=-0.3)


def candidate(sample, logprob, visible=True, behaviour=()):
    return Candidate(sample, logprob, visible, tuple(behaviour))


def test_every_configured_strategy_has_a_picker():
    assert tuple(PICKERS) == SELECT_STRATEGIES


def test_a_selector_never_sees_hidden_cases_or_the_overall_verdict():
    visible = {"hidden": False, "passed": True}
    draft = attempt_with([visible, {"hidden": True, "passed": True}], passed=True)
    overfit = replace(draft, passed=False, verdict={"cases": [visible, {"hidden": True, "passed": False}]})
    assert Candidate.of(draft) == Candidate.of(overfit) == candidate(0, -0.3)


def test_visible_picks_the_most_likely_sample_that_passes_the_visible_cases():
    candidates = [candidate(0, -0.1, visible=False), candidate(1, -0.9), candidate(2, -0.4), candidate(3, None)]
    assert choose(candidates, ALL)["first"] == 0
    assert choose(candidates, ("visible",)) == {"visible": 2}
    # None passes: the most likely of all (it fails whichever is picked); ties go to the earlier sample.
    failing = [candidate(0, -0.5, False), candidate(1, -0.2, False), candidate(2, -0.2, False)]
    assert choose(failing, ("visible", "agreement")) == {"visible": 1, "agreement": 1}
    unknown = [candidate(0, None), candidate(1, None)]  # a writer that records no likelihood
    assert choose(unknown, ("visible",)) == {"visible": 0}


def test_agreement_groups_by_identical_behaviour_and_the_largest_group_wins():
    candidates = [
        candidate(0, -0.1, behaviour=["returned 1"]),  # the most likely, but alone
        candidate(1, -0.8, behaviour=["returned 2"]),
        candidate(2, -0.5, behaviour=["returned 2"]),
        candidate(3, -0.05, visible=False, behaviour=["returned 2"]),  # fails a visible case: not counted
    ]
    groups = agreement_groups(candidates)
    assert [[c.sample_index for c in group] for group in groups] == [[1, 2], [0]]
    assert choose(candidates, ("agreement",)) == {"agreement": 2}  # the group's most likely member


def test_agreement_ties_go_to_the_group_holding_the_most_likely_sample():
    candidates = [
        candidate(0, -0.6, behaviour=["returned 1"]),
        candidate(1, -0.3, behaviour=["raised ValueError"]),
        candidate(2, -0.2, behaviour=["returned 1"]),
        candidate(3, -0.1, behaviour=["raised ValueError"]),
    ]
    assert [[c.sample_index for c in g] for g in agreement_groups(candidates)] == [[1, 3], [0, 2]]
    assert choose(candidates, ("agreement",)) == {"agreement": 3}
    same = [candidate(0, -0.5, behaviour=["a"]), candidate(1, -0.5, behaviour=["b"])]
    assert choose(same, ("agreement",)) == {"agreement": 0}  # a full tie: the earlier sample


def test_the_share_of_the_oracle_gap_and_the_problems_moved_against_the_first_sample():
    assert gap_share(first=40, selected=45, oracle=60) == 0.25
    assert gap_share(first=40, selected=40, oracle=40) is None
    first = {"a": True, "b": False, "c": False, "d": False}
    visible = {"a": False, "b": True, "c": True, "d": False}
    oracle = {"a": True, "b": True, "c": True, "d": True}
    results = {r.strategy: r for r in strategy_results({"first": first, "visible": visible}, oracle)}
    assert (results["visible"].fixed, results["visible"].broken) == (["b", "c"], ["a"])
    assert results["visible"].gap_share == pytest.approx(1 / 3) and results["visible"].p_value == 1.0
    assert (results["oracle"].passed, results["oracle"].gap_share, results["first"].gap_share) == (4, 1.0, 0.0)


def test_mutations_keep_the_type_and_differ_from_the_value():
    assert mutations(3) == [4, 2, 0, 6, -3]
    assert mutations(0) == [1, -1]
    assert mutations(True) == [False]
    assert mutations("ab") == ["ba", "a", "aba", ""]
    assert mutations([1]) == [[], [1, 1]]
    assert mutations(None) == []


def test_extra_inputs_mutate_one_literal_argument_and_never_repeat_a_visible_input():
    assert variants("[1, 2], k=True")[:3] == ["[2, 1], k=True", "[1, 2], k=False", "[1], k=True"]
    assert variants("x, 1") == variants("*xs") == variants("**kw") == variants("[1, 2, ...") == []
    inputs = extra_inputs(["1", "2"], limit=4)
    assert inputs == ["3", "0", "-1", "4"] and not {"1", "2"} & set(inputs)


def test_the_probe_runs_the_candidate_on_the_extra_inputs_in_the_sandbox():
    probe = make_probe(problem("T/double"))
    assert probe is not None and len(probe.inputs) >= 3
    with Pool(workers=2) as pool:
        verdicts = dict(pool.run([("right", probe.problem, RIGHT), ("crash", probe.problem, "def double(x):\n    return x[0]\n")]))
    got = [case.got for case in verdicts["right"].cases]
    assert got == [repr(2 * int(text)) for text in probe.inputs]
    assert all(case.error.startswith("TypeError") for case in verdicts["crash"].cases)


@dataclass
class LikelihoodWriter(ScriptedWriter):
    """A scripted writer that also says how likely each sample was."""

    logprobs: dict = field(default_factory=dict)

    def write(self, requests):
        for output in super().write(requests):
            output.logprob = self.logprobs[output.request.problem.task_id, output.request.sample_index]
            yield output


def overfit(task_id):
    """Right on the problem's visible cases only (which ones are hidden depends on the task id)."""
    shown = ", ".join(f"{x}: {y}" for (x, y), hidden in zip(CASES, hidden_flags(task_id, len(CASES))) if not hidden)
    return f"def double(x):\n    return {{{shown}}}.get(x, 0)\n"


# Per problem, four samples: the overfit one passes the visible cases only; right samples
# agree on every input; WRONG fails the visible cases.
HALF = "def double(x):\n    return x + x\n"
SAMPLES = {
    "T/a": [WRONG, overfit("T/a"), RIGHT, HALF],
    "T/b": [RIGHT, overfit("T/b"), WRONG, WRONG],
}
LOGPROBS = {("T/a", 0): -0.1, ("T/a", 1): -0.2, ("T/a", 2): -0.9, ("T/a", 3): -0.5,
            ("T/b", 0): -0.7, ("T/b", 1): -0.3, ("T/b", 2): -0.1, ("T/b", 3): -0.1}


def selection_run(run_dir):
    """An "eval" run of SAMPLES through the real loop, sandbox and store, and the selection
    among them: (selection, attempts, stored picks)."""
    script = {(task, "draft", k): code for task, codes in SAMPLES.items() for k, code in enumerate(codes)}
    writer = LikelihoodWriter(script, logprobs=LOGPROBS)
    problems = [problem(task) for task in SAMPLES]
    with Store.open(run_dir) as store, Pool(workers=2) as pool:
        store.start_run("eval", writer.name, "inline", {"side": "eval"}, {"train": [], "eval": list(SAMPLES)})
        list(run_loop(problems, writer, pool, store, LoopConfig(samples=4, rounds=0, save_pairs=False, stage="eval")))
        selection = select_samples(problems, store, pool, ALL)
        return selection, store.attempts(), store.picks()


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    return selection_run(tmp_path_factory.mktemp("selection"))


def test_a_sample_passing_only_the_visible_cases_is_never_counted_as_passing(selected):
    selection, attempts, _ = selected
    overfits = [a for a in attempts if a.code == overfit(a.task_id)]
    assert len(overfits) == 2 and not any(a.passed for a in overfits)
    by_task = {p.task_id: p for p in selection.problems}
    assert by_task["T/a"].picks["visible"] == 1 and by_task["T/b"].picks["visible"] == 1  # the most likely
    results = {r.strategy: r for r in selection.results}
    assert results["visible"].passed == 0 and results["first"].passed == 1
    assert results["visible"].broken == ["T/b"]


def test_agreement_on_extra_inputs_outvotes_the_overfit_sample(selected):
    selection, _, picks = selected
    by_task = {p.task_id: p for p in selection.problems}
    assert by_task["T/a"].picks["agreement"] == 3  # RIGHT and HALF agree; HALF is more likely
    assert by_task["T/a"].extra_inputs
    # T/b: RIGHT and the overfit sample disagree, a tie of one each: the more likely group (OVERFIT) wins.
    assert by_task["T/b"].picks["agreement"] == 1
    results = {r.strategy: r for r in selection.results}
    assert (results["agreement"].passed, results["agreement"].fixed, results["agreement"].broken) == (1, ["T/a"], ["T/b"])
    assert (results["oracle"].passed, selection.samples) == (2, 4)
    assert selection.metrics() == {"first_pass@1": 0.5, "visible_pass@1": 0.0, "agreement_pass@1": 0.5, "pass@4": 1.0}
    assert picks == {task: p.picks for task, p in by_task.items()}  # stored for the TUI


def test_the_candidate_table_shows_visible_and_all_cases_and_the_picks(selected):
    selection, attempts, _ = selected
    rows = next(p for p in selection.problems if p.task_id == "T/a").candidates
    assert [r["sample"] for r in rows] == [0, 1, 2, 3]
    overfitted = rows[1]
    assert overfitted["visible_passed"] and not overfitted["passed"] and overfitted["picked_by"] == ["visible"]
    assert overfitted["logprob"] == -0.2
    shown = hidden_flags("T/a", len(CASES)).count(False)
    assert (overfitted["visible"], overfitted["all"]) == (f"{shown}/{shown}", f"{shown}/{len(CASES)}")
    assert rows[0]["picked_by"] == ["first"] and rows[3]["picked_by"] == ["agreement"]
    assert rows == candidate_rows([a for a in attempts if a.task_id == "T/a"], {"first": 0, "visible": 1, "agreement": 3})


def test_eval_selects_among_samples_of_a_tiny_model_end_to_end(tiny_sampler_dir, tmp_path, monkeypatch, capsys):
    """`eval --samples 4 --select all` on a model that drafts `double` right or wrong: every
    sample's log-probability is stored, and the result carries the side-by-side and the
    candidates of each problem."""
    monkeypatch.chdir(tmp_path)
    problems = write_problems(tmp_path / "double.jsonl", double_problems(3))
    out, run_dir = tmp_path / "result.json", tmp_path / "run"
    args = [
        "eval", "--model", str(tiny_sampler_dir), "--problems", str(problems), "--split", "all", "--no-repair",
        "--samples", "4", "--temperature", "1.0", "--max-tokens", "40", "--select", "all",
        "--run-dir", str(run_dir), "--json", str(out),
    ]
    assert main(args) == 0
    with Store.open(run_dir) as store:
        store.select_run("eval")
        attempts = store.attempts()
        assert len(attempts) == 12 and all(a.logprob is not None and a.logprob < 0 for a in attempts)
        assert len(store.picks()) == 3
    result = json.loads(out.read_text())
    selection = result["selection"]
    assert [r["strategy"] for r in selection["results"]] == ["first", "visible", "agreement", "oracle"]
    metrics = result["metrics"]
    # A wrong draft fails the visible cases, so picking by them finds a right one whenever there is one.
    assert metrics["visible_pass@1"] == metrics["pass@4"] >= metrics["first_pass@1"]
    rows = selection["problems"][0]["candidates"]
    assert len(rows) == 4 and sum("first" in row["picked_by"] for row in rows) == 1
    printed = capsys.readouterr().err
    assert "selected by visible (pass@1)" in printed and "selected by agreement (pass@1)" in printed
    assert "first sample (cold, same N)" in printed and "pass@4 " in printed and "vs first: " in printed


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--select", "all"], "give --samples N, N of 2 or more"),
        (["--select", "visible", "--samples", "4"], "greedy decoding draws equal ones: give --temperature"),
        (["--select", "best", "--samples", "4"], "'select.strategies' must be \"all\" or some of first, visible, agreement"),
    ],
)
def test_selection_without_samples_to_choose_from_is_refused_in_one_line(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--model", "no-such-model", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_report_carries_the_side_by_side_and_the_candidates_table(selected, tmp_path):
    from mlx_repair.evaluation.report import StageTime, write_no_adapter_report

    selection = selected[0].to_dict()
    lines = selection_markdown(selection, "base")
    assert lines[0] == "## Selection among 4 samples: base"
    assert "| visible | 0.0% (0/2) | 0 / 1 | 1 | -100% |" in lines  # it broke the one problem first solved
    assert "| oracle (pass@4) | 100.0% (2/2) | 1 / 0 | 1 | 100% |" in lines
    table = [line for line in lines if line.startswith("| T/")]
    assert len(table) == 8 and "| T/a | 1 | -0.200 | 3/3 | 3/4 failed | visible |" in table

    base = {"model": "m", "problems": "p", "side": "eval", "n": 2, "metrics": selected[0].metrics(), "selection": selection}
    text = write_no_adapter_report(tmp_path, base, {}, tmp_path, "cmd", "few pairs", [StageTime("eval", 1.0, 0.1)]).read_text()
    assert "selected by visible (pass@1)" in text and "## Selection among 4 samples: base" in text
