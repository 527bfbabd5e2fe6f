"""Report statistics on inputs whose outcome is known or worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthmix.metrics.stats import (
    bootstrap_ci,
    iqr_clean,
    kruskal_wallis,
    pairwise_mann_whitney,
    seed_ci,
)

# --------------------------------------------------------------------------------------------------------
# Kruskal-Wallis
# --------------------------------------------------------------------------------------------------------


def test_kruskal_wallis_hand_computed_h() -> None:
    # No ties: H = 12 / (N (N+1)) * sum(R_i^2 / n_i) - 3 (N+1). Ranks: a -> 1+2+3 = 6, b -> 4+5+6 = 15.
    # H = 12/42 * (36/3 + 225/3) - 21 = 27/7; p = chi2(1 df) survival = erfc(sqrt(H/2)).
    result = kruskal_wallis({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    assert result["H"] == pytest.approx(27 / 7)
    assert result["p"] == pytest.approx(math.erfc(math.sqrt(27 / 7 / 2)))
    assert result["n_groups"] == 2 and result["dropped"] == []


def test_kruskal_wallis_identical_groups_are_not_significant() -> None:
    same = [1.0, 4.0, 2.0, 8.0, 5.0, 7.0]
    result = kruskal_wallis({"a": same, "b": same, "c": same})
    assert result["H"] == pytest.approx(0.0)
    assert result["p"] == pytest.approx(1.0)


def test_kruskal_wallis_all_values_identical_gives_h0_p1() -> None:
    assert kruskal_wallis({"a": [3.0, 3.0], "b": [3.0, 3.0, 3.0]}) == {
        "H": 0.0,
        "p": 1.0,
        "n_groups": 2,
        "dropped": [],
    }


def test_kruskal_wallis_drops_groups_with_fewer_than_two_values() -> None:
    result = kruskal_wallis({"a": [1.0, 2.0, 3.0], "tiny": [9.0], "empty": [], "b": [4.0, 5.0, 6.0]})
    assert result["dropped"] == ["tiny", "empty"]
    assert result["n_groups"] == 2
    assert result["H"] == pytest.approx(27 / 7)
    alone = kruskal_wallis({"a": [1.0, 2.0], "tiny": [3.0]})
    assert math.isnan(alone["H"]) and math.isnan(alone["p"]) and alone["n_groups"] == 1


def test_kruskal_wallis_refuses_nan() -> None:
    with pytest.raises(ValueError, match="group 'a' holds NaN"):
        kruskal_wallis({"a": [1.0, math.nan], "b": [1.0, 2.0]})


# --------------------------------------------------------------------------------------------------------
# Pairwise Mann-Whitney U with Bonferroni
# --------------------------------------------------------------------------------------------------------


def test_pairwise_mann_whitney_bonferroni_by_hand() -> None:
    # Fully separated groups of 3 without ties: U = 0 and the exact two-sided p = 2 / C(6, 3) = 0.1.
    # Three pairs -> Bonferroni p = 0.3, not significant at 0.05, significant at 0.5.
    groups = {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "c": [7.0, 8.0, 9.0]}
    results = pairwise_mann_whitney(groups)
    assert [(r["a"], r["b"]) for r in results] == [("a", "b"), ("a", "c"), ("b", "c")]
    for result in results:
        assert result["U"] == 0.0
        assert result["p"] == pytest.approx(0.1)
        assert result["p_bonferroni"] == pytest.approx(0.3)
        assert result["significant"] is False
    assert all(r["significant"] for r in pairwise_mann_whitney(groups, alpha=0.5))


def test_pairwise_mann_whitney_one_sided_and_u_of_first_group() -> None:
    # a below b everywhere: U_a = 0; one-sided exact p = 1 / C(6, 3) = 0.05; one pair -> no correction.
    (less,) = pairwise_mann_whitney({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}, alternative="less")
    assert less["U"] == 0.0
    assert less["p"] == pytest.approx(0.05) and less["p_bonferroni"] == pytest.approx(0.05)
    (reverse,) = pairwise_mann_whitney({"b": [4.0, 5.0, 6.0], "a": [1.0, 2.0, 3.0]})
    assert reverse["U"] == 9.0  # n_a * n_b - 0


def test_pairwise_mann_whitney_identical_groups_not_significant_and_capped() -> None:
    same = [1.0, 2.0, 3.0, 4.0, 5.0]
    results = pairwise_mann_whitney({"a": same, "b": same, "c": same})
    for result in results:
        assert result["p"] == pytest.approx(1.0)
        assert result["p_bonferroni"] == 1.0  # 3 * 1.0 capped at 1
        assert result["significant"] is False
    (constant,) = pairwise_mann_whitney({"a": [2.0, 2.0], "b": [2.0, 2.0, 2.0]})
    assert constant["p"] == 1.0 and constant["significant"] is False


def test_pairwise_mann_whitney_shifted_groups_significant_after_correction() -> None:
    rng = np.random.default_rng(0)
    groups = {name: list(rng.normal(shift, 1.0, size=40)) for name, shift in (("x", 0), ("y", 5), ("z", 10))}
    results = pairwise_mann_whitney(groups)
    assert len(results) == 3
    for result in results:
        assert result["p_bonferroni"] == pytest.approx(min(1.0, 3 * result["p"]))
        assert result["p_bonferroni"] < 1e-6
        assert result["significant"] is True


def test_pairwise_mann_whitney_counts_only_pairs_actually_tested() -> None:
    groups = {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "tiny": [7.0]}
    (only,) = pairwise_mann_whitney(groups)
    assert only["p_bonferroni"] == pytest.approx(0.1)  # m = 1: the dropped group adds no comparison
    with pytest.raises(ValueError, match="alpha must lie"):
        pairwise_mann_whitney(groups, alpha=1.5)


# --------------------------------------------------------------------------------------------------------
# Confidence intervals
# --------------------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small = rng.lognormal(0.0, 1.0, size=40)
    large = rng.lognormal(0.0, 1.0, size=1000)
    low_s, high_s = bootstrap_ci(list(small), n_resamples=2000, seed=3)
    low_l, high_l = bootstrap_ci(list(large), n_resamples=2000, seed=3)
    assert low_s < small.mean() < high_s
    assert low_l < large.mean() < high_l
    assert high_l - low_l < (high_s - low_s) / 2


def test_bootstrap_ci_is_reproducible_and_methods_agree_roughly() -> None:
    values = [float(v) for v in np.random.default_rng(2).normal(10.0, 2.0, size=200)]
    assert bootstrap_ci(values, seed=7, n_resamples=2000) == bootstrap_ci(values, seed=7, n_resamples=2000)
    bca = bootstrap_ci(values, seed=7, n_resamples=2000)
    percentile = bootstrap_ci(values, seed=7, n_resamples=2000, method="percentile")
    # Normal theory: half width about 1.96 * 2 / sqrt(200) = 0.277.
    for low, high in (bca, percentile):
        assert (high - low) / 2 == pytest.approx(1.96 * 2.0 / math.sqrt(200), rel=0.2)


def test_bootstrap_ci_degenerate_inputs() -> None:
    assert bootstrap_ci([4.2, 4.2, 4.2]) == (4.2, 4.2)
    low, high = bootstrap_ci([4.2])
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="values is empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN or infinite"):
        bootstrap_ci([1.0, math.inf])


def test_seed_ci_t_interval_by_hand() -> None:
    # Seeds 1, 2, 3: mean 2, s = 1, sem = 1/sqrt(3); t_{0.975, 2} = 4.302652729...
    result = seed_ci([1.0, 2.0, 3.0])
    half_width = 4.302652729911275 / math.sqrt(3)
    assert result["mean"] == pytest.approx(2.0)
    assert result["low"] == pytest.approx(2.0 - half_width)
    assert result["high"] == pytest.approx(2.0 + half_width)
    assert result["n_seeds"] == 3


def test_seed_ci_degenerate_inputs() -> None:
    one = seed_ci([0.7])
    assert one["mean"] == 0.7 and math.isnan(one["low"]) and math.isnan(one["high"]) and one["n_seeds"] == 1
    assert seed_ci([0.5, 0.5]) == {"mean": 0.5, "low": 0.5, "high": 0.5, "n_seeds": 2}
    with pytest.raises(ValueError, match="per_seed_means is empty"):
        seed_ci([])


# --------------------------------------------------------------------------------------------------------
# IQR cleaning
# --------------------------------------------------------------------------------------------------------


def test_iqr_clean_hand_example_keeps_order() -> None:
    # Sorted 1..9, 100: Q1 = 3.25, Q3 = 7.75 (linear), IQR = 4.5, fences [-3.5, 14.5] -> 100 goes.
    values = [100.0, 5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0]
    assert iqr_clean(values) == [5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0]


def test_iqr_clean_keeps_values_on_the_fence() -> None:
    # Q1 = 0, Q3 = 1 (positions 2 and 6 of 9 sorted values), fences [-1.5, 2.5].
    base = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert iqr_clean([*base, 2.5]) == [*base, 2.5]
    assert iqr_clean([*base, 2.6]) == base
    assert iqr_clean([*base, 2.6], factor=3.0) == [*base, 2.6]


def test_iqr_clean_edge_cases() -> None:
    assert iqr_clean([]) == []
    assert iqr_clean([3.0, 3.0, 3.0]) == [3.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="NaN or infinite"):
        iqr_clean([1.0, math.nan])
