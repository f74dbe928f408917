import pytest

from mlx_repair.evaluation.stats import (
    bootstrap_interval,
    mcnemar_exact,
    mean_pass_at_k,
    moved_problems,
    pass_at_k,
)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (10, 0, 1, 0.0),
        (10, 10, 5, 1.0),
        (10, 3, 1, 0.3),  # pass@1 is the plain fraction
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (20, 2, 10, 1 - 43758 / 184756),  # 1 - C(18,10)/C(20,10)
        (6, 4, 3, 1.0),  # fewer than k failures: every draw of 3 holds a pass
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="needs at least 5 samples"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_mean_pass_at_k_averages_problems():
    assert mean_pass_at_k([(2, 1), (2, 0), (2, 2)], 1) == pytest.approx(0.5)
    assert mean_pass_at_k([(2, 1), (2, 0)], 2) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "fixed, broken, expected",
    [
        (0, 0, 1.0),
        (1, 0, 1.0),  # one problem moved: 2 * 0.5 = 1
        (5, 0, 0.0625),  # 2 * 1/32
        (6, 1, 0.125),  # 2 * (1 + 7) / 128
        (10, 2, 0.0385742),  # 2 * (1 + 12 + 66) / 4096
        (3, 3, 1.0),
        (12, 25, 0.0470),  # two-sided binomial(37, 0.5) tail at 12
    ],
)
def test_mcnemar_exact_against_known_tables(fixed, broken, expected):
    assert mcnemar_exact(fixed, broken) == pytest.approx(expected, abs=5e-4)
    assert mcnemar_exact(broken, fixed) == pytest.approx(expected, abs=5e-4)


def test_moved_problems_lists_fixed_and_broken():
    a = {"t1": False, "t2": True, "t3": True, "t4": False}
    b = {"t1": True, "t2": False, "t3": True, "t4": False}
    moved = moved_problems(a, b)
    assert (moved.fixed, moved.broken, moved.n) == (["t1"], ["t2"], 4)
    assert moved.p_value == 1.0
    with pytest.raises(ValueError, match="different problems"):
        moved_problems(a, {"t1": True})


def test_bootstrap_interval_brackets_the_difference_and_is_seeded():
    a = [0.0] * 50 + [1.0] * 50
    b = [0.0] * 30 + [1.0] * 70
    low, high = bootstrap_interval(a, b, rounds=2000, seed=1)
    assert low < 0.2 < high and low > 0.0
    assert (low, high) == bootstrap_interval(a, b, rounds=2000, seed=1)
    same_low, same_high = bootstrap_interval(a, a, rounds=500)
    assert same_low == same_high == 0.0


def test_counts_of_problems_read_as_words():
    from mlx_repair.evaluation.metrics import format_value, problems

    assert (problems(1), problems(0), problems(14)) == ("1 problem", "0 problems", "14 problems")
    assert format_value(1 / 19, 19).endswith("(n=19, 1 problem)")
