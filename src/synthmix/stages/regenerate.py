"""regenerate_g<k>@<condition>-<seed>: generation k-1's model of the run answers the train prompts, the raw
material of generation k's training data (the model-collapse loop, synthmix.recursion).

The model is the target with the run's generation k-1 adapter (models/adapters/<condition>/<seed> for
k = 2), sampling with the run seed, answering every prompt of data/prepared/train.jsonl (so a multi-source
condition can take its shares from these answers). A multi-source condition with recursion.multi_source
'lineages' takes its shares from its sources' single-source conditions instead: its stage writes no answers
and loads no model. Same records and resumability as sample@ (synthmix.generation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import load_run_params, producer_name, run_stage
from synthmix.generation import condition_answers, load_prompts, target_requests
from synthmix.io import write_jsonl
from synthmix.provenance import Run
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "a later generation: the previous generation's model answers the train prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--adapter", required=True, help="the run's adapter of the previous generation")
    parser.add_argument(
        "--out", default=None, help="default: generations/<k>/data/regenerated/<condition>/<seed>"
    )
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    condition: str,
    seed: int,
    generation: int,
    adapter: str,
    out: str | None = None,
    prepared: str = str(paths.prepared()),
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    target = params.target
    stage = run_stage("regenerate", condition, seed, generation)
    lineages = params.recursion.multi_source == "lineages" and params.lineage_sources(condition)
    run = Run(
        stage,
        {
            "target": target.model_dump(),
            "seed": seed,
            "recursion": {"multi_source": params.recursion.multi_source},
        },
    )
    out_dir = Path(out or paths.regenerated(condition, seed, generation))
    if lineages:
        write_jsonl(out_dir / paths.RESPONSES, [])
        producers = {s: params.lineage_of(s) for s in params.lineage_sources(condition)}
        run.write(out_dir, condition=condition, seed=seed, generation=generation, lineages=producers)
        print(f"{stage}: the shares come from the sources' own lines ({producers}); nothing to answer here")
        return
    requests = target_requests(load_prompts(prepared, splits=("train",)), target.system_prompt)
    counts = condition_answers(
        run,
        condition,
        seed,
        requests,
        out_dir,
        Path(models) / target.model,
        adapter,
        target.generation,
        facts={"generation": generation, "answered_by": producer_name(condition, generation - 1)},
    )
    print(f"{stage}: {counts['records']} train prompts answered by generation {generation - 1} -> {out_dir}")
