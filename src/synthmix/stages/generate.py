"""generate@<source>: one source model answers the train and test prompts; resumable.

Writes `<out>/responses.jsonl` (one record per prompt, in prompt order) and `<out>/manifest.json`. Finished
records wait in a checkpoint outside the output (`synthmix.runner`), so a killed run continues where it
stopped when rerun, without duplicates.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import ParamsError, load_params
from synthmix.generation import answer_all, load_prompts
from synthmix.modelstore import model_revision
from synthmix.prompts import source_request
from synthmix.provenance import Run

HELP = "one source answers the prepared prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a key of `sources` in params")
    parser.add_argument("--out", default=None, help="default: data/generated/<source>")
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    source: str,
    out: str | None = None,
    prepared: str = str(paths.prepared()),
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_params(params_file)
    if source not in params.sources:
        raise ParamsError(
            f"{params_file}: sources.{source} is not defined (defined: {', '.join(params.sources)})"
        )
    spec = params.sources[source]
    run = Run(f"generate@{source}", {"sources": {source: spec.model_dump()}})
    requests = []
    for item in load_prompts(prepared):
        request = source_request(item["id"], item["prompt"], spec)
        request["meta"] = {"prompt_id": item["id"], "split": item["split"], "category": item["category"]}
        requests.append(request)
    out_dir = Path(out) if out else paths.generated(source)
    model_dir = Path(models) / spec.model
    counts, volatile = answer_all(
        requests,
        out_dir,
        model_dir,
        spec.generation,
        extra={"source": source, "model": spec.model},
        desc=run.stage,
    )
    run.write(out_dir, volatile, model_revision=model_revision(model_dir), counts=counts)
    print(f"{run.stage}: {counts['records']} responses ({counts['generated_tokens']} tokens) -> {out_dir}")
