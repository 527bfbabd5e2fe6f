"""sample@<condition>-<seed>: the condition's model (base, or base + its adapter) answers the test prompts.

It samples with the run seed (target.generation with seed = the run's). Same record format and resumability
as generate@<source> (synthmix.generation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import load_run_params, run_stage
from synthmix.generation import condition_answers, load_prompts, target_requests
from synthmix.provenance import Run
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "the (tuned) target answers the test prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: data/samples/<condition>/<seed>")
    parser.add_argument("--adapter", default=None, help="default: models/adapters/<condition>/<seed>")
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    adapter: str | None = None,
    prepared: str = str(paths.prepared()),
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    target = params.target
    run = Run(run_stage("sample", condition, seed, generation), {"target": target.model_dump(), "seed": seed})
    requests = target_requests(load_prompts(prepared, splits=("test",)), target.system_prompt)
    out = out or str(paths.in_generation(paths.samples(condition, seed), generation))
    counts = condition_answers(
        run,
        condition,
        seed,
        requests,
        out,
        Path(models) / target.model,
        adapter or paths.in_generation(paths.adapter(condition, seed), generation),
        target.generation,
    )
    print(f"{run.stage}: {counts['records']} test responses -> {out}")
