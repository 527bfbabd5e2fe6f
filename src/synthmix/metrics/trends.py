"""Metric trends over recursive generations: slopes of a metric against the generation, and their comparison.

Collapse shows as a drift across generations (Shumailov et al., Nature 631, 2024): own-output perplexity
falling, diversity shrinking. A trend is the ordinary least-squares slope of the metric on the generation
number, in metric units per generation. Per-item metrics (each test prompt's perplexity; the same test
prompts are answered in every generation) give one slope per item; scalar metrics give one slope per training
seed. Conditions are compared on those slopes with the report's tests (`synthmix.metrics.stats.compare_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from synthmix.metrics.stats import compare_groups, seed_ci

Key = TypeVar("Key", bound=Hashable)


def slope(generations: Sequence[int], values: Sequence[float]) -> float:
    """The ordinary least-squares slope of `values` on `generations` (scipy.stats.linregress):
    Σ(x - x̄)(y - ȳ) / Σ(x - x̄)², in the metric's units per generation."""
    from scipy import stats

    x = np.asarray(generations, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"give one value per generation: {x.size} generations, {y.size} values")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("generations and values must be finite numbers; drop NaN or infinite values first")
    if np.unique(x).size < 2:
        raise ValueError(f"a slope needs at least 2 distinct generations, got {sorted(set(x.tolist()))}")
    return float(stats.linregress(x, y).slope)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def item_slopes(values_by_generation: Mapping[int, Mapping[Key, float]]) -> dict[Key, float]:
    """{key: slope} over the generations, for each key (an item, or a seed) with a finite value in every
    generation given; keys missing or non-finite (None, NaN, inf) in any generation are left out. Keys sorted
    by their string form so the result does not depend on input order."""
    generations = sorted(values_by_generation)
    if len(generations) < 2:
        raise ValueError(f"a slope needs at least 2 generations, got {generations}")
    common = set.intersection(
        *({k for k, v in values_by_generation[g].items() if _is_finite(v)} for g in generations)
    )
    return {
        key: slope(generations, [values_by_generation[g][key] for g in generations])
        for key in sorted(common, key=str)
    }


def compare_slopes(
    per_condition: Mapping[str, Sequence[float]], alpha: float = 0.05
) -> dict[str, Any] | None:
    """Whether the slopes differ between conditions: Kruskal-Wallis across the conditions, then pairwise
    Mann-Whitney U with Bonferroni correction (`compare_groups`, the report's per-item tests). Conditions
    with fewer than 2 slopes are left out; None when fewer than 2 conditions remain."""
    return compare_groups({condition: list(map(float, s)) for condition, s in per_condition.items()}, alpha)


def seed_slopes(
    values_by_generation: Mapping[int, Mapping[Key, float]], confidence: float = 0.95
) -> dict[str, Any]:
    """A scalar metric's trend across training seeds: `values_by_generation` is {generation: {seed: value}}.

    Each seed's slope (`item_slopes`, so a seed missing a generation is left out and listed under
    "dropped"), then their mean and Student-t interval (`seed_ci`). Returns ``{"slopes": {seed: slope},
    "mean", "low", "high", "n_seeds", "dropped"}``; with one seed low and high are NaN.
    """
    slopes = item_slopes(values_by_generation)
    seeds = {seed for values in values_by_generation.values() for seed in values}
    dropped = sorted(seeds - set(slopes), key=str)
    if not slopes:
        raise ValueError(f"no seed has a finite value in every generation {sorted(values_by_generation)}")
    return {"slopes": slopes, **seed_ci(list(slopes.values()), confidence), "dropped": dropped}
