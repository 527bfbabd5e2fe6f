"""preference@<condition>-<seed>: the run's model judges every pair of candidates in both orders, and each
candidate alone (model time; Schaffelder & Gatt, Experiment 3).

Reads the candidates (data/candidates/candidates.jsonl) and writes `<out>/judgements.jsonl` (one record per
item, pair and order: the log-probabilities of the judge's first token for "A" and "B"), `<out>/absolute.jsonl`
(one per item and source: for "1".."5") and `<out>/manifest.json`. Resumable. The verdicts and metrics are
preference_metrics@'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import load_run_params, run_stage
from synthmix.io import read_json, read_jsonl
from synthmix.metrics.preference_summary import CHOICES, RATINGS
from synthmix.modelstore import adapter_fingerprint, adapter_or_none, model_revision
from synthmix.preference import absolute_requests, judge_all, pairwise_requests
from synthmix.provenance import Run
from synthmix.stages import add_run_arguments

HELP = "the run's model judges every pair of candidates (self-preference)"
JUDGEMENTS = "judgements.jsonl"
ABSOLUTE = "absolute.jsonl"
# the settings that shape the judge's input (self_source and gold labels change only the metrics)
JUDGING = {"text_label", "pairwise_system_prompt", "absolute_scores", "absolute_system_prompt"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--out", default=None, help="default: data/preference/<condition>/<seed>")
    parser.add_argument("--candidates", default=str(paths.DATA / "candidates"), help="the candidates folder")
    parser.add_argument("--adapter", default=None, help="default: models/adapters/<condition>/<seed>")
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    condition: str,
    seed: int,
    out: str | None = None,
    candidates: str = str(paths.DATA / "candidates"),
    adapter: str | None = None,
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed)
    settings = params.preference
    run = Run(
        run_stage("preference", condition, seed),
        {"preference": settings.model_dump(include=JUDGING), "target": {"model": params.target.model}},
    )
    chosen = read_jsonl(Path(candidates) / "candidates.jsonl", required=("item", "texts"))
    sources = read_json(Path(candidates) / paths.MANIFEST)["sources"]
    model_dir = Path(models) / params.target.model
    adapter_dir = adapter_or_none(adapter or paths.adapter(condition, seed))
    identity = (model_revision(model_dir), adapter_fingerprint(adapter_dir))
    out_dir = Path(out or paths.preference(condition, seed))

    pairs = pairwise_requests(chosen, sources, settings)
    pairwise = judge_all(
        pairs,
        out_dir / JUDGEMENTS,
        CHOICES,
        model_dir,
        adapter_dir,
        identity,
        ("item", "first", "second"),
        run.stage,
    )
    resumed, absolute = pairwise.resumed, []
    if settings.absolute_scores:
        ratings = absolute_requests(chosen, sources, settings)
        rated = judge_all(
            ratings,
            out_dir / ABSOLUTE,
            RATINGS,
            model_dir,
            adapter_dir,
            identity,
            ("item", "source"),
            f"{run.stage} (absolute)",
        )
        resumed, absolute = resumed + rated.resumed, rated.records
    run.write(
        out_dir,
        {"resumed": resumed},
        condition=condition,
        seed=seed,
        judge_model=identity[0],
        adapter=identity[1],
        sources=sources,
        items=[c["item"] for c in chosen],
        counts={"judgements": len(pairwise.records), "absolute": len(absolute)},
    )
    print(
        f"{run.stage}: {len(chosen)} items x {len(sources)} sources: {len(pairwise.records)} pairwise "
        f"and {len(absolute)} absolute judgements -> {out_dir}"
    )
