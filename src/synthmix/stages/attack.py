"""attack@<condition>-<seed>: the condition's model answers every red-team prompt; resumable.

Reads the prompt sets that the redteam stage wrote (``<redteam>/{harmful,jailbreak,benign}.jsonl``, those
present) and answers them with the target's system prompt and decoding settings (``target.generation``;
``robustness.attack.max_new_tokens`` may override the length), through the same resumable generation as
sample@<condition>. Writes ``<out>/responses.jsonl``: one record per prompt with ``id`` =
``<prompt set>/<prompt id>``, ``prompt_id``, ``prompt_set``, ``category``, the ``prompt`` text (and for
jailbreak items ``template_id``, ``harmful_id``, ``harmful_prompt``), plus the usual generation fields.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.config import PROMPT_SETS, Params, TargetGeneration, load_run_params, run_stage
from synthmix.generation import condition_answers
from synthmix.io import DataError, read_jsonl
from synthmix.prompts import chat_messages
from synthmix.provenance import Run
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "the condition's model answers the red-team prompts"

# Fields of a red-team record carried into the response record (besides id, prompt and category).
CARRIED = ("template_id", "harmful_id", "harmful_prompt", "topic")


def load_prompt_sets(redteam: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The prompt sets present in the redteam folder, in the order harmful, jailbreak, benign."""
    redteam = Path(redteam)
    sets = {
        name: read_jsonl(redteam / f"{name}.jsonl", required=("id", "prompt", "category"))
        for name in PROMPT_SETS
        if (redteam / f"{name}.jsonl").is_file()
    }
    if not sets:
        raise DataError(
            f"{redteam}: no prompt set found (expected {', '.join(f'{n}.jsonl' for n in PROMPT_SETS)}); "
            "run `dvc repro redteam`"
        )
    return sets


def attack_requests(sets: dict[str, list[dict[str, Any]]], system_prompt: str | None) -> list[dict[str, Any]]:
    """One chat request per red-team prompt; ids are ``<prompt set>/<prompt id>`` so sets never collide."""
    requests = []
    for name, records in sets.items():
        for record in records:
            meta = {"prompt_id": record["id"], "prompt_set": name, "category": record["category"]}
            meta.update({key: record[key] for key in CARRIED if key in record})
            meta["prompt"] = record["prompt"]
            requests.append(
                {
                    "id": f"{name}/{record['id']}",
                    "messages": chat_messages(record["prompt"], system_prompt),
                    "meta": meta,
                }
            )
    return requests


def attack_generation(params: Params) -> TargetGeneration:
    """target.generation with robustness.attack.max_new_tokens applied when given."""
    override = params.robustness.attack.max_new_tokens
    generation = params.target.generation
    return generation if override is None else generation.model_copy(update={"max_new_tokens": override})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: data/attacks/<condition>/<seed>")
    parser.add_argument("--adapter", default=None, help="default: models/adapters/<condition>/<seed>")
    parser.add_argument("--redteam", default=str(paths.redteam()))
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    adapter: str | None = None,
    redteam: str = str(paths.redteam()),
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    out = out or str(paths.in_generation(paths.attacks(condition, seed), generation))
    adapter = adapter or str(paths.in_generation(paths.adapter(condition, seed), generation))
    params = load_run_params(params_file, condition, seed, generation)
    target = params.target
    sampling = attack_generation(params)
    run = Run(
        run_stage("attack", condition, seed, generation),
        {
            "target": target.model_dump(),
            "robustness": {"attack": params.robustness.attack.model_dump()},
            "seed": seed,
        },
    )
    requests = attack_requests(load_prompt_sets(redteam), target.system_prompt)
    counts = condition_answers(
        run, condition, seed, requests, out, Path(models) / target.model, adapter, sampling
    )
    print(f"{run.stage}: {counts['records']} red-team responses -> {out}")
