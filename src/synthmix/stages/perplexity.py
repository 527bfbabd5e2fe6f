"""perplexity@<condition>-<seed>: the model passes of distribution collapse (Schaffelder & Gatt, §4.1 a).

Scores two sets of responses, response tokens only (the prompt in the target's chat template and system
prompt), with the backend primitive `loglikelihood` through the one resumable runner:

- `own_output_perplexity`: the condition's own test responses (data/samples/<condition>/<seed>) under the
  vanilla base model (no adapter), the paper's PPL-v1;
- `human_text_perplexity`: the human reference responses of the test set under the condition's model (base +
  adapter), the paper's PPL-v2 ("modelling of human text").

Writes `<out>/{own_output_perplexity,human_text_perplexity}.jsonl` (one record per response: the summed NLL
of the response's tokens and, apart, of the chat template's end-of-turn tokens, so that either definition of
`metrics.perplexity.perplexity` can be read from it) and `<out>/manifest.json`. The summaries, diversity and the rest are collapse@'s: changing them
never reruns this stage.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.backends import load_backend, require
from synthmix.config import PerplexitySettings, load_run_params, run_stage
from synthmix.io import DataError, fingerprint, read_jsonl
from synthmix.modelstore import adapter_fingerprint, adapter_or_none, model_revision
from synthmix.prompts import chat_messages
from synthmix.provenance import Run
from synthmix.runner import run_resumable
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "perplexity of a run's outputs (base model) and of the human text (the run's model)"
PERPLEXITIES = ("own_output_perplexity", "human_text_perplexity")
BACKEND = "transformers"  # the engine of the perplexity passes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: data/perplexity/<condition>/<seed>")
    parser.add_argument("--samples", default=None, help="default: data/samples/<condition>/<seed>")
    parser.add_argument("--adapter", default=None, help="default: models/adapters/<condition>/<seed>")
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def score(
    name: str,
    items: Sequence[Mapping[str, Any]],
    model_dir: Path,
    adapter_dir: Path | None,
    out_dir: Path,
    settings: PerplexitySettings,
    desc: str,
    loaded: Any = None,
) -> tuple[list[dict[str, Any]], int, Any]:
    """Score `items` ({id, messages, response, ...}) into `<out_dir>/<name>.jsonl`, resumably.

    `loaded` is a backend already loaded for this model and adapter; the one used (or None when every item
    was already done) is returned for reuse, with the records and how many were resumed."""
    key = fingerprint(
        name, list(items), model_revision(model_dir), adapter_fingerprint(adapter_dir), settings.model_dump()
    )
    meta = {
        item["id"]: {k: v for k, v in item.items() if k not in ("messages", "response")} for item in items
    }
    state = {"backend": loaded}

    def compute(todo: Sequence[Mapping[str, Any]], done: frozenset[str]):
        if state["backend"] is None:
            state["backend"] = load_backend(
                BACKEND, str(model_dir), str(adapter_dir) if adapter_dir else None
            )
        requests = [{**item, "max_length": settings.max_length} for item in todo]
        loglikelihood = require(state["backend"], "loglikelihood")
        for result in loglikelihood(requests, done, batch_size=settings.batch_size):
            yield {**meta[result["id"]], **result}

    finished = run_resumable(
        items, out_dir / f"{name}.jsonl", key, compute, desc=f"{desc} {name}", unit="response"
    )
    return finished.records, finished.resumed, state["backend"]


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    samples: str | None = None,
    adapter: str | None = None,
    prepared: str = str(paths.prepared()),
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    settings, target = params.collapse.perplexity, params.target
    run = Run(
        run_stage("perplexity", condition, seed, generation),
        {
            "collapse": {"perplexity": settings.model_dump()},
            "target": {"model": target.model, "system_prompt": target.system_prompt},
        },
    )
    model_dir = Path(models) / target.model
    adapter_dir = adapter_or_none(adapter or paths.in_generation(paths.adapter(condition, seed), generation))
    out_dir = Path(out or paths.in_generation(paths.perplexity(condition, seed), generation))
    samples_dir = Path(samples or paths.in_generation(paths.samples(condition, seed), generation))

    test = read_jsonl(Path(prepared) / "test.jsonl", required=("id", "prompt", "response"))
    prompts = {item["id"]: item["prompt"] for item in test}
    outputs = read_jsonl(samples_dir / paths.RESPONSES, required=("id", "prompt_id", "response"))
    unknown = [r["prompt_id"] for r in outputs if r["prompt_id"] not in prompts]
    if unknown:
        raise DataError(
            f"{samples_dir / paths.RESPONSES}: {len(unknown)} response(s) answer prompts that are not in "
            f"{prepared}/test.jsonl (e.g. {unknown[:3]}); rerun {run_stage('sample', condition, seed, generation)} after "
            "prepare"
        )

    def item(item_id: str, prompt_id: str, response: str, category: Any) -> dict[str, Any]:
        messages = chat_messages(prompts[prompt_id], target.system_prompt)
        return {
            "id": item_id,
            "prompt_id": prompt_id,
            "category": category,
            "messages": messages,
            "response": response,
        }

    own_items = [item(r["id"], r["prompt_id"], r["response"], r.get("category")) for r in outputs]
    human_items = [item(r["id"], r["id"], r["response"], r.get("category")) for r in test]

    # Vanilla base model for the condition's outputs; the condition's model for the human text. The untuned
    # condition uses the base model for both, so it is loaded once; a tuned one frees the base model first
    # (two copies of a large model need not fit in memory).
    own, resumed_own, base = score(PERPLEXITIES[0], own_items, model_dir, None, out_dir, settings, run.stage)
    if adapter_dir is not None:
        base = None
        gc.collect()
    human, resumed_human, _ = score(
        PERPLEXITIES[1], human_items, model_dir, adapter_dir, out_dir, settings, run.stage, base
    )
    run.write(
        out_dir,
        {"resumed": resumed_own + resumed_human},
        condition=condition,
        seed=seed,
        base_model=model_revision(model_dir),
        adapter=adapter_fingerprint(adapter_dir),
        counts={name: len(records) for name, records in zip(PERPLEXITIES, (own, human), strict=True)},
    )
    print(f"{run.stage}: {len(own)} own outputs and {len(human)} human responses scored -> {out_dir}")
