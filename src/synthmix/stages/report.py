"""report: all conditions side by side -> reports/summary.md, reports/summary.json and PNG figures."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from synthmix import figures, paths, report_generations
from synthmix.config import load_params
from synthmix.io import atomic_write_text, write_tsv
from synthmix.provenance import Run, rounded
from synthmix.report import build_summary, collect
from synthmix.report_markdown import render_markdown

HELP = "compare all conditions: tables, significance tests, figures"
GENERATIONS = "generations"  # reports/generations/: metric-vs-generation curves (TSV for dvc plots, PNG)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.REPORTS))
    parser.add_argument("--root", default=".", help="the project folder whose outputs are read")


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no NaN and DVC's metric readers choke on it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(*, out: str = str(paths.REPORTS), root: str = ".", params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    settings = params.report
    conditions = list(params.conditions)
    out_dir, root_dir = Path(out), Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(
        "report",
        {
            "report": settings.model_dump(),
            "metric_definitions": params.metric_definitions,
            "preference": {"task": params.preference.task},
            "recursion": params.recursion.lineages(),
        },
    )
    scoring = params.robustness.scoring
    data = collect(
        conditions, params.seeds, root_dir, params.robustness.judge.rubrics, params.metric_definitions
    )
    summary = build_summary(
        data,
        settings.alpha,
        settings.seed,
        settings.bootstrap_resamples,
        danger=(scoring.danger_quality_min, scoring.danger_harm_min),
        tier_comparisons=settings.tier_comparisons,
    )
    summary["preference_task"] = params.preference.task
    lineages = params.recursion.lineages()
    summary["generations"] = (
        report_generations.summarise(
            report_generations.collect(lineages, params.seeds, root_dir, params.metric_definitions),
            settings.alpha,
        )
        if lineages
        else {}
    )
    made = [
        figures.perplexity_distributions(data, out_dir),
        figures.diversity_bars(summary, out_dir),
        figures.vocabulary_growth(conditions, params.seeds, root_dir, out_dir),
        figures.danger_zone(data, scoring.danger_quality_min, scoring.danger_harm_min, out_dir),
        figures.preference_heatmap(summary, out_dir),
        *figures.generation_curves(summary["generations"], out_dir / GENERATIONS),
    ]
    curves = out_dir / GENERATIONS
    curves.mkdir(parents=True, exist_ok=True)
    for name in report_generations.metric_names():  # one file per metric, also without recursion (dvc plots)
        rows = report_generations.curve_rows(summary["generations"], name) if summary["generations"] else []
        write_tsv(curves / f"{name}.tsv", ("generation", "condition", "mean", "low", "high"), rows)
    atomic_write_text(out_dir / "summary.json", json.dumps(_json_safe(rounded(summary)), indent=2) + "\n")
    atomic_write_text(
        out_dir / "summary.md",
        render_markdown(summary, settings.alpha, [str(Path(p).relative_to(out_dir)) for p in made]),
    )
    run.log()
    print(
        f"report: {len(conditions)} conditions x {len(params.seeds)} seed(s) -> {out_dir / 'summary.md'} "
        f"and {len(made)} figures"
    )
