"""The comparison report: every condition side by side, with significance tests and confidence intervals.

Reads what the evaluation stages wrote (metrics JSON and per-item JSONL) for every run <condition>/<seed>,
never a model. Pure functions turn those into tables; `stages/report.py` writes `reports/summary.md`,
`reports/summary.json` and figures.

Seeds: every metric is the mean over a condition's runs (one per seed in params `seeds`). Its 95% confidence
interval is a Student-t interval across seeds when there are two or more; with one seed it is a bootstrap
over items for the metrics that are means over items (perplexity, per-response lexical diversity, refusal
rate, judged scores, danger-zone share), and none for corpus-level metrics (aggregated Self-BLEU, Heaps' law,
semantic diversity, ...), which one run measures once.

Significance, as in the paper: Kruskal-Wallis across conditions on per-item values, then pairwise
Mann-Whitney U with Bonferroni correction. With several seeds an item's value is its mean over the seeds, so
the tests compare the same items in every condition and an item counts once.
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
from synthmix.metrics.robustness import drop_unparsed_across_conditions, in_danger_zone
from synthmix.metrics.self_bleu import self_bleu
from synthmix.metrics.stats import bootstrap_ci, compare_groups, seed_ci, summarize
from synthmix.metrics.text import split_sentences

PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
PROMPT_SETS = ("harmful", "jailbreak", "benign")
PREFERENCE = (
    "self_preference",
    "self_preference_shown_first",
    "self_preference_shown_second",
    "self_preference_vs_human",
    "position_consistency",
    "undefined_judgements",
)
FINETUNE = ("steps", "final_train_loss", "best_eval_loss")
COUNTS = (
    "parse_failures",
    "steps",
    "undefined_judgements",
)  # counts, not estimates: averaged over seeds but given no interval
SECTIONS = ("finetune", "collapse", "robustness", "preference")  # the metrics files of one run


def _maybe_json(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if is_number(v)]


def interval(
    per_seed: Sequence[Any], items: Sequence[Any] | None, seed: int, resamples: int
) -> list[float] | None:
    """The 95% CI of a metric's mean: Student-t across seeds (two or more per-seed values), else a bootstrap
    over the one run's per-item values (`items`); None when neither has two finite values."""
    values = _finite(per_seed)
    if len(values) >= 2:
        ci = seed_ci(values)
        return [ci["low"], ci["high"]]
    finite = _finite(items or [])
    if len(finite) >= 2:
        low, high = bootstrap_ci(finite, n_resamples=resamples, seed=seed)
        return [low, high]
    return None


def seed_mean(per_seed: Sequence[Any]) -> float | None:
    """The mean over seeds of the finite values; None when no seed has one."""
    values = _finite(per_seed)
    if not values:
        return None
    mean = statistics.fmean(values)
    counts = all(isinstance(v, int) and not isinstance(v, bool) for v in per_seed if v is not None)
    return int(mean) if counts and mean.is_integer() else mean  # step counts stay whole numbers


def individual_lexical_diversity(responses: Mapping[str, str]) -> dict[str, float]:
    """Per-response 100 - Self-BLEU by response id (responses with >= 2 valid sentences), for CIs and tests."""
    values = {}
    for key, response in responses.items():
        score = self_bleu(split_sentences(response))
        if score is not None:
            values[key] = 100.0 - score
    return values


def robustness_keys(rubrics: Sequence[str]) -> tuple[str, ...]:
    """The robustness table's columns for the judge's rubrics (as `metrics.robustness.summarise` names them)."""
    return ("refusal_rate", *(f"{r}_mean" for r in rubrics), "danger_zone_share", "parse_failures")


def read_run(root: Path, condition: str, seed: int, definitions: str = "paper") -> dict[str, Any]:
    """What the evaluation stages wrote for one run (<condition>/<seed>); None or absent where not run."""
    run: dict[str, Any] = {
        section: _maybe_json(root / paths.metrics(section, condition, seed) / paths.METRICS_FILE)
        for section in SECTIONS
    }
    items: dict[str, Any] = {}
    for name in PERPLEXITIES:
        path = root / paths.perplexity(condition, seed) / f"{name}.jsonl"
        if path.is_file():
            records = read_jsonl(path, required=("id", "nll", "n_tokens", "nll_end", "n_end"))
            items[name] = {r["id"]: perplexity(r, definitions) for r in records}
    samples = root / paths.samples(condition, seed) / paths.RESPONSES
    if samples.is_file():
        responses = {r["id"]: r["response"] for r in read_jsonl(samples, required=("id", "response"))}
        items["lexical_diversity_individual"] = individual_lexical_diversity(responses)
    distances = root / paths.collapse(condition, seed) / "semantic_distances.json"
    if distances.is_file():
        items["semantic_distances"] = read_json(distances)["distances"]
    scores = root / paths.robustness_scores(condition, seed) / "scores.jsonl"
    if scores.is_file():
        items["judge_scores"] = {r["id"]: r for r in read_jsonl(scores, required=("id",))}
    run["items"] = items
    return run


def item_means(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Per item id, the mean of its values over the seeds; None for an item without a finite value in every
    seed (it cannot be compared on the same footing)."""
    ids = dict.fromkeys(key for values in per_seed for key in values)
    means: dict[str, float | None] = {}
    for key in ids:
        values = [values.get(key) for values in per_seed]
        means[key] = statistics.fmean(values) if all(is_number(v) for v in values) else None
    return means


def merged_judge_scores(
    per_seed: Sequence[Mapping[str, Mapping[str, Any]]], rubrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One record per red-team item: rubric scores averaged over the seeds (None when a seed failed to parse
    it, so the paper's drop rule applies to it) and the share of seeds in which the answer was a refusal."""
    merged = []
    for key in dict.fromkeys(key for records in per_seed for key in records):
        records = [records.get(key) for records in per_seed]
        present = [r for r in records if r is not None]
        record: dict[str, Any] = {"id": key, "prompt_set": present[0].get("prompt_set")}
        for rubric in rubrics:
            if any(rubric in r for r in present):
                values = [r.get(rubric) if r is not None else None for r in records]
                record[rubric] = statistics.fmean(values) if all(is_number(v) for v in values) else None
        if all(r is not None and "refusal" in r for r in records):
            record["refusal"] = statistics.fmean(float(bool(r["refusal"])) for r in records)
        merged.append(record)
    return merged


def collect(
    conditions: list[str],
    seeds: list[int],
    root: Path,
    rubrics: Sequence[str] = ("harmfulness", "quality"),
    definitions: str = "paper",
) -> dict[str, Any]:
    """Everything the report needs, read from the standard output folders under `root`: each run under
    data["runs"][condition][seed], and per-item values averaged over the seeds under data["items"].
    `rubrics` are the robustness judge's (params robustness.judge.rubrics)."""
    data: dict[str, Any] = {
        "conditions": conditions,
        "seeds": seeds,
        "rubrics": list(rubrics),
        "metric_definitions": definitions,
        "runs": {},
        "items": {},
        "mix": {},
    }
    for c in conditions:
        data["mix"][c] = _maybe_json(root / paths.mix_metrics(c))
        runs = {seed: read_run(root, c, seed, definitions) for seed in seeds}
        data["runs"][c] = runs
        items: dict[str, Any] = {}
        for name in (*PERPLEXITIES, "lexical_diversity_individual"):
            per_seed = [run["items"][name] for run in runs.values() if name in run["items"]]
            if per_seed:
                items[name] = list(item_means(per_seed).values())
        distances = [d for run in runs.values() for d in run["items"].get("semantic_distances", [])]
        if distances:  # pooled over the seeds: each run's sample of pairwise distances
            items["semantic_distances"] = distances
        judged_runs = [
            run["items"]["judge_scores"] for run in runs.values() if "judge_scores" in run["items"]
        ]
        if judged_runs:
            items["judge_scores"] = merged_judge_scores(judged_runs, rubrics)
        data["items"][c] = items
    data["data_diversity"] = _maybe_json(root / paths.metrics("data_diversity") / paths.METRICS_FILE)
    return data


def judged(
    data: dict[str, Any], prompt_set: str, rubric: str, conditions: Sequence[str] | None = None
) -> tuple[dict[str, list[float]], int]:
    """Per-condition scores of one rubric on one prompt set, after the paper's rule: an item that failed to
    parse for any of the compared conditions (default: all) is dropped for all. Returns (scores by condition,
    items dropped)."""
    by_condition = {}
    for c in conditions or data["conditions"]:
        records = data["items"][c].get("judge_scores") or []
        by_condition[c] = {
            r["id"]: r[rubric] for r in records if r.get("prompt_set") == prompt_set and rubric in r
        }
    if not any(by_condition.values()):
        return {}, 0
    kept, dropped = drop_unparsed_across_conditions(by_condition)
    return {c: [float(v) for v in scores.values()] for c, scores in kept.items()}, dropped


def robustness_items(
    records: Mapping[str, Mapping[str, Any]],
    prompt_set: str,
    danger: tuple[float, float],
    rubrics: Sequence[str] = ("harmfulness", "quality"),
) -> dict[str, list[float]]:
    """One run's per-item values behind each robustness metric of a prompt set (as
    `metrics.robustness.summarise` summarises them): refusal 0/1 per item, parsed rubric scores, danger-zone
    0/1 (`in_danger_zone`) where both scores parsed."""
    quality_min, harm_min = danger
    rows = [r for r in records.values() if r.get("prompt_set") == prompt_set]
    items: dict[str, list[float]] = {"refusal_rate": [float(bool(r.get("refusal"))) for r in rows]}
    for rubric in rubrics:
        items[f"{rubric}_mean"] = _finite([r.get(rubric) for r in rows])
    both = [r for r in rows if is_number(r.get("harmfulness")) and is_number(r.get("quality"))]
    items["danger_zone_share"] = [
        float(in_danger_zone(r["quality"], r["harmfulness"], quality_min, harm_min)) for r in both
    ]
    return items


class _Row:
    """One condition's row: metric means over seeds, their CIs under row["ci95"] (keyed by metric path)."""

    def __init__(self, seed: int, resamples: int):
        self.values: dict[str, Any] = {"ci95": {}}
        self.seed, self.resamples = seed, resamples

    def add(self, path: str, per_seed: Sequence[Any], items: Sequence[Any] | None = None) -> None:
        mean = seed_mean(per_seed)
        if mean is None:
            return
        *parents, leaf = path.split(".")
        target = self.values
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = mean
        self.add_interval(path, per_seed, items)

    def add_interval(self, path: str, per_seed: Sequence[Any], items: Sequence[Any] | None = None) -> None:
        """ci95[path]: the 95% CI of the metric's mean, where it has one (never for a count)."""
        ci = interval(per_seed, items, self.seed, self.resamples)
        if ci is not None and path.split(".")[-1] not in COUNTS:
            self.values["ci95"][path] = ci


def incomplete_runs(data: dict[str, Any]) -> dict[str, list[str]]:
    """{"<condition>/<seed>": [sections]} for each run that lacks a metrics file that other runs have (a stage
    not reproduced yet): the report leaves it out of those means and says so."""
    runs = {f"{c}/{seed}": run for c in data["conditions"] for seed, run in data["runs"][c].items()}
    present = [section for section in SECTIONS if any(run[section] is not None for run in runs.values())]
    missing = {name: [s for s in present if run[s] is None] for name, run in runs.items()}
    return {name: sections for name, sections in missing.items() if sections}


def item_tests(
    data: dict[str, Any], conditions: Sequence[str], rubrics: Sequence[str], alpha: float
) -> dict[str, Any]:
    """Kruskal-Wallis across `conditions`, then pairwise Mann-Whitney U with Bonferroni correction, on every
    per-item metric: perplexities, per-response lexical diversity, semantic distances, and each judge rubric
    on each prompt set (items unparsed for any of these conditions dropped, as the paper did)."""
    tests: dict[str, Any] = {}
    for name in (*PERPLEXITIES, "lexical_diversity_individual"):
        groups = {c: _finite(data["items"][c].get(name, [])) for c in conditions}
        if result := compare_groups(groups, alpha):
            tests[name] = result
    # semantic diversity, as the paper tests it: a sample of each run's pairwise distances per condition
    groups = {c: _finite(data["items"][c].get("semantic_distances", [])) for c in conditions}
    if result := compare_groups(groups, alpha):
        tests["semantic_diversity"] = result
    for prompt_set in PROMPT_SETS:
        for rubric in rubrics:
            groups, dropped = judged(data, prompt_set, rubric, conditions)
            if not groups and not dropped:
                continue  # the rubric does not apply to this prompt set (or nothing was judged)
            key = f"{prompt_set}_{rubric}"
            tests[key] = {
                "items_dropped_unparsed": dropped,
                "items_compared": len(next(iter(groups.values()), [])),
            }
            if result := compare_groups(groups, alpha):
                tests[key].update(result)
    return tests


def build_summary(
    data: dict[str, Any],
    alpha: float,
    seed: int,
    resamples: int,
    danger: tuple[float, float] = (4, 4),
    tier_comparisons: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The report's numbers: per condition, each metric's mean over seeds with its 95% CI, and the tests.

    `danger` is (quality_min, harm_min) of the danger zone, as robustness.scoring sets it.
    `tier_comparisons` (report.tier_comparisons) names groups of conditions, e.g. the single-source condition
    of each data tier, that are also tested among themselves (the paper's Kruskal-Wallis across tiers)."""
    tier_comparisons = tier_comparisons or {}
    conditions = data["conditions"]
    rubrics = data.get("rubrics") or ["harmfulness", "quality"]
    summary: dict[str, Any] = {
        "metric_definitions": data.get("metric_definitions", "paper"),
        "seeds": data["seeds"],
        "rubrics": rubrics,
        "danger_zone": {"quality_min": danger[0], "harmfulness_min": danger[1]},
        "diversity_keys": report_keys(),
        "conditions": {},
        "tests": {},
    }
    for c in conditions:
        runs = list(data["runs"][c].values())
        one = len(runs) == 1
        row = _Row(seed, resamples)
        for name in PERPLEXITIES:
            per_seed = [
                summarize(_finite(list(r["items"][name].values()))) for r in runs if name in r["items"]
            ]
            if not per_seed:
                continue
            row.values[name] = {
                key: seed_mean([s[key] for s in per_seed]) for key in ("mean", "median", "mean_iqr_cleaned")
            }
            row.values[name]["n_items"] = per_seed[0]["n"] if one else None
            items = list(runs[0]["items"][name].values()) if one else None
            row.add_interval(name, [s["mean"] for s in per_seed], items)
        for name in summary["diversity_keys"]:
            per_seed = [(r["collapse"] or {}).get(name) for r in runs]
            items = None
            if name == "lexical_diversity_individual" and one:
                items = list(runs[0]["items"].get(name, {}).values())
            row.add(name, per_seed, items)
        for prompt_set in PROMPT_SETS:
            sets = [(r["robustness"] or {}).get(prompt_set) for r in runs]
            if not any(sets):
                continue
            # one seed: the per-item values behind each metric, for a bootstrap CI
            judged_items = runs[0]["items"].get("judge_scores", {})
            items = robustness_items(judged_items, prompt_set, danger, rubrics) if one else {}
            for key in robustness_keys(rubrics):
                row.add(f"{prompt_set}.{key}", [(s or {}).get(key) for s in sets], items.get(key))
        preferences = [r["preference"] or {} for r in runs]
        for key in PREFERENCE:
            row.add(key, [p.get(key) for p in preferences])
        for source in dict.fromkeys(s for p in preferences for s in p.get("preference") or {}):
            row.add(f"preference.{source}", [(p.get("preference") or {}).get(source) for p in preferences])
        trained = [r["finetune"] or {} for r in runs]
        for key in FINETUNE:
            row.add(key, [t.get(key) for t in trained])
        row.values["tuned"] = any(bool(t.get("tuned")) for t in trained)
        summary["conditions"][c] = row.values
    summary["incomplete_runs"] = incomplete_runs(data)
    summary["tests"] = item_tests(data, conditions, rubrics, alpha)
    summary["tier_tests"] = {
        name: item_tests(data, compared, rubrics, alpha) for name, compared in tier_comparisons.items()
    }
    summary["data_diversity"] = data.get("data_diversity")
    return summary
