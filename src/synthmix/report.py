"""The comparison report: every condition side by side, with significance tests and confidence intervals.

Reads what the evaluation stages wrote (metrics JSON and per-item JSONL), never a model. Pure functions
turn those into tables; `stages/report.py` writes `reports/summary.md`, `reports/summary.json` and figures.

Significance, as in the paper: Kruskal-Wallis across conditions on per-item values, then pairwise
Mann-Whitney U with Bonferroni correction. Confidence intervals: 95% bootstrap over items (one seed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from synthmix.io import read_json, read_jsonl
from synthmix.metrics.diversity import self_bleu, split_sentences, summarize
from synthmix.metrics.stats import bootstrap_ci, kruskal_wallis, pairwise_mann_whitney
from synthmix.robustness import drop_unparsed_across_conditions

PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
DIVERSITY = (
    "lexical_diversity_individual",
    "lexical_diversity_aggregated",
    "semantic_diversity",
    "vendi_score",
    "heaps_k",
    "heaps_beta",
    "distinct_1",
    "distinct_2",
    "compression_ratio",
)
PROMPT_SETS = ("harmful", "jailbreak", "benign")
ROBUSTNESS = ("refusal_rate", "harmfulness_mean", "quality_mean", "danger_zone_share", "parse_failures")


def _maybe_json(path: Path) -> dict[str, Any] | None:
    return read_json(path) if path.is_file() else None


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def compare_groups(groups: dict[str, list[float]], alpha: float) -> dict[str, Any] | None:
    """Kruskal-Wallis over the groups, then Bonferroni-corrected pairwise Mann-Whitney U; None if < 2 groups."""
    usable = {name: values for name, values in groups.items() if len(values) >= 2}
    if len(usable) < 2:
        return None
    omnibus = kruskal_wallis(usable)
    pairs = pairwise_mann_whitney(usable, alpha=alpha)
    return {"kruskal_wallis": omnibus, "pairwise": pairs}


def with_ci(values: list[float], seed: int, resamples: int) -> dict[str, Any]:
    """summarize() plus a 95% bootstrap CI of the mean (None with fewer than 2 values)."""
    summary = summarize(values)
    finite = _finite(values)
    if len(finite) >= 2:
        low, high = bootstrap_ci(finite, n_resamples=resamples, seed=seed)
        summary["ci95"] = [low, high]
    else:
        summary["ci95"] = None
    return summary


def individual_lexical_diversity(responses: list[str]) -> list[float]:
    """Per-response 100 - Self-BLEU (responses with >= 2 valid sentences), for error bars and tests."""
    values = []
    for response in responses:
        score = self_bleu(split_sentences(response))
        if score is not None:
            values.append(100.0 - score)
    return values


def collect(conditions: list[str], root: Path) -> dict[str, Any]:
    """Everything the report needs, read from the standard output folders under `root`."""
    data: dict[str, Any] = {
        "conditions": conditions,
        "collapse": {},
        "robustness": {},
        "preference": {},
        "finetune": {},
        "mix": {},
        "items": {},
    }
    for c in conditions:
        data["finetune"][c] = _maybe_json(root / "metrics" / "finetune" / c / "metrics.json")
        data["mix"][c] = _maybe_json(root / "metrics" / "mix" / f"{c}.json")
        data["collapse"][c] = _maybe_json(root / "metrics" / "collapse" / c / "metrics.json")
        data["robustness"][c] = _maybe_json(root / "metrics" / "robustness" / c / "metrics.json")
        data["preference"][c] = _maybe_json(root / "metrics" / "preference" / c / "metrics.json")
        items: dict[str, Any] = {}
        for name in PERPLEXITIES:
            path = root / "data" / "collapse" / c / f"{name}.jsonl"
            if path.is_file():
                items[name] = [r.get("perplexity") for r in read_jsonl(path)]
        samples = root / "data" / "samples" / c / "responses.jsonl"
        if samples.is_file():
            items["lexical_diversity_individual"] = individual_lexical_diversity(
                [r["response"] for r in read_jsonl(samples)]
            )
        scores = root / "data" / "judgements" / c / "scores.jsonl"
        if scores.is_file():
            items["judge_scores"] = read_jsonl(scores)
        data["items"][c] = items
    data["data_diversity"] = _maybe_json(root / "metrics" / "data_diversity" / "metrics.json")
    return data


def judged(data: dict[str, Any], prompt_set: str, rubric: str) -> tuple[dict[str, list[float]], int]:
    """Per-condition scores of one rubric on one prompt set, after the paper's rule: an item that failed to
    parse for any condition is dropped for all. Returns (scores by condition, items dropped)."""
    by_condition = {}
    for c in data["conditions"]:
        records = data["items"][c].get("judge_scores") or []
        by_condition[c] = {
            r["id"]: r[rubric] for r in records if r.get("prompt_set") == prompt_set and rubric in r
        }
    if not any(by_condition.values()):
        return {}, 0
    kept, dropped = drop_unparsed_across_conditions(by_condition)
    return {c: [float(v) for v in scores.values()] for c, scores in kept.items()}, dropped


def build_summary(data: dict[str, Any], alpha: float, seed: int, resamples: int) -> dict[str, Any]:
    conditions = data["conditions"]
    summary: dict[str, Any] = {"conditions": {}, "tests": {}}
    for c in conditions:
        row: dict[str, Any] = {}
        items = data["items"][c]
        for name in PERPLEXITIES:
            if name in items:
                row[name] = with_ci(_finite(items[name]), seed, resamples)
        if items.get("lexical_diversity_individual"):
            row["lexical_diversity_individual_ci95"] = with_ci(
                items["lexical_diversity_individual"], seed, resamples
            )["ci95"]
        collapse = data["collapse"][c] or {}
        for name in DIVERSITY:
            if name in collapse:
                row[name] = collapse[name]
        robustness = data["robustness"][c] or {}
        for prompt_set in PROMPT_SETS:
            if prompt_set in robustness:
                row[prompt_set] = {
                    k: robustness[prompt_set].get(k) for k in ROBUSTNESS if k in robustness[prompt_set]
                }
        preference = data["preference"][c] or {}
        for key in ("self_preference", "self_preference_vs_human", "position_consistency"):
            if key in preference:
                row[key] = preference[key]
        if "preference" in preference:
            row["preference"] = preference["preference"]
        finetune = data["finetune"][c] or {}
        row["tuned"] = bool(finetune.get("tuned"))
        for key in ("steps", "final_train_loss", "best_eval_loss"):
            if key in finetune:
                row[key] = finetune[key]
        summary["conditions"][c] = row
    for name in PERPLEXITIES:
        groups = {c: _finite(data["items"][c].get(name, [])) for c in conditions}
        result = compare_groups(groups, alpha)
        if result:
            summary["tests"][name] = result
    groups = {c: data["items"][c].get("lexical_diversity_individual", []) for c in conditions}
    if result := compare_groups(groups, alpha):
        summary["tests"]["lexical_diversity_individual"] = result
    for prompt_set in PROMPT_SETS:
        for rubric in ("harmfulness", "quality"):
            groups, dropped = judged(data, prompt_set, rubric)
            if not groups and not dropped:
                continue  # the rubric does not apply to this prompt set (or nothing was judged)
            key = f"{prompt_set}_{rubric}"
            summary["tests"][key] = {
                "items_dropped_unparsed": dropped,
                "items_compared": len(next(iter(groups.values()), [])),
            }
            if result := compare_groups(groups, alpha):
                summary["tests"][key].update(result)
    summary["data_diversity"] = data.get("data_diversity")
    return summary


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2g}" if value < 0.001 else f"{value:.4f}"


def _tests_lines(name: str, result: dict[str, Any] | None, alpha: float) -> list[str]:
    if not result or "kruskal_wallis" not in result:
        return []
    kw = result["kruskal_wallis"]
    label = f"**{name}**: " if name else ""
    lines = [f"- {label}Kruskal-Wallis H = {_fmt(kw['H'])}, p = {_p(kw['p'])}"]
    significant = [
        f"{p['a']} vs {p['b']} (p_Bonferroni = {_p(p['p_bonferroni'])})"
        for p in result["pairwise"]
        if p["significant"]
    ]
    lines.append(
        f"  - pairwise Mann-Whitney U, Bonferroni-corrected, alpha {alpha}: "
        + ("; ".join(significant) if significant else "no pair differs significantly")
    )
    return lines


def render_markdown(summary: dict[str, Any], alpha: float, figures: list[str]) -> str:
    conditions = list(summary["conditions"])
    rows = summary["conditions"]
    out = [
        "# synthmix report",
        "",
        f"Conditions: {', '.join(conditions)}. Per-item significance: Kruskal-Wallis, then pairwise "
        f"Mann-Whitney U with Bonferroni correction (alpha {alpha}). CI: 95% bootstrap over items.",
        "",
    ]

    out += [
        "## Distribution collapse",
        "",
        "Perplexity (v1: own outputs under the untuned base model; v2: human test responses under the "
        "condition's model). Lower v1 = more 'self-typical' text; lower v2 = models human text better.",
        "",
    ]
    header = ["condition"]
    for name in PERPLEXITIES:
        header += [f"{name} mean", "median", "IQR-cleaned mean", "95% CI of mean"]
    table = []
    for c in conditions:
        row: list[Any] = [c]
        for name in PERPLEXITIES:
            s = rows[c].get(name) or {}
            ci = s.get("ci95")
            row += [
                s.get("mean"),
                s.get("median"),
                s.get("mean_iqr_cleaned"),
                f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else None,
            ]
        table.append(row)
    out += _table(header, table) + [""]
    out += [
        "Diversity of each condition's outputs (lexical diversity = 100 - Self-BLEU; semantic = mean "
        "pairwise cosine distance; Heaps' law V = K N^beta).",
        "",
    ]
    out += _table(["condition", *DIVERSITY], [[c, *(rows[c].get(k) for k in DIVERSITY)] for c in conditions])
    out += [""]
    for name in (*PERPLEXITIES, "lexical_diversity_individual"):
        out += _tests_lines(name, summary["tests"].get(name), alpha)
    data_div = summary.get("data_diversity")
    if data_div:
        out += ["", "### Training-data diversity (train split of each source and the human data)", ""]
        names = [n for n in data_div if isinstance(data_div[n], dict)]
        out += _table(["data", *DIVERSITY], [[n, *(data_div[n].get(k) for k in DIVERSITY)] for n in names])

    out += [
        "",
        "## Adversarial robustness",
        "",
        "Keyword refusal rate (AdvBench list), judge harmfulness and quality (1-5), danger zone (quality >= 4 "
        "and harmfulness >= 4); parse_failures = items whose judge reply did not parse.",
        "",
    ]
    table = []
    for c in conditions:
        for prompt_set in PROMPT_SETS:
            if prompt_set in rows[c]:
                table.append([c, prompt_set, *(rows[c][prompt_set].get(k) for k in ROBUSTNESS)])
    out += _table(["condition", "prompt set", *ROBUSTNESS], table) if table else ["(no robustness metrics)"]
    out += [""]
    for key, result in summary["tests"].items():
        if key.endswith(("_harmfulness", "_quality")):
            out.append(
                f"- **{key}**: {result['items_compared']} items compared on every condition, "
                f"{result['items_dropped_unparsed']} dropped because a judge reply failed to parse"
            )
            out += [f"  {line}" for line in _tests_lines("", result, alpha)]

    out += [
        "",
        "## Self-preference bias",
        "",
        "Mean pairwise preference of each condition's model (as judge) for each candidate source, both orders "
        "averaged (0.5 = no preference).",
        "",
    ]
    sources = sorted({s for c in conditions for s in (rows[c].get("preference") or {})})
    if sources:
        out += _table(
            ["condition", *sources, "self_preference", "self_preference_vs_human", "position_consistency"],
            [
                [
                    c,
                    *((rows[c].get("preference") or {}).get(s) for s in sources),
                    rows[c].get("self_preference"),
                    rows[c].get("self_preference_vs_human"),
                    rows[c].get("position_consistency"),
                ]
                for c in conditions
            ],
        )
    else:
        out.append("(no preference metrics)")

    out += ["", "## Fine-tuning", ""]
    out += _table(
        ["condition", "tuned", "steps", "final_train_loss", "best_eval_loss"],
        [
            [
                c,
                rows[c].get("tuned"),
                rows[c].get("steps"),
                rows[c].get("final_train_loss"),
                rows[c].get("best_eval_loss"),
            ]
            for c in conditions
        ],
    )
    if figures:
        out += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    return "\n".join(out) + "\n"
