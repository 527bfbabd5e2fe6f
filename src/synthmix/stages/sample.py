"""sample@<condition>: the condition's model (base, or base + its adapter) answers the test prompts.

Same record format and resumability as generate@<source> (see stages/generate.py).
"""

from __future__ import annotations

from pathlib import Path

from synthmix.config import load_condition_params
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
    model_dir = Path(models) / target.model
    adapter_dir = adapter_or_none(adapter)
    out_dir = Path(out)
    counts = answer_all(
        requests,
        out_dir,
        model_dir,
        target.generation,
        extra={"condition": condition},
        adapter_dir=adapter_dir,
        desc=f"sample@{condition}",
    )
    run.write(
        out_dir,
        condition=condition,
        base_model=model_revision(model_dir),
        adapter=str(adapter_dir) if adapter_dir else None,
        counts=counts,
    )
    print(f"sample@{condition}: {counts['records']} test responses -> {out_dir}")
