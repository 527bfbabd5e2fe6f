"""Training throughput of the embedded target, and where a full `dvc repro` spends its time.

    python benchmarks/finetune.py [--examples 24] [--steps 6]

1. LoRA SFT of SmolLM2-135M-Instruct (the embedded default's settings) on human pydoc examples: prints
   training tokens/s (prompt + completion tokens the model processed per second of optimiser steps).
2. If the pipeline has run here, reads every stage's run log (.synthmix/runs: the last run's wall time) and prints
   each stage's share of the total.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import smollm2_dir


def training_throughput(examples: int, steps: int) -> None:
    from dvclive import Live

    from synthmix.config import load_params
    from synthmix.human_data import load_pydoc
    from synthmix.training import train_lora

    params = load_params("params.yaml")
    settings = params.finetune.model_copy(
        update={"max_steps": steps, "eval_steps": steps, "seed": params.seeds[0]}
    )
    records = [
        {"id": r["id"], "prompt": r["instruction"], "response": r["response"][:600]}
        for r in load_pydoc()[:examples]
    ]
    with tempfile.TemporaryDirectory() as tmp, Live(f"{tmp}/live", dvcyaml=False, save_dvc_exp=False) as live:
        summary = train_lora(
            records, smollm2_dir(), f"{tmp}/adapter", settings, params.target.system_prompt, live
        )
    print(
        f"finetune: {summary['steps']} steps of batch {settings.batch_size} in {summary['train_seconds']:.1f} s "
        f"= {summary['train_tokens_per_second']} training tokens/s ({summary['precision']} on {summary['device']}); "
        f"loss {summary['first_train_loss']:.3f} -> {summary['final_train_loss']:.3f}"
    )


def stage_profile(root: Path = Path(".")) -> None:
    """Each stage's wall time from its last entry in the run logs (.synthmix/runs/<stage>.jsonl)."""
    times: dict[str, float] = {}
    for log in sorted((root / ".synthmix" / "runs").glob("*.jsonl")):
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        if lines:
            entry = json.loads(lines[-1])
            times[entry["stage"]] = entry["wall_time_s"]
    if not times:
        print("stage profile: no run logs here (run `dvc repro` first)")
        return
    total = sum(times.values())
    print(f"stage profile of the last dvc repro: {total:.0f} s of stage work (python start-up excluded)")
    for stage, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<28} {seconds:7.1f} s  {100 * seconds / total:5.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    training_throughput(args.examples, args.steps)
    stage_profile()


if __name__ == "__main__":
    main()
