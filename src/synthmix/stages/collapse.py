"""collapse@<condition>-<seed>: distribution collapse of one run (Schaffelder & Gatt, §4.1), no LLM.

From the per-response perplexities that perplexity@ wrote and the run's own outputs (sample@):

- `own_output_perplexity` and `human_text_perplexity`: mean, median and IQR-cleaned mean
  (`metrics.stats.summarize`);
- every registered diversity metric of the outputs (`metrics.diversity.DIVERSITY_METRICS`): lexical
  diversity (100 - Self-BLEU, individual and aggregated), Heaps' law K and beta, semantic diversity and Vendi
  score on sentence embeddings, distinct-1..4 and the compression ratio.

Writes `<metrics>/metrics.json` (DVCLive) and the vocabulary growth curve `<metrics>/vocabulary_growth.tsv`
(columns tokens, vocabulary) for `dvc plots`. Loads only the sentence embedder, never an LLM: every setting
here reruns this stage alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.config import load_run_params, run_stage
from synthmix.io import read_jsonl, write_tsv
from synthmix.metrics.diversity import diversity_metrics
from synthmix.metrics.embeddings import embedder_provenance, embedding_model_path
from synthmix.metrics.stats import summarize
from synthmix.provenance import Run, rounded
from synthmix.stages import add_run_arguments

HELP = "distribution-collapse metrics of one run: perplexity summaries, diversity (no LLM)"
PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
SUMMARY_KEYS = ("mean", "median", "mean_iqr_cleaned", "n")
GROWTH_FILE = "vocabulary_growth.tsv"
GROWTH_COLUMNS = ("tokens", "vocabulary")  # N, V(N)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--perplexity", default=None, help="default: data/perplexity/<condition>/<seed>")
    parser.add_argument("--samples", default=None, help="default: data/samples/<condition>/<seed>")
    parser.add_argument("--metrics", default=None, help="DVCLive folder (default: metrics/collapse/...)")


def perplexity_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """mean, median, mean_iqr_cleaned and n (responses with a perplexity) of the per-item perplexities."""
    summary = summarize([r["perplexity"] for r in records if r["perplexity"] is not None])
    return {key: summary[key] for key in SUMMARY_KEYS}


def main(
    *,
    condition: str,
    seed: int,
    perplexity: str | None = None,
    samples: str | None = None,
    metrics: str | None = None,
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed)
    settings = params.collapse
    stage = run_stage("collapse", condition, seed)
    run = Run(stage, {"collapse": settings.model_dump(exclude={"perplexity"})})
    embedder = embedding_model_path(settings.embedding_model, Path(params_file).resolve().parent)
    scored = Path(perplexity or paths.perplexity(condition, seed))
    outputs = read_jsonl(
        Path(samples or paths.samples(condition, seed)) / paths.RESPONSES, required=("id", "response")
    )
    summary: dict[str, Any] = {
        name: perplexity_summary(read_jsonl(scored / f"{name}.jsonl", required=("id", "perplexity")))
        for name in PERPLEXITIES
    }
    values, growth = diversity_metrics([r["response"] for r in outputs], settings, embedder)
    summary = rounded({**summary, **values})

    from dvclive import Live

    metrics_dir = Path(metrics or paths.metrics("collapse", condition, seed))
    with Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(summary)
    write_tsv(metrics_dir / GROWTH_FILE, GROWTH_COLUMNS, growth)
    run.log(
        embedding_model=embedder_provenance(settings.embedding_model)
    )  # metrics-only outputs: no manifest
    print(
        f"{stage}: own-output perplexity (median) {summary[PERPLEXITIES[0]]['median']}, "
        f"human-text perplexity (median) {summary[PERPLEXITIES[1]]['median']}, "
        f"lexical diversity (aggregated) {values['lexical_diversity_aggregated']} -> {metrics_dir}"
    )
