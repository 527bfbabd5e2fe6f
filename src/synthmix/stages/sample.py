"""sample@<condition>: the condition's model (base, or base + its adapter) answers the test prompts.

Same record format and resumability as generate@<source> (see stages/generate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.config import Generation, load_condition_params
from synthmix.io import read_json
from synthmix.modelstore import model_revision
from synthmix.prompts import chat_messages
from synthmix.provenance import MANIFEST, Run
from synthmix.stages.generate import answer_all, load_prompts


def adapter_or_none(adapter: str | Path) -> Path | None:
    """The adapter folder of a tuned condition; None for the untuned one (its manifest says tuned: false)."""
    adapter = Path(adapter)
    manifest = read_json(adapter / MANIFEST)
    return adapter if manifest.get("tuned") else None


def condition_answers(
    stage: str,
    run: Run,
    requests: list[dict[str, Any]],
    out: str | Path,
    model_dir: Path,
    adapter: str | Path,
    generation: Generation,
) -> dict[str, Any]:
    """A condition's model (base + adapter, or base) answers `requests` into `out`; writes the manifest."""
    condition = stage.split("@", 1)[1]
    adapter_dir = adapter_or_none(adapter)
    counts = answer_all(
        requests,
        Path(out),
        model_dir,
        generation,
        extra={"condition": condition},
        adapter_dir=adapter_dir,
        desc=stage,
    )
    run.write(
        out,
        condition=condition,
        base_model=model_revision(model_dir),
        adapter=str(adapter_dir) if adapter_dir else None,
        counts=counts,
    )
    return counts


def main(
    condition: str,
    out: str,
    adapter: str,
    prepared: str = "data/prepared",
    models: str = "models/base",
    params_file: str = "params.yaml",
) -> None:
    params = load_condition_params(params_file, condition)
    target = params.target
    run = Run(f"sample@{condition}", {"target": target.model_dump()})
    requests = [
        {
            "id": item["id"],
            "messages": chat_messages(item["prompt"], target.system_prompt),
            "meta": {"prompt_id": item["id"], "split": item["split"], "category": item["category"]},
        }
        for item in load_prompts(prepared, splits=("test",))
    ]
    counts = condition_answers(
        f"sample@{condition}", run, requests, out, Path(models) / target.model, adapter, target.generation
    )
    print(f"sample@{condition}: {counts['records']} test responses -> {out}")
