"""Metric trends over generations (synthmix.metrics.trends): slopes worked out by hand, their tests checked
against scipy on the same groups."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from synthmix.metrics.trends import compare_slopes, item_slopes, seed_slopes, slope


def test_slope_of_points_on_a_line() -> None:
    assert slope([1, 2, 3], [2, 4, 6]) == pytest.approx(2.0)
    assert slope([1, 2, 3], [5, 5, 5]) == pytest.approx(0.0)
    assert slope([1, 2], [3, 1]) == pytest.approx(-2.0)


def test_slope_hand_computed_ols() -> None:
    # OLS slope = sum((x - mean x)(y - mean y)) / sum((x - mean x)^2).
    # (1,1),(2,4),(3,2): mean x 2, mean y 7/3; numerator (-1)(-4/3) + 0 + (1)(-1/3) = 1; denominator 2 -> 0.5
    assert slope([1, 2, 3], [1, 4, 2]) == pytest.approx(0.5)
    # uneven generations (1,10),(2,8),(4,5): mean x 7/3, mean y 23/3; dx -4/3, -1/3, 5/3; dy 7/3, 1/3, -8/3;
    # numerator (-28 - 1 - 40)/9 = -23/3; denominator (16 + 1 + 25)/9 = 14/3 -> -23/14
    assert slope([1, 2, 4], [10, 8, 5]) == pytest.approx(-23 / 14)
    assert slope([4, 1, 2], [5, 10, 8]) == pytest.approx(-23 / 14)  # order of the points does not matter


@pytest.mark.parametrize(
    ("generations", "values", "message"),
    [
        ([1, 2, 3], [1.0, 2.0], "3 generations, 2 values"),
        ([2], [1.0], "at least 2 distinct generations"),
        ([2, 2], [1.0, 3.0], "at least 2 distinct generations"),
        ([1, 2], [1.0, math.nan], "finite numbers"),
    ],
)
def test_slope_refuses_what_has_no_slope(generations: list, values: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        slope(generations, values)


def test_item_slopes_keep_items_finite_in_every_generation() -> None:
    values = {
        1: {"a": 10.0, "b": 1.0, "c": 5.0, "d": 2.0},
        2: {"a": 8.0, "b": 4.0, "c": math.nan, "d": None},
        3: {"a": 6.0, "b": 2.0, "c": 1.0},
    }
    # a: 10, 8, 6 -> -2; b: 1, 4, 2 -> 0.5 (the hand-worked case above); c has a NaN, d is missing in 3
    assert item_slopes(values) == pytest.approx({"a": -2.0, "b": 0.5})
    assert list(item_slopes(dict(reversed(values.items())))) == ["a", "b"]
    with pytest.raises(ValueError, match=r"at least 2 generations, got \[1\]"):
        item_slopes({1: {"a": 1.0}})


def test_compare_slopes_is_kruskal_wallis_then_bonferroni_mann_whitney() -> None:
    groups = {
        "single": [-3.1, -2.4, -2.9, -1.8, -2.2],
        "multi": [-1.1, -0.4, -0.9, -1.5, 0.2],
        "human": [0.3, 0.1, -0.2, 0.6, 0.45],
    }
    result = compare_slopes(groups, alpha=0.05)
    expected = stats.kruskal(*groups.values())
    assert result["kruskal_wallis"]["H"] == pytest.approx(expected.statistic)
    assert result["kruskal_wallis"]["p"] == pytest.approx(expected.pvalue)
    pairs = {(p["a"], p["b"]): p for p in result["pairwise"]}
    assert set(pairs) == {("single", "multi"), ("single", "human"), ("multi", "human")}
    single_human = stats.mannwhitneyu(groups["single"], groups["human"])
    assert pairs["single", "human"]["p_bonferroni"] == pytest.approx(min(1.0, 3 * single_human.pvalue))
    # no overlap between single and human: U = 0, exact two-sided p = 2 / C(10, 5) = 2/252, times 3 pairs
    assert pairs["single", "human"]["U"] == 0.0
    assert pairs["single", "human"]["p_bonferroni"] == pytest.approx(3 * 2 / 252)


def test_compare_slopes_needs_two_conditions_with_two_slopes() -> None:
    assert compare_slopes({"single": [1.0, 2.0], "multi": [3.0]}) is None


def test_seed_slopes_mean_and_t_interval() -> None:
    # seed slopes 1, 2, 3 (seed 3 misses generation 3): mean 2, sd 1, n 3;
    # 95% CI = 2 +- t(0.975, 2 df) / sqrt(3), t(0.975, 2) = 4.3027 (Student's t table)
    values = {
        1: {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0},
        2: {0: 1.0, 1: 2.0, 2: 3.0, 3: 1.0},
        3: {0: 2.0, 1: 4.0, 2: 6.0},
    }
    result = seed_slopes(values)
    assert result["slopes"] == pytest.approx({0: 1.0, 1: 2.0, 2: 3.0})
    assert result["mean"] == pytest.approx(2.0)
    assert result["low"] == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-4)
    assert result["high"] == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-4)
    assert result["n_seeds"] == 3 and result["dropped"] == [3]


def test_seed_slopes_without_a_complete_seed() -> None:
    with pytest.raises(ValueError, match="no seed has a finite value in every generation"):
        seed_slopes({1: {0: 1.0}, 2: {1: 2.0}})
