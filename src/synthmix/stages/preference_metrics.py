"""preference_metrics@<condition>-<seed>: self-preference bias from one run's judgements (no model).

Reads the judge's records (preference@) and writes the metrics (`<metrics>/metrics.json`, DVCLive), the
pairwise matrix (`<metrics>/matrix.json`) and a per-source table for `dvc plots` (`<metrics>/sources.csv`).
A separate stage so that the self-source, gold labels and how verdicts are read never rerun the judging.

The equal-opportunity bias (Wataoka et al., arXiv 2410.21819) and the excess over gold need human pairwise
labels, which the instruction data does not have: they are computed only when `preference.gold_labels`
names a jsonl of `{"item", "sources": [a, b], "winner"}` records, and left out of the metrics otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import load_run_params, run_stage
from synthmix.io import atomic_write_text, read_json, read_jsonl, write_json
from synthmix.metrics.preference_summary import (
    matrix_without_nan,
    read_absolute,
    read_gold_labels,
    read_pairwise,
    resolve_self_source,
    sources_table,
    summarise,
)
from synthmix.provenance import Run, rounded
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "self-preference bias from one run's judgements (no model)"
MATRIX = "matrix.json"
SOURCES_TABLE = "sources.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--judgements", default=None, help="default: data/preference/<condition>/<seed>")
    parser.add_argument("--metrics", default=None, help="DVCLive folder: metrics, matrix, plot")


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    judgements: str | None = None,
    metrics: str | None = None,
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    stage = run_stage("preference_metrics", condition, seed, generation)
    folder = Path(judgements or paths.in_generation(paths.preference(condition, seed), generation))
    sources = read_json(folder / paths.MANIFEST)["sources"]
    self_source = resolve_self_source(params, sources)
    settings = params.preference
    definitions, sampling = params.metric_definitions, settings.judge_sampling
    run = Run(
        stage,
        {
            "preference": settings.model_dump(include={"self_source", "gold_labels", "judge_sampling"}),
            "metric_definitions": definitions,
        },
    )
    gold = read_gold_labels(settings.gold_labels) if settings.gold_labels else None
    pairwise = read_pairwise(
        read_jsonl(folder / "judgements.jsonl", required=("item", "first", "second", "logprobs", "top")),
        definitions,
        sampling,
    )
    absolute_file = folder / "absolute.jsonl"
    absolute = (
        read_absolute(
            read_jsonl(absolute_file, required=("item", "source", "logprobs", "top")), definitions, sampling
        )
        if absolute_file.exists()
        else []
    )
    summary = rounded(summarise(pairwise, absolute, sources, self_source, gold))

    from dvclive import Live

    metrics_dir = Path(
        metrics or paths.in_generation(paths.metrics("preference", condition, seed), generation)
    )
    with Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for key, value in summary.items():
            live.summary[key] = value
    write_json(metrics_dir / MATRIX, rounded(matrix_without_nan(pairwise, sources)))
    atomic_write_text(metrics_dir / SOURCES_TABLE, sources_table(summary, sources, self_source))
    run.log()
    shown = ", ".join(f"{s} {v:.3f}" if v is not None else f"{s} -" for s, v in summary["preference"].items())
    print(
        f"{stage}: mean preference {shown}; self-preference ({self_source}) {summary['self_preference']}; "
        f"position consistency {summary['position_consistency']} -> {metrics_dir}"
    )
