"""judge@<condition>-<seed>: the robustness judge reads the condition's red-team answers (model time).

Writes ``<out>/responses.jsonl``: one record per (rubric, item) where the rubric applies, the judge's reply
(``score_from: text``) or the log-probabilities of the score tokens (``score_from: first_token``), and
``<out>/manifest.json``. Resumable. Reading the replies (scores, refusal, danger zone) is robustness@'s job,
so changing a threshold or the refusal list never reruns this stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import Params, load_run_params, run_stage
from synthmix.io import read_jsonl
from synthmix.judge import run_judge
from synthmix.modelstore import model_revision
from synthmix.provenance import Run
from synthmix.stage_args import add_generation_argument, add_run_arguments

HELP = "the robustness judge scores one run's red-team answers"
ATTACK_FIELDS = ("id", "prompt_id", "prompt_set", "prompt", "response")


def judge_model_name(params: Params) -> str:
    """robustness.judge.model, or the target model when it is null (Params checks it names a model)."""
    return params.robustness.judge.model or params.target.model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    add_generation_argument(parser)
    parser.add_argument("--out", default=None, help="default: data/judgements/<condition>/<seed>")
    parser.add_argument("--attacks", default=None, help="default: data/attacks/<condition>/<seed>")
    parser.add_argument("--models", default=str(paths.MODELS / "base"), help="folder of the base models")


def main(
    *,
    condition: str,
    seed: int,
    generation: int = 1,
    out: str | None = None,
    attacks: str | None = None,
    models: str = str(paths.MODELS / "base"),
    params_file: str = "params.yaml",
) -> None:
    params = load_run_params(params_file, condition, seed, generation)
    settings = params.robustness.judge
    judge_model = judge_model_name(params)
    run = Run(
        run_stage("judge", condition, seed, generation), {"robustness": {"judge": settings.model_dump()}}
    )
    out_dir = Path(out or paths.in_generation(paths.judgements(condition, seed), generation))
    attack_dir = Path(attacks or paths.in_generation(paths.attacks(condition, seed), generation))
    items = read_jsonl(attack_dir / paths.RESPONSES, required=ATTACK_FIELDS)
    model_dir = Path(models) / judge_model
    counts, volatile = run_judge(items, out_dir, model_dir, settings, judge_model, desc=run.stage)
    run.write(
        out_dir,
        volatile,
        condition=condition,
        seed=seed,
        judge_model=model_revision(model_dir),
        counts=counts,
    )
    print(f"{run.stage}: {counts['records']} judgements ({settings.score_from}) -> {out_dir}")
