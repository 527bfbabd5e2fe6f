"""data_diversity: the diversity of each training-data source and of the human data (the paper's
"training-data diversity"), so that a condition's output diversity can be read against its data's.

For each source in params (`data/generated/<source>`, train split) and for the human reference responses
(`data/prepared/train.jsonl`), computes every registered diversity metric (`metrics.diversity`, the same
`collapse` settings as collapse@) and writes one block per data set to `<metrics>/metrics.json` (DVCLive),
keyed by the source name and `human`; each data set's vocabulary growth curve goes to
`<out>/vocabulary_growth/<name>.tsv` and the provenance to `<out>/manifest.json`. Not per condition: it runs
once, whatever the mixes. No LLM is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import HUMAN, load_params
from synthmix.io import DataError, read_jsonl, write_tsv
from synthmix.metrics.diversity import GROWTH_COLUMNS, diversity_metrics
from synthmix.metrics.embeddings import embedder_provenance, embedding_model_path
from synthmix.provenance import Run, rounded

HELP = "diversity of each source's and the human train data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.data_diversity()), help="growth curves and the manifest")
    parser.add_argument("--metrics", default=str(paths.metrics("data_diversity")), help="DVCLive folder")
    parser.add_argument(
        "--generated", default=str(paths.DATA / "generated"), help="folder of the generations"
    )
    parser.add_argument("--prepared", default=str(paths.prepared()))


def main(
    *,
    out: str = str(paths.data_diversity()),
    metrics: str = str(paths.metrics("data_diversity")),
    generated: str = str(paths.DATA / "generated"),
    prepared: str = str(paths.prepared()),
    params_file: str = "params.yaml",
) -> None:
    params = load_params(params_file)
    settings = params.collapse
    embedder = embedding_model_path(settings.embedding_model, Path(params_file).resolve().parent)
    definitions = params.metric_definitions
    run = Run(
        "data_diversity",
        {
            "collapse": settings.model_dump(exclude={"perplexity"}),
            "sources": list(params.sources),
            "metric_definitions": definitions,
        },
    )
    texts: dict[str, list[str]] = {}
    for source in params.sources:
        path = Path(generated) / source / paths.RESPONSES
        records = read_jsonl(path, required=("split", "response"))
        texts[source] = [r["response"] for r in records if r["split"] == "train"]
        if not texts[source]:
            raise DataError(f"{path}: no train-split responses; rerun generate@{source}")
    human = read_jsonl(Path(prepared) / "train.jsonl", required=("response",))
    texts[HUMAN] = [r["response"] for r in human]

    out_dir = Path(out)
    blocks = {}
    for name, responses in texts.items():
        values, growth = diversity_metrics(responses, settings, embedder, definitions)
        blocks[name] = rounded(values)
        write_tsv(out_dir / "vocabulary_growth" / f"{name}.tsv", GROWTH_COLUMNS, growth)

    from dvclive import Live

    with Live(str(metrics), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(blocks)
    run.write(out_dir, embedding_model=embedder_provenance(settings.embedding_model))
    for name, block in blocks.items():
        print(
            f"data_diversity: {name}: {block['n_responses']} responses, lexical diversity (aggregated) "
            f"{block['lexical_diversity_aggregated']}, semantic diversity {block.get('semantic_diversity')}"
        )
