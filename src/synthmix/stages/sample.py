"""sample@<condition>-<seed>: the condition's model (base, or base + its adapter) answers the test prompts.

It samples with the run seed (target.generation with seed = the run's). Same record format and resumability as generate@<source> (see stages/generate.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthmix.config import TargetGeneration, load_run_params, run_stage
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
    run: Run,
    condition: str,
    seed: int,
    requests: list[dict[str, Any]],
    out: str | Path,
    model_dir: Path,
    adapter: str | Path,
    generation: TargetGeneration,
) -> dict[str, Any]:
    """One run's model (base + adapter, or base) answers `requests` into `out`, sampling with the run seed;
    writes the manifest. `run.stage` names the stage (e.g. sample@human-42)."""
    adapter_dir = adapter_or_none(adapter)
    counts = answer_all(
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
        condition=condition,
        seed=seed,
        base_model=model_revision(model_dir),
        adapter=str(adapter_dir) if adapter_dir else None,
        counts=counts,
    )
    return counts


def main(
    condition: str,
    seed: int,
    out: str,
    adapter: str,
    prepared: str = "data/prepared",
    models: str = "models/base",
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed)
    target = params.target
    run = Run(run_stage("sample", condition, seed), {"target": target.model_dump(), "seed": seed})
    requests = [
        {
            "id": item["id"],
            "messages": chat_messages(item["prompt"], target.system_prompt),
            "meta": {"prompt_id": item["id"], "split": item["split"], "category": item["category"]},
        }
        for item in load_prompts(prepared, splits=("test",))
    ]
    counts = condition_answers(
        run, condition, seed, requests, out, Path(models) / target.model, adapter, target.generation
    )
    print(f"{run.stage}: {counts['records']} test responses -> {out}")
