"""`python -m synthmix <command>`: the commands that dvc.yaml stages call, plus check-params and provenance."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from synthmix.config import ParamsError, load_params
from synthmix.io import DataError
from synthmix.mixing import MixError
from synthmix.modelstore import ModelError


def _run_parser(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """The subparser of a per-run stage (<stage>@<condition>-<seed>): its condition and run seed come first."""
    parser = sub.add_parser(name, help=help)
    parser.add_argument("condition")
    parser.add_argument(
        "--seed",
        type=int,
        required=True,
        help="the run seed, one of params `seeds` (training seed and the target's sampling seed)",
    )
    return parser


def _stage(module: str):
    return importlib.import_module(f"synthmix.stages.{module}").main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthmix", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check-params", help="validate a params file (or a preset) and exit")
    check.add_argument("file", nargs="?", default=None, help="file to check (default: --params)")

    prov = sub.add_parser("provenance", help="print what produced an output folder")
    prov.add_argument("path")

    models = sub.add_parser("models", help="materialise one base model as a plain checkpoint")
    models.add_argument("name")
    models.add_argument("--out", required=True)

    prepare = sub.add_parser("prepare", help="human data -> train/test prompts with reference responses")
    prepare.add_argument("--out", default="data/prepared")

    generate = sub.add_parser("generate", help="one source answers the prepared prompts")
    generate.add_argument("source")
    generate.add_argument("--out", required=True)
    generate.add_argument("--prepared", default="data/prepared")
    generate.add_argument("--models", default="models/base")

    mix = sub.add_parser("mix", help="build one condition's training set")
    mix.add_argument("condition")
    mix.add_argument("--out", required=True)
    mix.add_argument("--prepared", default="data/prepared")
    mix.add_argument("--generated", default="data/generated")
    mix.add_argument("--metrics", required=True, help="where to write the mix's counts (a DVC metrics file)")

    finetune = _run_parser(sub, "finetune", help="LoRA SFT of the target on one condition's training set")
    finetune.add_argument("--out", required=True)
    finetune.add_argument("--mix", required=True, help="the condition's mix folder")
    finetune.add_argument("--models", default="models/base")
    finetune.add_argument("--metrics", required=True, help="DVCLive folder for training curves")

    sample = _run_parser(sub, "sample", help="the (tuned) target answers the test prompts")
    sample.add_argument("--out", required=True)
    sample.add_argument("--adapter", required=True)
    sample.add_argument("--prepared", default="data/prepared")
    sample.add_argument("--models", default="models/base")

    # ---- evaluation commands: each stage family adds its subparsers below ----
    redteam = sub.add_parser("redteam", help="build the red-team prompt sets (harmful, jailbreak, benign)")
    redteam.add_argument("--out", default="data/redteam")

    attack = _run_parser(sub, "attack", help="the condition's model answers the red-team prompts")
    attack.add_argument("--out", required=True)
    attack.add_argument("--adapter", required=True)
    attack.add_argument("--redteam", default="data/redteam")
    attack.add_argument("--models", default="models/base")

    robust = _run_parser(sub, "robustness", help="refusal, judged harmfulness and quality of one condition")
    robust.add_argument("--out", required=True, help="folder for the judge replies and per-item scores")
    robust.add_argument("--attacks", required=True, help="the condition's attack folder")
    robust.add_argument("--metrics", required=True, help="DVCLive folder for the metrics")
    robust.add_argument("--models", default="models/base")

    collapse = _run_parser(
        sub, "collapse", help="distribution collapse of one condition: perplexity, diversity"
    )
    collapse.add_argument("--out", required=True, help="folder for the per-item perplexities")
    collapse.add_argument("--samples", required=True, help="the condition's sample folder")
    collapse.add_argument("--adapter", required=True, help="the condition's adapter folder")
    collapse.add_argument(
        "--metrics", required=True, help="DVCLive folder for the metrics and the growth curve"
    )
    collapse.add_argument("--prepared", default="data/prepared")
    collapse.add_argument("--models", default="models/base")

    data_diversity = sub.add_parser(
        "data-diversity", help="diversity of each source's and the human train data"
    )
    data_diversity.add_argument("--out", required=True, help="folder for the growth curves and the manifest")
    data_diversity.add_argument("--metrics", required=True, help="DVCLive folder for the metrics")
    data_diversity.add_argument("--generated", default="data/generated")
    data_diversity.add_argument("--prepared", default="data/prepared")
    preference = _run_parser(sub, "preference", help="the condition's model judges every pair of candidates")
    preference.add_argument("--out", required=True, help="folder for the pairwise and absolute judgements")
    preference.add_argument("--adapter", required=True, help="the condition's adapter folder")
    preference.add_argument("--prepared", default="data/prepared")
    preference.add_argument("--generated", default="data/generated")
    preference.add_argument("--models", default="models/base")

    preference_metrics = _run_parser(
        sub, "preference-metrics", help="self-preference bias from the judgements"
    )
    preference_metrics.add_argument("--judgements", required=True, help="the condition's preference folder")
    preference_metrics.add_argument("--metrics", required=True, help="DVCLive folder: metrics, matrix, plot")
    report = sub.add_parser("report", help="compare all conditions: tables, significance tests, figures")
    report.add_argument("--out", default="reports")
    report.add_argument("--root", default=".", help="the project folder whose outputs are read")
    # ---- end of evaluation commands ----
    return parser


def run(args: argparse.Namespace) -> None:
    if args.command == "check-params":
        path = args.file or args.params
        params = load_params(path)
        dvc_yaml = Path(path).resolve().parent / "dvc.yaml"
        if args.file is None and dvc_yaml.is_file():  # a preset elsewhere is checked by the schema alone
            import yaml

            from synthmix.dvcparams import missing_keys

            problems = missing_keys(dvc_yaml, yaml.safe_load(Path(path).read_text(encoding="utf-8")))
            if problems:
                raise ParamsError(
                    f"{path}: {len(problems)} key(s) that dvc.yaml needs:\n"
                    + "\n".join(f"  - {p}" for p in problems)
                )
        print(
            f"{path}: ok ({len(params.models)} models, {len(params.sources)} sources, "
            f"{len(params.conditions)} conditions)"
        )
    elif args.command == "provenance":
        from synthmix.provenance import show

        print(show(args.path))
    elif args.command == "models":
        _stage("models")(args.name, args.out, args.params)
    elif args.command == "prepare":
        _stage("prepare")(args.out, args.params)
    elif args.command == "generate":
        _stage("generate")(args.source, args.out, args.prepared, args.models, args.params)
    elif args.command == "mix":
        _stage("mix")(args.condition, args.out, args.metrics, args.prepared, args.generated, args.params)
    elif args.command == "finetune":
        _stage("finetune")(
            args.condition, args.seed, args.out, args.mix, args.models, args.metrics, args.params
        )
    elif args.command == "sample":
        _stage("sample")(
            args.condition, args.seed, args.out, args.adapter, args.prepared, args.models, args.params
        )
    # ---- evaluation dispatch: each stage family adds its branch below ----
    elif args.command == "redteam":
        _stage("redteam")(args.out, args.params)
    elif args.command == "attack":
        _stage("attack")(
            args.condition, args.seed, args.out, args.adapter, args.redteam, args.models, args.params
        )
    elif args.command == "robustness":
        _stage("robustness")(
            args.condition, args.seed, args.out, args.attacks, args.metrics, args.models, args.params
        )
    elif args.command == "collapse":
        _stage("collapse")(
            args.condition,
            args.seed,
            args.out,
            args.samples,
            args.adapter,
            args.metrics,
            args.prepared,
            args.models,
            args.params,
        )
    elif args.command == "data-diversity":
        _stage("data_diversity")(args.out, args.metrics, args.generated, args.prepared, args.params)
    elif args.command == "preference":
        _stage("preference")(
            args.condition,
            args.seed,
            args.out,
            args.adapter,
            args.prepared,
            args.generated,
            args.models,
            args.params,
        )
    elif args.command == "preference-metrics":
        from synthmix.stages.preference import metrics_main

        metrics_main(args.condition, args.seed, args.judgements, args.metrics, args.params)
    elif args.command == "report":
        _stage("report")(args.out, args.root, args.params)
    # ---- end of evaluation dispatch ----
    else:
        raise SystemExit(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(args)
    # OSError: a file that is missing or cannot be written (a full disk); the message names it
    except (ParamsError, DataError, ModelError, MixError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
