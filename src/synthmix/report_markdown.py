"""The report as markdown: `render_markdown(summary, alpha, figures)` for `reports/summary.md`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthmix import report_generations
from synthmix.report import FINETUNE, PERPLEXITIES, PREFERENCE, PROMPT_SETS, is_number, robustness_keys

DEFINITIONS = {
    "paper": "as the paper's code computes them",
    "synthmix": "synthmix's own where they differ from the paper's",
}
RUBRIC_LABELS = {
    "harmfulness": "harmfulness (1-5)",
    "quality": "quality (1-5)",
    "strongreject": "StrongREJECT score (0-1)",
}


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


def _tier_lines(summary: dict[str, Any], alpha: float) -> list[str]:
    """report.tier_comparisons: each named group of conditions tested among themselves, per item metric."""
    groups = summary.get("tier_tests") or {}
    if not groups:
        return []
    out = [
        "",
        "## Across training-data tiers",
        "",
        "Each group of report.tier_comparisons tested among itself (the paper's comparison of the conditions "
        "trained on Small-, Medium- and Large-tier data).",
    ]
    for group, tests in groups.items():
        out += ["", f"### {group}", ""]
        lines = [line for name, result in tests.items() for line in _tests_lines(name, result, alpha)]
        out += lines or ["(no per-item metrics to compare yet)"]
    return out


def _get(row: Mapping[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _cell(row: Mapping[str, Any], path: str) -> str:
    """A metric's mean with its 95% CI, "2.384 [2.178, 2.671]", or the mean alone when it has no CI."""
    value, ci = _get(row, path), row.get("ci95", {}).get(path)
    if value is None or not ci or not all(is_number(v) for v in ci):
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def ci_note(seeds: list[int]) -> str:
    """How the report's confidence intervals were computed, for its first paragraph."""
    if len(seeds) >= 2:
        return (
            f"Each metric is the mean over {len(seeds)} runs (seeds {', '.join(map(str, seeds))}) with its 95% "
            "confidence interval across seeds (Student t) in brackets."
        )
    return (
        f"One run per condition (seed {seeds[0]}): brackets give a 95% bootstrap confidence interval over items "
        "for metrics that are means over items; corpus-level metrics (aggregated Self-BLEU, semantic diversity, "
        "Heaps' law, ...) get none from one run. List more seeds under `seeds` in params.yaml for intervals "
        "across training runs."
    )


def render_markdown(summary: dict[str, Any], alpha: float, figures: list[str]) -> str:
    conditions = list(summary["conditions"])
    rows = summary["conditions"]
    seeds = summary.get("seeds") or []
    definitions = summary.get("metric_definitions", "paper")
    out = [
        "# synthmix report",
        "",
        f'Metric definitions: **{definitions}** ({DEFINITIONS[definitions]}; README, "Metric definitions").',
        "",
        f"Conditions: {', '.join(conditions)}. {ci_note(seeds)} Per-item significance: Kruskal-Wallis, then "
        f"pairwise Mann-Whitney U with Bonferroni correction (alpha {alpha})"
        + (", on each item's mean over the seeds." if len(seeds) >= 2 else "."),
        "",
    ]
    incomplete = summary.get("incomplete_runs") or {}
    if incomplete:
        listed = "; ".join(
            f"{run} (no {', '.join(sections)} metrics)" for run, sections in incomplete.items()
        )
        out += [f"**Incomplete runs** (stages not reproduced yet; left out of those means): {listed}.", ""]

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
            stats = rows[c].get(name) or {}
            ci = rows[c]["ci95"].get(name)
            row += [
                stats.get("mean"),
                stats.get("median"),
                stats.get("mean_iqr_cleaned"),
                f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci and all(is_number(v) for v in ci) else None,
            ]
        table.append(row)
    out += _table(header, table) + [""]
    out += [
        "Diversity of each condition's outputs (lexical diversity = 100 - Self-BLEU; semantic = mean "
        "pairwise cosine distance; Heaps' law V = K N^beta).",
        "",
    ]
    diversity = summary.get("diversity_keys") or []
    out += _table(
        ["condition", *diversity], [[c, *(_cell(rows[c], k) for k in diversity)] for c in conditions]
    )
    out += [""]
    for name in (*PERPLEXITIES, "lexical_diversity_individual"):
        out += _tests_lines(name, summary["tests"].get(name), alpha)
    semantic = summary["tests"].get("semantic_diversity")
    if semantic:
        out += _tests_lines("semantic_diversity (sampled pairwise cosine distances)", semantic, alpha)
    data_div = summary.get("data_diversity")
    if data_div:
        out += ["", "### Training-data diversity (train split of each source and the human data)", ""]
        names = [n for n in data_div if isinstance(data_div[n], dict)]
        out += _table(["data", *diversity], [[n, *(data_div[n].get(k) for k in diversity)] for n in names])

    rubrics = summary.get("rubrics") or ["harmfulness", "quality"]
    danger = summary.get("danger_zone") or {"quality_min": 4, "harmfulness_min": 4}
    described = ", ".join(RUBRIC_LABELS.get(r, r) for r in rubrics)
    out += [
        "",
        "## Adversarial robustness",
        "",
        f"Keyword refusal rate (AdvBench list); judge rubrics: {described}; danger zone (quality >= "
        f"{_fmt(danger['quality_min'])} and harmfulness >= {_fmt(danger['harmfulness_min'])}); parse_failures = "
        "items whose judge reply did not parse.",
        "",
    ]
    columns = robustness_keys(rubrics)
    table = []
    for c in conditions:
        for prompt_set in PROMPT_SETS:
            if prompt_set in rows[c]:
                table.append([c, prompt_set, *(_cell(rows[c], f"{prompt_set}.{k}") for k in columns)])
    out += _table(["condition", "prompt set", *columns], table) if table else ["(no robustness metrics)"]
    out += [""]
    for key, result in summary["tests"].items():
        if key.endswith(tuple(f"_{r}" for r in rubrics)):
            out.append(
                f"- **{key}**: {result['items_compared']} items compared on every condition, "
                f"{result['items_dropped_unparsed']} dropped because a judge reply failed to parse"
            )
            out += [f"  {line}" for line in _tests_lines("", result, alpha)]

    task = summary.get("preference_task", "instructions")
    compared = (
        "summaries of the same article (the article not shown)"
        if task == "summarisation"
        else "answers to the same held-out prompt (the prompt not shown)"
    )
    out += [
        "",
        "## Self-preference bias",
        "",
        f"Candidates: each source's and the human {compared}, every pair judged in both orders. Mean pairwise "
        "preference of each condition's model (as judge) for each candidate source, both orders averaged (0.5 = "
        "no preference); self_preference_shown_first / _shown_second are the two orders apart (the judge's own "
        "text shown as A / as B), position_consistency the share of pairs whose verdict survives swapping the "
        "order. Probabilities are P(A) / (P(A) + P(B)) at the judge's first token"
        + (
            " after its sampling warpers (temperature, top-k, top-p: preference.judge_sampling), as the paper "
            "read it; undefined_judgements counts the judgements where both letters had probability 0 (left out, "
            "never read as 0.5)."
            if definitions == "paper"
            else " (raw probabilities, bare and space-prefixed letters)."
        ),
        "",
    ]
    sources = sorted({s for c in conditions for s in (rows[c].get("preference") or {})})
    if sources:
        out += _table(
            ["condition", *sources, *PREFERENCE],
            [
                [
                    c,
                    *(_cell(rows[c], f"preference.{s}") for s in sources),
                    *(_cell(rows[c], k) for k in PREFERENCE),
                ]
                for c in conditions
            ],
        )
    else:
        out.append("(no preference metrics)")

    out += _tier_lines(summary, alpha)
    out += report_generations.markdown(summary.get("generations") or {}, alpha, _fmt, _p)
    out += ["", "## Fine-tuning", ""]
    out += _table(
        ["condition", "tuned", *FINETUNE],
        [[c, rows[c].get("tuned"), *(_cell(rows[c], k) for k in FINETUNE)] for c in conditions],
    )
    if figures:
        out += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).as_posix()})" for f in figures]
    return "\n".join(out) + "\n"
