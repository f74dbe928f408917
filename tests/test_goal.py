"""The goal of training, judged from base (A) and base + adapter (B) results."""

from mlx_repair.evaluation.compare import compare_results
from mlx_repair.evaluation.goal import adapter_goal, verdict


def result(cold: str, repair: str, resample: str | None = None) -> dict:
    """An `eval --json` result; each string has one 0/1 per problem."""
    columns = {"cold": cold, "repair": repair, **({"resample": resample} if resample else {})}
    rows = [{"task_id": f"T/{i}", **{k: int(v[i]) for k, v in columns.items()}} for i in range(len(cold))]
    n = len(rows)
    metrics = {f"{k}_pass@{2 if k == 'resample' else 1}": sum(r[k] for r in rows) / n for k in columns}
    return {"model": "m", "metrics": metrics, "per_problem": rows}


def goal(a: dict, b: dict):
    parts = adapter_goal(compare_results(a, b))
    return [part.met for part in parts], verdict(parts), parts


def test_a_significant_repair_gain_that_keeps_cold_and_reaches_resampling_meets_the_goal():
    base = result(cold="1100000000", repair="1100000000", resample="1111000000")
    adapter = result(cold="1100000000", repair="1111111111", resample="1111111111")
    met, said, parts = goal(base, adapter)
    assert met == [True, True, True]  # repair: 8 fixed, 0 broken, p = 2/256
    assert said.endswith("Use it.")
    assert parts[0].evidence == "20.0% -> 100.0%, n=10, fixed 8, broken 0, p=0.00781"


def test_eight_fixed_is_not_enough_when_two_break():
    base = result(cold="1100000000", repair="1100000000", resample="1100000000")
    adapter = result(cold="1100000000", repair="0011111111", resample="1100000000")  # 8 fixed, 2 broken
    met, said, _ = goal(base, adapter)
    assert met == [False, True, True]  # p = 2 * (1 + 10 + 45) / 1024 = 0.11
    assert said.startswith("No measurable gain")


def test_more_first_drafts_broken_than_fixed_says_keep_the_base():
    base = result(cold="1110000000", repair="1110000000", resample="1110000000")
    adapter = result(cold="0001000000", repair="1111111111", resample="1110000000")
    met, said, _ = goal(base, adapter)
    assert met == [True, False, True]
    assert said.startswith("The adapter broke more first drafts than it fixed: keep the base model")


def test_a_repair_gain_that_resampling_matches_saves_nothing():
    base = result(cold="1100000000", repair="1100000000", resample="1111111111")
    met, said, _ = goal(base, result(cold="1100000000", repair="1111111111"))
    assert met == [True, True, True]  # a tie with the base's resampling reaches it
    met, said, _ = goal(base, result(cold="1100000000", repair="1111111110"))
    assert met == [True, True, False]
    assert "saves nothing over resampling" in said


def test_without_resampling_the_third_part_is_not_measured():
    met, said, parts = goal(result(cold="1100", repair="1100"), result(cold="1100", repair="1110"))
    assert met == [False, True, None]
    assert parts[2].line().endswith(": not measured") and "not fully measured" in said
