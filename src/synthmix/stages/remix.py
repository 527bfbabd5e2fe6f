"""remix_g<k>@<condition>-<seed>: generation k's training set of the run (no model; synthmix.recursion).

Generation k's own chunk: the prompts of the condition's mix (data/mixes/<condition>), each with the answer of
generation k-1's model that stands for its source (regenerate_g<k>: the condition's own model, or with
recursion.multi_source 'lineages' the model of each source's single-source condition), except a
`human_fraction` share and the human-sourced prompts, which keep the human response. The data regime then
decides the training set: this chunk (replace), every chunk so far (accumulate) or every chunk so far
subsampled to the mix's size (accumulate-subsample). Writes `<out>/chunk.jsonl`, `<out>/train.jsonl` (what
finetune_g<k> trains on) and a manifest naming each producer with the adapter that wrote its answers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths, recursion
from synthmix.config import HUMAN, Params, load_run_params, producer_name, run_stage
from synthmix.io import DataError, read_json, read_jsonl, write_jsonl
from synthmix.provenance import Run
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "a later generation: build the run's training set from the previous generation's answers"
CHUNK = "chunk.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: generations/<k>/data/mixes/<condition>/<seed>")
    parser.add_argument("--prepared", default=str(paths.prepared()))


def main(
    *,
    condition: str,
    seed: int,
    generation: int,
    out: str | None = None,
    prepared: str = str(paths.prepared()),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    regime, fraction = params.recursion_for(condition)
    stage = run_stage("remix", condition, seed, generation)
    run = Run(
        stage,
        {
            "recursion": {
                "regime": regime,
                "human_fraction": fraction,
                "multi_source": params.recursion.multi_source,
            },
            "mix": params.mix.model_dump(),
            "conditions": {condition: params.conditions[condition].model_dump()},
        },
    )
    first = read_jsonl(paths.mix(condition) / "train.jsonl", required=recursion.FIRST_FIELDS)
    human = {r["id"]: r for r in read_jsonl(Path(prepared) / "train.jsonl", required=("id", "response"))}
    chunks = [
        recursion.generation_chunk(first, human, generation=1, human_fraction=0.0, seed=params.mix.seed)
    ]
    for earlier in range(2, generation):
        chunks.append(read_jsonl(paths.generation_mix(condition, seed, earlier) / CHUNK))
    regenerated, producers, answered_by = _answers(params, condition, seed, generation, first)
    chunks.append(
        recursion.generation_chunk(
            first,
            human,
            generation=generation,
            human_fraction=fraction,
            seed=params.mix.seed,
            regenerated=regenerated,
            producer=producers,
        )
    )
    training = recursion.build_generation(chunks, regime, params.mix.seed)
    out_dir = Path(out or paths.generation_mix(condition, seed, generation))
    write_jsonl(out_dir / CHUNK, chunks[-1])
    write_jsonl(out_dir / "train.jsonl", training)
    by_producer: dict[str, int] = {}
    for record in chunks[-1]:
        by_producer[record["producer"]] = by_producer.get(record["producer"], 0) + 1
    run.write(
        out_dir,
        condition=condition,
        seed=seed,
        generation=generation,
        regime=regime,
        human_fraction=fraction,
        chunk=dict(sorted(by_producer.items())),
        producers=answered_by,
        records=len(training),
        expected_records=recursion.expected_size(regime, len(first), generation),
    )
    print(
        f"{stage}: {len(training)} records ({regime}; this generation's chunk: {dict(sorted(by_producer.items()))}) "
        f"-> {out_dir}"
    )


def _answers(params: Params, condition: str, seed: int, generation: int, first: list[dict]) -> tuple:
    """Generation k-1's answers for the condition's prompts: {prompt id: record}, the producer of each source
    and, for the manifest, the adapter behind each producer (read from the regenerate manifests)."""
    sources = sorted({r["source"] for r in first if r["source"] != HUMAN})
    lineage_mode = params.recursion.multi_source == "lineages" and params.lineage_sources(condition)
    writer = {s: (params.lineage_of(s) if lineage_mode else condition) for s in sources}
    answers: dict[str, dict[str, dict]] = {}
    answered_by: dict[str, dict] = {}
    for who in sorted(set(writer.values())):
        folder = paths.regenerated(who, seed, generation)
        manifest = read_json(folder / paths.MANIFEST)
        if manifest.get("answered_by") != producer_name(who, generation - 1):
            raise DataError(
                f"{folder}: these are not the answers of {producer_name(who, generation - 1)} "
                f"(manifest says {manifest.get('answered_by')!r}); rerun {run_stage('regenerate', who, seed, generation)}"
            )
        answers[who] = {
            r["prompt_id"]: r
            for r in read_jsonl(folder / paths.RESPONSES, required=("prompt_id", "response"))
        }
        answered_by[producer_name(who, generation - 1)] = {
            "condition": who,
            "generation": generation - 1,
            "adapter": manifest.get("adapter"),
        }
    regenerated = {
        r["id"]: answers[writer[r["source"]]][r["id"]]
        for r in first
        if r["source"] in writer and r["id"] in answers[writer[r["source"]]]
    }
    producers = {s: producer_name(w, generation - 1) for s, w in writer.items()}
    producers[HUMAN] = HUMAN
    return regenerated, producers, answered_by
