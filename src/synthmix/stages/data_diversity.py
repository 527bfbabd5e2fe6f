"""data_diversity: the diversity of each training-data source and of the human data (the paper's
"training-data diversity"), so that a condition's output diversity can be read against its data's.

For each source in params (`data/generated/<source>`, train split) and for the human reference responses
(`data/prepared/train.jsonl`), computes the same metrics as collapse@<condition> (`collapse.diversity_metrics`,
same `collapse` settings) and writes one block per data set to `<metrics>/metrics.json` (DVCLive), keyed by
the source name and `human`; each data set's vocabulary growth curve goes to
`<out>/vocabulary_growth/<name>.tsv` and the provenance to `<out>/manifest.json`. Not per condition: it runs
once, whatever the mixes.
"""

from __future__ import annotations

from pathlib import Path

from synthmix.config import HUMAN, load_params
from synthmix.io import DataError, read_jsonl
from synthmix.provenance import Run
from synthmix.stages.collapse import (
    diversity_metrics,
    embedder_provenance,
    embedding_model_path,
    write_growth,
)


def main(
    out: str,
    metrics: str,
    generated: str = "data/generated",
    prepared: str = "data/prepared",
    params_file: str = "params.yaml",
) -> None:
    params = load_params(params_file)
    settings = params.collapse
    embedder = embedding_model_path(settings.embedding_model, Path(params_file).resolve().parent)
    run = Run("data_diversity", {"collapse": settings.model_dump(), "sources": list(params.sources)})

    texts: dict[str, list[str]] = {}
    for source in params.sources:
        records = read_jsonl(Path(generated) / source / "responses.jsonl", required=("split", "response"))
        texts[source] = [r["response"] for r in records if r["split"] == "train"]
        if not texts[source]:
            raise DataError(
                f"{generated}/{source}/responses.jsonl: no train-split responses; rerun generate@{source}"
            )
    human = read_jsonl(Path(prepared) / "train.jsonl", required=("response",))
    texts[HUMAN] = [r["response"] for r in human]

    out_dir = Path(out)
    blocks = {}
    for name, responses in texts.items():
        blocks[name], growth = diversity_metrics(responses, settings, embedder)
        write_growth(out_dir / "vocabulary_growth" / f"{name}.tsv", growth)

    from dvclive import Live

    metrics_dir = Path(metrics)
    with Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) as live:
        live.summary.update(blocks)
    run.write(out_dir, embedding_model=embedder_provenance(settings.embedding_model))
    for name, block in blocks.items():
        print(
            f"data_diversity: {name}: {block['n_responses']} responses, lexical diversity (aggregated) "
            f"{block['lexical_diversity_aggregated']}, semantic diversity {block.get('semantic_diversity')}"
        )
