"""mix@<condition>: the condition's training set, matched in size, from generations and human responses.

Writes `<out>/train.jsonl` and `<out>/manifest.json`, and the counts and shares as a DVC metrics file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import HUMAN, load_condition_params
from synthmix.io import read_jsonl, write_json, write_jsonl
from synthmix.mixing import build_mix, mix_summary
from synthmix.provenance import Run

HELP = "build one condition's training set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("condition")
    parser.add_argument("--out", default=None, help="default: data/mixes/<condition>")
    parser.add_argument("--metrics", default=None, help="the mix's counts (DVC metrics file)")
    parser.add_argument("--prepared", default=str(paths.prepared()))
    parser.add_argument(
        "--generated", default=str(paths.DATA / "generated"), help="folder of the generations"
    )


def main(
    *,
    condition: str,
    out: str | None = None,
    metrics: str | None = None,
    prepared: str = str(paths.prepared()),
    generated: str = str(paths.DATA / "generated"),
    params_file: str = "params.yaml",
) -> None:
    params = load_condition_params(params_file, condition)
    spec = params.conditions[condition]
    run = Run(
        f"mix@{condition}", {"conditions": {condition: spec.model_dump()}, "mix": params.mix.model_dump()}
    )
    prompts = read_jsonl(Path(prepared) / "train.jsonl", required=("id", "prompt", "response", "category"))
    responses = {}
    for source in spec.mix:
        if source == HUMAN:
            continue
        path = Path(generated) / source / paths.RESPONSES
        records = read_jsonl(path, required=("id", "response", "split"))
        responses[source] = {r["id"]: r["response"] for r in records if r["split"] == "train"}
    records = build_mix(
        condition, spec.mix, prompts, responses, params.mix.size, params.mix.seed, params.mix.dedupe
    )
    out_dir = Path(out) if out else paths.mix(condition)
    write_jsonl(out_dir / "train.jsonl", records)
    summary = mix_summary(records, spec.mix)
    run.write(out_dir, condition=condition, tuned=spec.tuned, seed=params.mix.seed, summary=summary)
    write_json(metrics or paths.mix_metrics(condition), {"mix": summary})
    shares = ", ".join(f"{s} {v['examples']}" for s, v in summary["sources"].items()) or "no fine-tuning"
    print(f"mix@{condition}: {summary['examples']} examples ({shares}) -> {out_dir}")
