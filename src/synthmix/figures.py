"""The report's figures (matplotlib, written as PNG). Conditions are named as in params.yaml."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from synthmix import paths


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def perplexity_distributions(data: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    conditions = data["conditions"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    titles = {
        "own_output_perplexity": "v1: own outputs under the untuned base model",
        "human_text_perplexity": "v2: human test responses under the condition's model",
    }
    for ax, (name, title) in zip(axes, titles.items(), strict=True):
        series = [[v for v in data["items"][c].get(name, []) if v and math.isfinite(v)] for c in conditions]
        if not any(series):
            _empty(ax, "not computed")
        else:
            ax.boxplot([s or [float("nan")] for s in series], tick_labels=conditions, showfliers=True)
            ax.set_yscale("log")
            ax.set_ylabel("perplexity per response (log scale)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("condition")
    return _save(plt, fig, out / "perplexity_distributions.png")


def _bars_with_ci(ax: Any, rows: dict[str, Any], metric: str, color: str) -> bool:
    """One bar per condition with its 95% CI as an error bar where the report has one; False if no values."""
    conditions = list(rows)
    values = [rows[c].get(metric) for c in conditions]
    if all(v is None for v in values):
        return False
    heights = [v if v is not None else 0.0 for v in values]
    cis = [rows[c].get("ci95", {}).get(metric) for c in conditions]
    if not any(cis):  # no interval at all (a corpus-level metric from one seed): no error bars either
        ax.bar(conditions, heights, color=color)
        return True
    errors = [
        [max(0.0, h - ci[0]) if ci else 0.0 for h, ci in zip(heights, cis, strict=True)],
        [max(0.0, ci[1] - h) if ci else 0.0 for h, ci in zip(heights, cis, strict=True)],
    ]
    ax.bar(conditions, heights, yerr=errors, capsize=4, color=color)
    return True


def diversity_bars(summary: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    rows = summary["conditions"]
    several = len(summary.get("seeds") or []) >= 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    if _bars_with_ci(ax, rows, "lexical_diversity_individual", "tab:blue"):
        ax.set_ylabel("100 - Self-BLEU (higher = more diverse)")
    else:
        _empty(ax, "not computed")
    ax.set_title(
        "Lexical diversity, individual (95% CI " + ("across seeds)" if several else "over responses)"),
        fontsize=10,
    )
    ax = axes[1]
    if _bars_with_ci(ax, rows, "semantic_diversity", "tab:green"):
        ax.set_ylabel("mean pairwise cosine distance")
    else:
        _empty(ax, "not computed (no embedding model)")
    ax.set_title(
        "Semantic diversity (MiniLM embeddings" + (", 95% CI across seeds)" if several else ")"), fontsize=10
    )
    for ax in axes:
        ax.set_xlabel("condition")
    return _save(plt, fig, out / "diversity.png")


def vocabulary_growth(conditions: list[str], seeds: list[int], root: Path, out: Path) -> Path:
    """One curve per run; a condition's seeds share its colour (solid, then dashed, dotted, ...)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    styles = ("-", "--", ":", "-.")
    for index, c in enumerate(conditions):
        for number, seed in enumerate(seeds):
            path = root / paths.metrics("collapse", c, seed) / "vocabulary_growth.tsv"
            if not path.is_file():
                continue
            with path.open() as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            ax.plot(
                [int(r["tokens"]) for r in rows],
                [int(r["vocabulary"]) for r in rows],
                marker=".",
                linestyle=styles[number % len(styles)],
                color=f"C{index % 10}",
                label=c if len(seeds) == 1 else f"{c}, seed {seed}",
            )
            drawn += 1
    if drawn:
        ax.set_xlabel("tokens N (concatenated outputs)")
        ax.set_ylabel("distinct words V(N)")
        ax.legend(title="condition" if len(seeds) == 1 else "run", fontsize=8)
    else:
        _empty(ax, "not computed")
    ax.set_title("Vocabulary growth (Heaps' law)", fontsize=10)
    return _save(plt, fig, out / "vocabulary_growth.png")


def danger_zone(data: dict[str, Any], quality_min: float, harm_min: float, out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    from matplotlib.patches import Rectangle

    # the zone itself: harmfulness >= harm_min and quality >= quality_min (scores may be fractional)
    zone = f"danger zone (harmfulness >= {harm_min:g}, quality >= {quality_min:g})"
    ax.add_patch(
        Rectangle(
            (harm_min, quality_min),
            5.5 - harm_min,
            5.5 - quality_min,
            color="tab:red",
            alpha=0.12,
            label=zone,
        )
    )
    points = 0
    for offset, c in enumerate(data["conditions"]):
        records = [
            r
            for r in data["items"][c].get("judge_scores") or []
            if r.get("harmfulness") is not None and r.get("quality") is not None
        ]
        jitter = (offset - len(data["conditions"]) / 2) * 0.06
        ax.scatter(
            [r["harmfulness"] + jitter for r in records],
            [r["quality"] + jitter for r in records],
            label=c,
            alpha=0.6,
            s=18,
        )
        points += len(records)
    ax.set_xlim(0.5, 5.5)
    ax.set_ylim(0.5, 5.5)
    ax.set_xlabel("judged harmfulness (1 = refuses, 5 = fully complies)")
    ax.set_ylabel("judged quality (1-5)")
    title = "Harmfulness vs quality of answers to harmful prompts"
    if not points:
        title += "\n(no item had both judge scores parsed)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, title="condition")
    return _save(plt, fig, out / "danger_zone.png")


def preference_heatmap(summary: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    rows = summary["conditions"]
    conditions = list(rows)
    sources = sorted({s for c in conditions for s in (rows[c].get("preference") or {})})
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * max(len(sources), 1), 1.2 + 0.55 * len(conditions)))
    if sources:
        matrix = [[(rows[c].get("preference") or {}).get(s) for s in sources] for c in conditions]
        values = [[v if v is not None else float("nan") for v in row] for row in matrix]
        image = ax.imshow(values, cmap="coolwarm", vmin=0.3, vmax=0.7, aspect="auto")
        ax.set_xticks(range(len(sources)), sources)
        ax.set_yticks(range(len(conditions)), conditions)
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                ax.text(j, i, "–" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=9)
        fig.colorbar(image, ax=ax, label="mean preference (0.5 = neutral)")
        ax.set_xlabel("candidate source")
        ax.set_ylabel("judge = condition's model")
    else:
        _empty(ax, "not computed")
    ax.set_title("Self-preference: who prefers whose text", fontsize=10)
    return _save(plt, fig, out / "self_preference_heatmap.png")


def generation_curves(summary: dict[str, Any], out: Path) -> list[Path]:
    """The recursion: one figure per metric, a line per condition over the generations, with its 95% CI across
    seeds where there are two or more (report_generations)."""
    if not summary or not summary.get("conditions"):
        return []
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, curves in summary["curves"].items():
        if not any(curves.values()):
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for condition, points in curves.items():
            if not points:
                continue
            x = [p["generation"] for p in points]
            ax.plot(x, [p["mean"] for p in points], marker="o", label=condition)
            if all("low" in p for p in points):
                ax.fill_between(x, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2)
        ax.set_xlabel("generation")
        ax.set_ylabel(name)
        ax.set_xticks(sorted({p["generation"] for points in curves.values() for p in points}))
        ax.legend(fontsize=8)
        made.append(_save(plt, fig, out / f"{name}.png"))
    return made
