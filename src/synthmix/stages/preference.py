"""preference@<condition>-<seed>: the run's model judges every pair of candidates in both orders, and each
candidate alone (model time; Schaffelder & Gatt, Experiment 3).

Reads the candidates (data/candidates/candidates.jsonl) and writes `<out>/judgements.jsonl` (one record per
item, pair and order: the log-probabilities of the judge's first token for "A" and "B"), `<out>/absolute.jsonl`
(one per item and source: for "1".."5") and `<out>/manifest.json`. Resumable. The verdicts and metrics are
preference_metrics@'s.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.backends import load_backend, require
from synthmix.config import Generation, load_run_params, run_stage
from synthmix.io import fingerprint, read_json, read_jsonl
from synthmix.modelstore import adapter_fingerprint, adapter_or_none, model_revision
from synthmix.preference import CHOICES, RATINGS, TOP_N, absolute_requests, pairwise_requests
from synthmix.prompts import answer_forms
from synthmix.provenance import Run
from synthmix.runner import Finished, run_resumable
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "the run's model judges every pair of candidates (self-preference)"
JUDGEMENTS = "judgements.jsonl"
ABSOLUTE = "absolute.jsonl"
# the settings that shape the judge's input (self_source and gold labels change only the metrics)
JUDGING = {"text_label", "pairwise_system_prompt", "absolute_scores", "absolute_system_prompt"}


def judge_all(
    requests: list[dict[str, Any]],
    output: Path,
    options: Sequence[str],
    model_dir: Path,
    adapter_dir: Path | None,
    identity: Sequence[Any],
    keep: Sequence[str],
    desc: str,
    generation: Generation,
) -> Finished:
    """The judge's first-token log-probabilities for every request, resumably, into `output` (JSONL).

    `options` are the answer labels (A/B, or the ratings 1-5), asked for bare and space-prefixed; `keep`
    names the request fields copied into each record; `identity` (model revision, adapter hash) keys the
    checkpoint with the requests. The judge runs on the condition's engine (`generation.backend` of the target:
    any backend that returns log-probabilities)."""
    key = fingerprint(
        list(identity), [(r["id"], r["messages"]) for r in requests], list(options), TOP_N, generation.backend
    )
    by_id = {r["id"]: r for r in requests}
    tokens = answer_forms(options)

    def compute(todo: Sequence[Mapping[str, Any]], done: frozenset[str]):
        model = load_backend(generation.backend, str(model_dir), str(adapter_dir) if adapter_dir else None)
        asks = [{"id": r["id"], "messages": r["messages"], "tokens": tokens, "top_n": TOP_N} for r in todo]
        for result in require(model, "next_token_logprobs")(asks, done, generation):
            request = by_id[result["id"]]
            yield {
                "id": result["id"],
                **{k: request[k] for k in keep},
                "n_prompt_tokens": result["n_prompt_tokens"],
                "logprobs": result["tokens"],
                "top": result["top"],
            }

    return run_resumable(requests, output, key, compute, desc=desc, unit="judgement")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: data/preference/<condition>/<seed>")
    parser.add_argument("--candidates", default=str(paths.DATA / "candidates"), help="the candidates folder")
    parser.add_argument("--adapter", default=None, help="default: models/adapters/<condition>/<seed>")
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    candidates: str = str(paths.DATA / "candidates"),
    adapter: str | None = None,
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    settings = params.preference
    run = Run(
        run_stage("preference", condition, seed, generation),
        {"preference": settings.model_dump(include=JUDGING), "target": {"model": params.target.model}},
    )
    chosen = read_jsonl(Path(candidates) / "candidates.jsonl", required=("item", "texts"))
    sources = read_json(Path(candidates) / paths.MANIFEST)["sources"]
    model_dir = Path(models) / params.target.model
    adapter_dir = adapter_or_none(adapter or paths.in_generation(paths.adapter(condition, seed), generation))
    identity = (model_revision(model_dir), adapter_fingerprint(adapter_dir))
    out_dir = Path(out or paths.in_generation(paths.preference(condition, seed), generation))

    judge_generation = params.target.generation.for_seed(seed)  # the condition's model, on its engine
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
        judge_generation,
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
            judge_generation,
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
