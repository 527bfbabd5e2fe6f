"""generate@<source>: one source model answers the train and test prompts; resumable.

Writes `<out>/responses.jsonl` (one record per prompt, in prompt order) and `<out>/manifest.json`.
Finished records are kept in `<out>.partial.jsonl` beside the output folder until every prompt is answered,
so a killed run continues where it stopped when rerun, without duplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.backends import load_backend
from synthmix.config import Generation, load_params
from synthmix.io import ResumableRecords, fingerprint, read_jsonl
from synthmix.modelstore import model_revision
from synthmix.prompts import source_request
from synthmix.provenance import Run

RESPONSES = "responses.jsonl"
SPLITS = ("train", "test")


def load_prompts(prepared: str | Path, splits: tuple[str, ...] = SPLITS) -> list[dict[str, Any]]:
    items = []
    for split in splits:
        for record in read_jsonl(Path(prepared) / f"{split}.jsonl", required=("id", "prompt", "category")):
            items.append({**record, "split": split})
    return items


def answer_all(
    requests: list[dict[str, Any]],
    out_dir: Path,
    model_dir: Path,
    generation: Generation,
    extra: dict[str, Any],
    adapter_dir: Path | None = None,
    desc: str = "generate",
) -> dict[str, Any]:
    """Answer every request with checkpointing; write `responses.jsonl`; return counts for the manifest.

    `extra` is merged into every record (source or condition name, prompt metadata is added per item).
    """
    revision = model_revision(model_dir)
    settings = generation.model_dump()
    # Settings that change the text, not how requests are sent (concurrency, retries), decide the checkpoint.
    key = fingerprint(requests, generation.output_settings(), revision, str(adapter_dir), extra)
    partial = out_dir.parent / f".{out_dir.name}.partial.jsonl"
    by_id = {r["id"]: r for r in requests}
    with ResumableRecords(out_dir / RESPONSES, key, partial=partial) as records:
        if records.resumed:
            print(f"{desc}: resuming, {records.resumed} of {len(requests)} already answered")
        if len(records.done) < len(requests):
            backend = load_backend(
                generation.backend, str(model_dir), str(adapter_dir) if adapter_dir else None
            )
            for result in backend.generate(requests, generation, skip=records.done, desc=desc):
                meta = by_id[result["id"]].get("meta", {})
                records.add(
                    {
                        **meta,
                        **extra,
                        **result,
                        "model_revision": revision,
                        "backend": generation.backend,
                        "sampling": {k: settings[k] for k in ("temperature", "top_p", "max_new_tokens")},
                        "seed": generation.seed,
                    }
                )
            truncated = getattr(backend, "truncated_prompts", 0)
        else:
            truncated = 0
        records.publish([r["id"] for r in requests])
        finished = list(records.records.values())
    return {
        "records": len(finished),
        "resumed": records.resumed,
        "truncated_prompts": truncated,
        "stopped_by_length": sum(r["finish_reason"] == "length" for r in finished),
        "empty_responses": sum(not r["response"] for r in finished),
        "generated_tokens": sum(r["n_tokens"] for r in finished),
    }


def main(
    source: str,
    out: str,
    prepared: str = "data/prepared",
    models: str = "models/base",
    params_file: str = "params.yaml",
) -> None:
    params = load_params(params_file)
    if source not in params.sources:
        raise SystemExit(
            f"{params_file}: sources.{source} is not defined (defined: {', '.join(params.sources)})"
        )
    spec = params.sources[source]
    run = Run(f"generate@{source}", {"sources": {source: spec.model_dump()}})
    requests = []
    for item in load_prompts(prepared):
        request = source_request(item["id"], item["prompt"], spec)
        request["meta"] = {"prompt_id": item["id"], "split": item["split"], "category": item["category"]}
        requests.append(request)
    out_dir = Path(out)
    counts = answer_all(
        requests,
        out_dir,
        Path(models) / spec.model,
        spec.generation,
        extra={"source": source, "model": spec.model},
        desc=f"generate@{source}",
    )
    run.write(out_dir, model_revision=model_revision(Path(models) / spec.model), counts=counts)
    print(
        f"generate@{source}: {counts['records']} responses ({counts['generated_tokens']} tokens) -> {out_dir}"
    )
