"""Models answering prompts, resumably: the service behind generate@, sample@, attack@ and the text judge.

`answer_all` sends requests to the chosen backend's `generate` through the one resumable runner
(`synthmix.runner`) and writes `responses.jsonl`; every record carries the request's metadata, the model
revision, the backend, the sampling settings and the seed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.backends import load_backend, require
from synthmix.config import Generation
from synthmix.io import fingerprint, read_jsonl
from synthmix.modelstore import adapter_fingerprint, model_revision
from synthmix.runner import run_resumable

SPLITS = ("train", "test")


def load_prompts(prepared: str | Path, splits: Sequence[str] = SPLITS) -> list[dict[str, Any]]:
    """The prepared prompts of `splits`, each record with its `split`."""
    items = []
    for split in splits:
        for record in read_jsonl(Path(prepared) / f"{split}.jsonl", required=("id", "prompt", "category")):
            items.append({**record, "split": split})
    return items


def target_requests(items: Sequence[Mapping[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """Chat requests of the target (a condition's model) for prepared prompts (`load_prompts` items)."""
    from synthmix.prompts import chat_messages

    return [
        {
            "id": item["id"],
            "messages": chat_messages(item["prompt"], system_prompt),
            "meta": {"prompt_id": item["id"], "split": item["split"], "category": item["category"]},
        }
        for item in items
    ]


def answer_all(
    requests: list[dict[str, Any]],
    out_dir: Path,
    model_dir: Path,
    generation: Generation,
    extra: Mapping[str, Any],
    adapter_dir: Path | None = None,
    desc: str = "generate",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Answer every request; write `<out_dir>/responses.jsonl`. Returns (counts, volatile facts).

    `extra` is merged into every record (source or condition name); each request's `meta` too. The counts
    depend only on the records (they go to the manifest); the volatile facts (records resumed from a
    checkpoint) go to the run log.
    """
    revision = model_revision(model_dir)
    settings = generation.model_dump()
    # Settings that change the text, not how requests are sent (concurrency, retries), decide the checkpoint.
    key = fingerprint(
        requests, generation.output_settings(), revision, adapter_fingerprint(adapter_dir), dict(extra)
    )
    by_id = {r["id"]: r for r in requests}

    def compute(items: Sequence[Mapping[str, Any]], done: frozenset[str]):
        backend = load_backend(generation.backend, str(model_dir), str(adapter_dir) if adapter_dir else None)
        for result in require(backend, "generate")(list(items), generation, done):
            if result.get("served"):  # an API's answer is a fact of its day
                result = {**result, "served_on": time.strftime("%Y-%m-%d", time.gmtime())}
            yield {
                **by_id[result["id"]].get("meta", {}),
                **extra,
                **result,
                "model_revision": revision,
                "backend": generation.backend,
                "sampling": {k: settings[k] for k in ("temperature", "top_p", "max_new_tokens")},
                "seed": generation.seed,
            }

    finished = run_resumable(requests, out_dir / paths.RESPONSES, key, compute, desc=desc, unit="prompt")
    records = finished.records
    counts = {
        "records": len(records),
        "stopped_by_length": sum(r["finish_reason"] == "length" for r in records),
        "empty_responses": sum(not r["response"] for r in records),
        "generated_tokens": sum(r["n_tokens"] for r in records),
        "truncated_prompts": sum(bool(r.get("prompt_truncated")) for r in records),
        "refused_by_provider": sum(r["finish_reason"] in ("content_filter", "refused") for r in records),
    }
    served = sorted({json.dumps(r["served"], sort_keys=True) for r in records if r.get("served")})
    if served:  # an API: what it said it served (model ids, system fingerprints), and when
        counts["served"] = [json.loads(item) for item in served]
        counts["served_on"] = sorted({r["served_on"] for r in records if r.get("served_on")})
    return counts, {"resumed": finished.resumed}


def condition_answers(
    run: Any,
    condition: str,
    seed: int,
    requests: list[dict[str, Any]],
    out: str | Path,
    model_dir: Path,
    adapter: str | Path,
    generation: Any,
    facts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One run's model (base + adapter, or base) answers `requests` into `out`, sampling with the run seed;
    writes the manifest (with `facts` added). `run` is the stage's `provenance.Run` (its stage name, e.g.
    sample@human-42)."""
    from synthmix.modelstore import adapter_or_none

    adapter_dir = adapter_or_none(adapter)
    counts, volatile = answer_all(
        requests,
        Path(out),
        model_dir,
        generation.for_seed(seed),
        extra={"condition": condition},  # each record also carries the seed it was sampled with
        adapter_dir=adapter_dir,
        desc=run.stage,
    )
    run.write(
        out,
        volatile,
        condition=condition,
        seed=seed,
        base_model=model_revision(model_dir),
        adapter=adapter_fingerprint(adapter_dir),
        counts=counts,
        **(facts or {}),
    )
    return counts
