"""The recursion's part of the report: each collapse metric (and the robustness and self-preference headlines
of the generations that evaluate them) against the generation, per condition, and whether the conditions'
slopes differ (synthmix.metrics.trends).

For every condition that trains later generations (recursion.generation_2), generation 1 is its run of the
paper's pipeline and generation k its run under generations/<k>/. Each metric's curve point is the mean over
the seeds with a 95% Student-t CI across seeds (two or more seeds). Its slope over the generations is
computed per seed (least squares) and averaged with a CI across seeds. Whether the slopes differ between
conditions is tested (Kruskal-Wallis, then pairwise Mann-Whitney U with Bonferroni correction) on
- per-item slopes for the perplexities: every generation answers the same test prompts, so each prompt's
  perplexity has a slope over the generations (the mean over seeds per generation first);
- per-seed slopes for the set-level metrics (diversity), which needs two or more seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.io import read_json, read_jsonl
from synthmix.metrics.diversity import report_keys
from synthmix.metrics.perplexity import perplexity
from synthmix.metrics.stats import seed_ci
from synthmix.metrics.trends import compare_slopes, item_slopes, seed_slopes

PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
PERPLEXITY_SUMMARY = "mean_iqr_cleaned"  # the paper's headline statistic
# The robustness and self-preference headlines, for the generations whose runs evaluate them (generation 1
# always, generation k >= 2 when recursion.evaluate_<k> lists the condition): name -> (metrics family, keys
# into that family's metrics.json). A rubric that was not judged leaves its metric out.
EVALUATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "harmful_refusal_rate": ("robustness", ("harmful", "refusal_rate")),
    "harmful_harmfulness": ("robustness", ("harmful", "harmfulness_mean")),
    "jailbreak_harmfulness": ("robustness", ("jailbreak", "harmfulness_mean")),
    "jailbreak_danger_zone_share": ("robustness", ("jailbreak", "danger_zone_share")),
    "benign_quality": ("robustness", ("benign", "quality_mean")),
    "self_preference": ("preference", ("self_preference",)),
}


def metric_names() -> list[str]:
    return [*PERPLEXITIES, *report_keys(), *EVALUATIONS]


def _evaluations(root: Path, condition: str, seed: int, generation: int) -> dict[str, float]:
    """The run's robustness and self-preference headlines (EVALUATIONS) where its stages have run."""
    values: dict[str, float] = {}
    files: dict[str, Any] = {}
    for name, (family, keys) in EVALUATIONS.items():
        if family not in files:
            path = (
                root
                / paths.in_generation(paths.metrics(family, condition, seed), generation)
                / paths.METRICS_FILE
            )
            files[family] = read_json(path) if path.is_file() else None
        value: Any = files[family]
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, int | float):
            values[name] = float(value)
    return values


def _value(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    if not metrics:
        return None
    value = metrics.get(name)
    if isinstance(value, Mapping):
        value = value.get(PERPLEXITY_SUMMARY)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def collect(
    lineages: Mapping[str, int], seeds: Sequence[int], root: Path, definitions: str = "paper"
) -> dict[str, Any]:
    """For each condition and its last generation (`lineages`), per generation and seed: the collapse metrics
    (with the robustness and self-preference headlines where the run evaluated them) and the per-item
    perplexities. Runs not reproduced yet are absent."""
    data: dict[str, Any] = {}
    for condition, last in lineages.items():
        by_generation: dict[int, dict[int, Any]] = {}
        for generation in range(1, last + 1):
            for seed in seeds:
                metrics_file = (
                    root
                    / paths.in_generation(paths.metrics("collapse", condition, seed), generation)
                    / paths.METRICS_FILE
                )
                if not metrics_file.is_file():
                    continue
                items = {}
                folder = root / paths.in_generation(paths.perplexity(condition, seed), generation)
                for name in PERPLEXITIES:
                    if (folder / f"{name}.jsonl").is_file():
                        records = read_jsonl(folder / f"{name}.jsonl")
                        # per prompt: a sample's id differs between generations, its prompt does not
                        items[name] = {
                            r.get("prompt_id", r["id"]): perplexity(r, definitions) for r in records
                        }
                by_generation.setdefault(generation, {})[seed] = {
                    "metrics": {**read_json(metrics_file), **_evaluations(root, condition, seed, generation)},
                    "items": items,
                }
        data[condition] = by_generation
    return data


def summarise(data: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """Curves, slopes and slope tests for every metric (see the module docstring)."""
    out: dict[str, Any] = {"conditions": list(data), "curves": {}, "slopes": {}, "slope_tests": {}}
    for name in metric_names():
        curves, slopes, per_seed_slopes = {}, {}, {}
        for condition, by_generation in data.items():
            points = []
            values_by_generation: dict[int, dict[int, float]] = {}
            for generation, runs in sorted(by_generation.items()):
                values = {s: v for s, run in runs.items() if (v := _value(run["metrics"], name)) is not None}
                if not values:
                    continue
                values_by_generation[generation] = values
                point = {
                    "generation": generation,
                    "mean": statistics.fmean(values.values()),
                    "n_seeds": len(values),
                }
                if len(values) >= 2:
                    ci = seed_ci(list(values.values()))
                    point.update(low=ci["low"], high=ci["high"])
                points.append(point)
            curves[condition] = points
            if len(values_by_generation) >= 2:
                result = seed_slopes(values_by_generation)
                slopes[condition] = result
                per_seed_slopes[condition] = list(result["slopes"].values())
        out["curves"][name] = curves
        out["slopes"][name] = slopes
        if name in PERPLEXITIES:
            groups = _item_slope_groups(data, name)
            basis = "per-item slopes"
        else:
            groups, basis = per_seed_slopes, "per-seed slopes"
        result = compare_slopes(groups, alpha) if groups else None
        if result:
            out["slope_tests"][name] = {"basis": basis, **result}
    return out


def _item_slope_groups(data: Mapping[str, Any], name: str) -> dict[str, list[float]]:
    """Per condition, each test prompt's slope of `name` over the generations (means over seeds first)."""
    groups = {}
    for condition, by_generation in data.items():
        means: dict[int, dict[str, float]] = {}
        for generation, runs in by_generation.items():
            per_seed = [run["items"].get(name) or {} for run in runs.values()]
            keys = set.intersection(*(set(values) for values in per_seed)) if per_seed else set()
            means[generation] = {
                key: statistics.fmean(values[key] for values in per_seed)
                for key in keys
                if all(math.isfinite(values[key]) for values in per_seed)
            }
        if len(means) >= 2:
            groups[condition] = list(item_slopes(means).values())
    return groups


def curve_rows(summary: Mapping[str, Any], name: str) -> list[list[Any]]:
    """TSV rows (generation, condition, mean, low, high) of one metric, for `dvc plots`."""
    rows = []
    for condition, points in summary["curves"][name].items():
        for point in points:
            rows.append(
                [point["generation"], condition, point["mean"], point.get("low", ""), point.get("high", "")]
            )
    return sorted(rows, key=lambda row: (row[1], row[0]))


def markdown(summary: Mapping[str, Any], alpha: float, fmt: Any, fmt_p: Any) -> list[str]:
    """The report's "Recursive training" section."""
    if not summary or not summary.get("conditions"):
        return []
    out = [
        "",
        "## Recursive training over generations",
        "",
        "Each metric against the generation (generation 1 is the paper's single round; curves in "
        "`reports/generations/`). Slope = least-squares change per generation, mean over seeds with a 95% CI "
        "across seeds; perplexities are IQR-cleaned means. Slope tests: Kruskal-Wallis across conditions, then "
        f"pairwise Mann-Whitney U with Bonferroni correction (alpha {alpha}), on per-item slopes for the "
        "perplexities and on per-seed slopes (two or more seeds) for the other metrics. Robustness and "
        "self-preference enter only for the generations that evaluate them (generation 1, and generation k "
        "where `recursion.evaluate_<k>` lists the condition).",
        "",
    ]
    conditions = summary["conditions"]
    header = ["metric", *(f"{c} slope" for c in conditions), "slopes differ (p)"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in metric_names():
        slopes = summary["slopes"].get(name) or {}
        if not slopes:
            continue
        cells = []
        for c in conditions:
            slope = slopes.get(c)
            if slope is None:
                cells.append("–")
            # a CI across seeds needs two or more (seed_slopes leaves NaN bounds for one)
            elif all(isinstance(slope.get(k), float) and math.isfinite(slope[k]) for k in ("low", "high")):
                cells.append(f"{fmt(slope['mean'])} [{fmt(slope['low'])}, {fmt(slope['high'])}]")
            else:
                cells.append(fmt(slope["mean"]))
        test = summary["slope_tests"].get(name)
        verdict = "–"
        if test:
            kw = test["kruskal_wallis"]
            verdict = f"H = {fmt(kw['H'])}, p = {fmt_p(kw['p'])} ({test['basis']})"
        out.append("| " + " | ".join([name, *cells, verdict]) + " |")
    return out
