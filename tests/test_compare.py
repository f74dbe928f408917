import json

import pytest

from mlx_repair.cli import main
from mlx_repair.evaluation.compare import compare_results
from mlx_repair.errors import UserError


def result(model, cold, repair):
    rows = [
        {"task_id": f"T/{i}", "cold": c, "repair": r, "resample": c}
        for i, (c, r) in enumerate(zip(cold, repair))
    ]
    n = len(rows)
    return {
        "model": model,
        "problems": "humaneval",
        "side": "eval",
        "metrics": {"cold_pass@1": sum(cold) / n, "repair_pass@1": sum(repair) / n},
        "per_problem": rows,
    }


BASE = result("base", cold=[0, 0, 0, 0, 0, 0, 1, 1], repair=[0, 0, 0, 0, 0, 1, 1, 1])
ADAPTER = result("base+adapter", cold=[1, 1, 1, 1, 1, 0, 1, 0], repair=[1, 1, 1, 1, 1, 1, 1, 0])


def test_moved_problems_and_exact_p_value():
    cold, repair = compare_results(BASE, ADAPTER)
    assert cold.metric == "cold_pass@1"
    assert (cold.fixed, cold.broken) == (["T/0", "T/1", "T/2", "T/3", "T/4"], ["T/7"])
    assert cold.p_value == pytest.approx(2 * 7 / 64)  # 6 discordant, 1 against
    assert (cold.a, cold.b, cold.n) == (0.25, 0.75, 8)
    low, high = cold.interval
    assert low <= 0.5 <= high
    assert repair.fixed == ["T/0", "T/1", "T/2", "T/3", "T/4"] and repair.broken == ["T/7"]
    assert "fixed 5, broken 1" in cold.describe() and "n=8" in cold.describe()


def test_with_several_samples_a_problem_moves_when_its_share_of_passes_does():
    base = result("base", cold=[0.25, 0.5, 1.0, 0.75, 0.0], repair=[0.5, 0.5, 1.0, 0.75, 0.0])
    adapter = result("adapter", cold=[0.5, 0.75, 1.0, 0.5, 0.0], repair=[0.5, 0.5, 1.0, 0.75, 0.0])
    cold, repair = compare_results(base, adapter)
    assert (cold.fixed, cold.broken) == (["T/0", "T/1"], ["T/3"])  # 0.25->0.5 counts, though under 0.5
    assert cold.p_value == pytest.approx(1.0) and cold.fractional
    assert (repair.fixed, repair.broken) == ([], [])
    assert "exact sign test" in cold.describe()
    assert "McNemar" in compare_results(BASE, ADAPTER)[0].describe()


def test_the_adapters_repair_turn_is_compared_with_the_bases_resampling():
    base, adapter = dict(BASE), dict(ADAPTER)
    base["per_problem"] = [row | {"resample": 1 if i in (0, 1, 6, 7) else 0} for i, row in enumerate(BASE["per_problem"])]
    base["metrics"] = BASE["metrics"] | {"resample_pass@2": 0.5}
    cold, repair, cross = compare_results(base, adapter)  # the adapter result has no resample metric
    assert cross.metric == "resample_pass@2 (A) -> repair_pass@1 (B)"
    assert (cross.a, cross.b) == (0.5, ADAPTER["metrics"]["repair_pass@1"])
    # base resample [1,1,0,0,0,0,1,1] against adapter repair [1,1,1,1,1,1,1,0]
    assert (cross.fixed, cross.broken) == (["T/2", "T/3", "T/4", "T/5"], ["T/7"])
    assert cross.describe().startswith("resample_pass@2 (A) -> repair_pass@1 (B): 50.0% -> 87.5% (n=8)")


def test_results_on_different_problems_are_refused():
    other = result("x", cold=[1, 1], repair=[1, 1])
    with pytest.raises(UserError, match="different problems"):
        compare_results(BASE, other)


def test_compare_command(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(BASE))
    b.write_text(json.dumps(ADAPTER))
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "cold_pass@1: 25.0% -> 75.0% (n=8)" in out and "broken: T/7" in out
    assert json.loads((tmp_path / "c.json").read_text())[0]["fixed"][0] == "T/0"
    (tmp_path / "bad.json").write_text("{}")
    assert main(["compare", str(a), str(tmp_path / "bad.json")]) == 2
    assert "missing model" in capsys.readouterr().err


def test_compare_states_the_goal_when_b_is_the_base_with_an_adapter(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(BASE))
    b.write_text(json.dumps(ADAPTER | {"adapter": "adapters/x"}))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    # repair 3 -> 7 of 8: 5 fixed, 1 broken, p = 0.22; no resampling measured
    assert "the adapter's goal:\n  1. its repair pass@1 beats the base's (p < 0.05): NOT met (37.5% -> 87.5%" in out
    assert "3. with one repair turn it reaches the base's resampling at the same budget: not measured" in out
    assert "not fully measured" in out
    assert main(["compare", str(b), str(a)]) == 0  # the adapter as baseline: no goal to state
    assert "goal" not in capsys.readouterr().out
