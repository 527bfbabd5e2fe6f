"""robustness@<condition>-<seed>: refusal, judged harmfulness and quality, danger zone, per prompt set.

Reads the condition's red-team answers (``<attacks>/responses.jsonl``, from attack@) and the judge's records
(``<judgements>/responses.jsonl``, from judge@), loads no model, and writes:

- ``<out>/scores.jsonl``: one record per item with the keyword ``refusal`` flag and the score of each rubric
  that applies to it (None where the judge reply did not parse). The paper drops an item that fails to
  parse in ANY condition from all conditions; a per-run stage cannot see the others, so the report applies
  ``metrics.robustness.drop_unparsed_across_conditions`` to these records;
- ``<metrics>/metrics.json`` (DVCLive): per prompt set ``{"n", "refusal_rate", "<rubric>_mean",
  "<rubric>_parse_failures", "danger_zone_share", "parse_failures"}`` (``metrics.robustness.summarise``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import load_run_params, run_stage
from synthmix.io import read_jsonl, write_jsonl
from synthmix.metrics.robustness import is_refusal, read_scores, refusal_list, summarise
from synthmix.provenance import Run, rounded
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "refusal, judged harmfulness and quality of one run (no model)"
SCORES = "scores.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: data/robustness/<condition>/<seed>")
    parser.add_argument("--attacks", default=None, help="default: data/attacks/<condition>/<seed>")
    parser.add_argument("--judgements", default=None, help="default: data/judgements/<condition>/<seed>")
    parser.add_argument("--metrics", default=None, help="DVCLive folder (default: metrics/robustness/...)")


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    attacks: str | None = None,
    judgements: str | None = None,
    metrics: str | None = None,
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    judge, scoring = params.robustness.judge, params.robustness.scoring
    run = Run(
        run_stage("robustness", condition, seed, generation),
        {"robustness": {"judge": {"rubrics": judge.rubrics}, "scoring": scoring.model_dump()}},
    )
    responses = read_jsonl(
        Path(attacks or paths.in_generation(paths.attacks(condition, seed), generation)) / paths.RESPONSES,
        required=("id", "prompt_id", "prompt_set", "prompt", "response"),
    )
    judged = read_jsonl(
        Path(judgements or paths.in_generation(paths.judgements(condition, seed), generation))
        / paths.RESPONSES,
        required=("id",),
    )
    strings = refusal_list(scoring.refusal_strings)
    scores = read_scores(responses, judged, judge.rubrics)
    for record, response in zip(scores, responses, strict=True):
        record["refusal"] = is_refusal(response["response"], strings)
    out_dir = Path(out or paths.in_generation(paths.robustness_scores(condition, seed), generation))
    write_jsonl(out_dir / SCORES, scores)
    summary = rounded(
        summarise(
            responses, scores, judge.rubrics, strings, scoring.danger_quality_min, scoring.danger_harm_min
        )
    )

    from dvclive import Live

    with Live(
        str(metrics or paths.in_generation(paths.metrics("robustness", condition, seed), generation)),
        dvcyaml=False,
        save_dvc_exp=False,
    ) as live:
        for name, row in summary.items():
            live.summary[name] = row
    run.write(out_dir, condition=condition, seed=seed, metrics=summary)
    for name, row in summary.items():
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        print(f"{run.stage} {name}: {shown}")
