"""Statistics for the comparison report: significance tests, confidence intervals, outlier cleaning.

Schaffelder & Gatt (arXiv 2511.01490) compare conditions with a Kruskal-Wallis test, then pairwise
Mann-Whitney U tests with Bonferroni correction, and report heavy-tailed metrics (perplexity) after IQR
cleaning. We add confidence intervals: a bootstrap CI of a mean over items and a t-based CI over training
seeds. The tests themselves come from scipy.stats; this module only fixes the conventions (which groups
enter, how degenerate inputs are answered) so every report table follows the same ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Alternative = Literal["two-sided", "less", "greater"]


def _finite_array(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values; drop or fix them before testing")
    return array


def _usable_groups(groups: Mapping[str, Sequence[float]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Split groups into those with at least 2 values and the names of those with fewer.

    One observation says nothing about a group's spread, and scipy's rank tests give unstable or
    undefined answers for it, so such groups are left out of the tests and reported as dropped.
    """
    usable: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    for name, values in groups.items():
        array = _finite_array(values, f"group {name!r}")
        if array.size < 2:
            dropped.append(name)
        else:
            usable[name] = array
    return usable, dropped


def kruskal_wallis(groups: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Kruskal-Wallis H test that all groups come from the same distribution (scipy.stats.kruskal).

    Kruskal & Wallis 1952, JASA 47(260); the omnibus test of Schaffelder & Gatt (arXiv 2511.01490).
    Returns ``{"H", "p", "n_groups", "dropped"}``: groups with fewer than 2 values are left out and
    listed under "dropped"; ``n_groups`` counts the groups tested. With fewer than 2 groups left, H and p
    are NaN. When every value is identical the groups cannot differ: H = 0 and p = 1 (older scipy raises
    ValueError here and scipy 1.17 returns NaN with a warning; neither is a useful answer for a report).
    """
    from scipy import stats

    usable, dropped = _usable_groups(groups)
    if len(usable) < 2:
        return {"H": math.nan, "p": math.nan, "n_groups": len(usable), "dropped": dropped}
    pooled = np.concatenate(list(usable.values()))
    if np.all(pooled == pooled[0]):
        return {"H": 0.0, "p": 1.0, "n_groups": len(usable), "dropped": dropped}
    result = stats.kruskal(*usable.values())
    return {
        "H": float(result.statistic),
        "p": float(result.pvalue),
        "n_groups": len(usable),
        "dropped": dropped,
    }


def pairwise_mann_whitney(
    groups: Mapping[str, Sequence[float]], alternative: Alternative = "two-sided", alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Mann-Whitney U test for every pair of groups, with Bonferroni correction over the pairs.

    Mann & Whitney 1947 (Ann. Math. Statist. 18(1)) via scipy.stats.mannwhitneyu; Bonferroni: with m
    pairs tested, p_bonferroni = min(1, m p) and a pair is significant when p_bonferroni < alpha
    (Dunn 1961, JASA 56(293)); the post-hoc tests of Schaffelder & Gatt (arXiv 2511.01490).
    Pairs follow the groups' order; ``U`` is the statistic of group ``a`` and ``alternative`` reads
    "a is ... than b". Groups with fewer than 2 values are left out, as in :func:`kruskal_wallis`, and do
    not count in m. (scipy 1.17 already answers p = 1 for two groups of one repeated value.)
    """
    from scipy import stats

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    usable, _ = _usable_groups(groups)
    pairs = list(itertools.combinations(usable, 2))
    results: list[dict[str, Any]] = []
    for a, b in pairs:
        result = stats.mannwhitneyu(usable[a], usable[b], alternative=alternative)
        p = float(result.pvalue)
        p_bonferroni = min(1.0, p * len(pairs))
        results.append(
            {
                "a": a,
                "b": b,
                "U": float(result.statistic),
                "p": p,
                "p_bonferroni": p_bonferroni,
                "significant": p_bonferroni < alpha,
            }
        )
    return results


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    method: Literal["percentile", "basic", "BCa"] = "BCa",
) -> tuple[float, float]:
    """Bootstrap confidence interval for the mean of ``values`` (scipy.stats.bootstrap).

    Efron & Tibshirani 1993, "An Introduction to the Bootstrap"; BCa (the default) corrects the
    percentile interval for bias and skew, which matters for heavy-tailed metrics such as perplexity.
    ``seed`` fixes the resampling so reports are reproducible. With a single value the interval is
    undefined: (NaN, NaN). With constant values every resample has the same mean, so the interval is
    that value on both sides (scipy would return NaN for BCa).
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    array = _finite_array(values, "values")
    if array.size == 0:
        raise ValueError("values is empty; a confidence interval needs at least 2 values")
    if array.size < 2:
        return (math.nan, math.nan)
    if np.all(array == array[0]):
        return (float(array[0]), float(array[0]))
    result = stats.bootstrap(
        (array,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method=method,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def seed_ci(per_seed_means: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean over training seeds and its Student-t confidence interval.

    With n seeds, mean ± t_{(1+confidence)/2, n-1} · s / sqrt(n), s the sample standard deviation
    (ddof = 1), via scipy.stats.t; the usual interval for a handful of independent runs (Student 1908,
    Biometrika 6(1)). Returns ``{"mean", "low", "high", "n_seeds"}``; with one seed low and high are NaN,
    and with identical values across seeds both equal the mean.
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    array = _finite_array(per_seed_means, "per_seed_means")
    if array.size == 0:
        raise ValueError("per_seed_means is empty; give one value per training seed")
    mean = float(array.mean())
    if array.size < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n_seeds": 1}
    sem = float(array.std(ddof=1)) / math.sqrt(array.size)
    if sem == 0.0:
        return {"mean": mean, "low": mean, "high": mean, "n_seeds": int(array.size)}
    low, high = stats.t.interval(confidence, df=array.size - 1, loc=mean, scale=sem)
    return {"mean": mean, "low": float(low), "high": float(high), "n_seeds": int(array.size)}


def iqr_clean(values: Sequence[float], factor: float = 1.5) -> list[float]:
    """Values inside [Q1 - factor·IQR, Q3 + factor·IQR], in their original order (Tukey's fences).

    Tukey 1977, "Exploratory Data Analysis"; quartiles are numpy's default (linear) percentiles. The
    outlier rule Schaffelder & Gatt apply to perplexities before averaging (arXiv 2511.01490, Experiment 1).
    Values exactly on a fence are kept.
    """
    if factor < 0:
        raise ValueError(f"factor must be >= 0, got {factor!r}")
    array = _finite_array(values, "values")
    if array.size == 0:
        return []
    q1, q3 = np.percentile(array, [25, 75])
    low, high = q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)
    return [float(value) for value in array if low <= value <= high]


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """Mean, median and IQR-cleaned mean (``iqr_clean``) of a heavy-tailed sample: the paper's perplexity
    summaries (arXiv 2511.01490, §4.1 a).

    Non-finite values (NaN, +inf, -inf, e.g. an overflowed perplexity) are dropped first and counted in
    ``n_nonfinite``; ``n`` is the number of finite values, ``n_kept`` the number inside the fences. With no
    finite value every statistic is None.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    n_nonfinite = int(array.size - finite.size)
    if finite.size == 0:
        return {
            "mean": None,
            "median": None,
            "mean_iqr_cleaned": None,
            "q1": None,
            "q3": None,
            "n": 0,
            "n_kept": 0,
            "n_nonfinite": n_nonfinite,
        }
    q1, q3 = np.percentile(finite, [25, 75])
    kept = iqr_clean(finite.tolist())
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "mean_iqr_cleaned": float(np.mean(kept)),
        "q1": float(q1),
        "q3": float(q3),
        "n": int(finite.size),
        "n_kept": len(kept),
        "n_nonfinite": n_nonfinite,
    }


def compare_groups(groups: dict[str, list[float]], alpha: float) -> dict[str, Any] | None:
    """Kruskal-Wallis over the groups, then Bonferroni-corrected pairwise Mann-Whitney U; None if < 2 groups."""
    usable = {name: values for name, values in groups.items() if len(values) >= 2}
    if len(usable) < 2:
        return None
    omnibus = kruskal_wallis(usable)
    pairs = pairwise_mann_whitney(usable, alpha=alpha)
    return {"kruskal_wallis": omnibus, "pairwise": pairs}
