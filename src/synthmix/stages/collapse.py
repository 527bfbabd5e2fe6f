"""collapse@<condition>-<seed>: distribution collapse of one run (Schaffelder & Gatt, §4.1), no LLM.

From the per-response log-likelihoods that perplexity@ wrote and the run's own outputs (sample@):

- `own_output_perplexity` and `human_text_perplexity`: mean, median and IQR-cleaned mean
  (`metrics.stats.summarize`) of the per-response perplexities (`metrics.perplexity.perplexity`);
- every registered diversity metric of the outputs (`metrics.diversity.DIVERSITY_METRICS`): lexical
  diversity (100 - Self-BLEU, individual and aggregated), Heaps' law K and beta, semantic diversity and Vendi
  score on sentence embeddings, distinct-1..4 and the compression ratio.

All under params `metric_definitions` (`paper` or `synthmix`; README, "Metric definitions"). Writes
`<metrics>/metrics.json` (DVCLive), the vocabulary growth curve `<metrics>/vocabulary_growth.tsv` (columns
tokens, vocabulary) for `dvc plots`, and `<out>/semantic_distances.json`, a seeded sample of the pairwise
cosine distances that the report's semantic-diversity significance tests compare. Loads only the sentence
embedder, never an LLM: every setting here reruns this stage alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.config import load_run_params, run_stage
from synthmix.io import read_jsonl, write_json, write_tsv
from synthmix.metrics.diversity import GROWTH_COLUMNS, TextSet, diversity_metrics, pairwise_distance_sample
from synthmix.metrics.embeddings import embedder_provenance, embedding_model_path
from synthmix.metrics.perplexity import perplexity
from synthmix.metrics.stats import summarize
from synthmix.provenance import Run, rounded
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "distribution-collapse metrics of one run: perplexity summaries, diversity (no LLM)"
PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
SUMMARY_KEYS = ("mean", "median", "mean_iqr_cleaned", "n")
GROWTH_FILE = "vocabulary_growth.tsv"
DISTANCES = "semantic_distances.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--perplexity", default=None, help="default: data/perplexity/<condition>/<seed>")
    parser.add_argument("--samples", default=None, help="default: data/samples/<condition>/<seed>")
    parser.add_argument("--out", default=None, help="default: data/collapse/<condition>/<seed>")
    parser.add_argument("--metrics", default=None, help="DVCLive folder (default: metrics/collapse/...)")


def perplexity_summary(records: list[dict[str, Any]], definitions: str) -> dict[str, Any]:
    """mean, median, mean_iqr_cleaned and n (responses with a perplexity) of the per-item perplexities."""
    values = [perplexity(r, definitions) for r in records]
    summary = summarize([v for v in values if v is not None])
    return {key: summary[key] for key in SUMMARY_KEYS}


def condition_seed(settings: Any, condition: str, definitions: str) -> int:
    """The seed of a condition's samples: `collapse.seed`, plus the condition's offset (`collapse.seed_offsets`)
    under the paper's definitions, whose code seeded each output file 42 + its position in its list."""
    return settings.seed + (settings.seed_offsets.get(condition, 0) if definitions == "paper" else 0)


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    perplexity: str | None = None,
    samples: str | None = None,
    out: str | None = None,
    metrics: str | None = None,
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    settings, definitions = params.collapse, params.metric_definitions
    stage = run_stage("collapse", condition, seed, generation)
    run = Run(
        stage,
        {"collapse": settings.model_dump(exclude={"perplexity"}), "metric_definitions": definitions},
    )
    embedder = embedding_model_path(settings.embedding_model, Path(params_file).resolve().parent)
    scored = Path(perplexity or paths.in_generation(paths.perplexity(condition, seed), generation))
    outputs = read_jsonl(
        Path(samples or paths.in_generation(paths.samples(condition, seed), generation)) / paths.RESPONSES,
        required=("id", "response"),
    )
    summary: dict[str, Any] = {
        name: perplexity_summary(
            read_jsonl(scored / f"{name}.jsonl", required=("id", "nll", "n_tokens", "nll_end", "n_end")),
            definitions,
        )
        for name in PERPLEXITIES
    }
    sample_seed = condition_seed(settings, condition, definitions)
    texts = TextSet([r["response"] for r in outputs], settings, embedder, definitions, sample_seed)
    values, growth = diversity_metrics(
        texts.texts, settings, embedder, definitions, sample_seed, text_set=texts
    )
    summary = rounded({**summary, **values})

    from dvclive import Live

    metrics_dir = Path(metrics or paths.in_generation(paths.metrics("collapse", condition, seed), generation))
    with Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(summary)
    write_tsv(metrics_dir / GROWTH_FILE, GROWTH_COLUMNS, growth)
    out_dir = Path(out or paths.in_generation(paths.collapse(condition, seed), generation))
    distances = (
        pairwise_distance_sample(texts.embeddings, settings.semantic_test_pairs, sample_seed)
        if texts.embeddings is not None
        else []
    )
    write_json(out_dir / DISTANCES, {"sentences": len(texts.sentences), "distances": distances})
    run.write(
        out_dir,
        condition=condition,
        seed=seed,
        sample_seed=sample_seed,
        embedding_model=embedder_provenance(settings.embedding_model),
    )
    print(
        f"{stage}: own-output perplexity (median) {summary[PERPLEXITIES[0]]['median']}, "
        f"human-text perplexity (median) {summary[PERPLEXITIES[1]]['median']}, "
        f"lexical diversity (aggregated) {values['lexical_diversity_aggregated']} ({definitions} definitions) "
        f"-> {metrics_dir}"
    )
