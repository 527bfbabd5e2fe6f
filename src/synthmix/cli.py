"""`python -m synthmix <command>`: the commands that dvc.yaml stages call, plus the tools around them.

Each stage module defines its own options next to its code: `add_arguments(parser)` and a keyword-only
`main(...)` whose parameter names are the option names. The CLI only collects them, so a stage's options
cannot drift from what its `main` takes, and no call passes a row of positional strings.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from synthmix import cluster  # light: the `run` options; its driver is imported when the command runs
from synthmix.config import ParamsError, load_params
from synthmix.io import DataError
from synthmix.mixing import MixError
from synthmix.modelstore import ModelError

# command -> stage module (synthmix.stages.<module>), in pipeline order
STAGES = {
    "models": "models",
    "prepare": "prepare",
    "generate": "generate",
    "articles": "articles",
    "summarize": "summarize",
    "mix": "mix",
    "regenerate": "regenerate",
    "remix": "remix",
    "finetune": "finetune",
    "sample": "sample",
    "perplexity": "perplexity",
    "collapse": "collapse",
    "data-diversity": "data_diversity",
    "redteam": "redteam",
    "attack": "attack",
    "judge": "judge",
    "robustness": "robustness",
    "candidates": "candidates",
    "preference": "preference",
    "preference-metrics": "preference_metrics",
    "report": "report",
}


def stage_module(command: str) -> Any:
    return importlib.import_module(f"synthmix.stages.{STAGES[command]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthmix", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check-params", help="validate a params file (or a preset) and exit")
    check.add_argument("file", nargs="?", default=None, help="file to check (default: --params)")
    prov = sub.add_parser("provenance", help="print what produced an output folder")
    prov.add_argument("path")
    checkpoints = sub.add_parser("checkpoints", help="list the checkpoints that killed runs left behind")
    checkpoints.add_argument(
        "--clean", action="store_true", help="remove the stale ones (their stage was published or restored)"
    )
    cluster.add_arguments(sub.add_parser("run", help=cluster.HELP))
    for command in STAGES:
        module = stage_module(command)
        stage = sub.add_parser(command, help=module.HELP)
        module.add_arguments(stage)
    return parser


def check_params(path: str, explicit: bool) -> None:
    params = load_params(path)
    dvc_yaml = Path(path).resolve().parent / "dvc.yaml"
    if not explicit and dvc_yaml.is_file():  # a preset elsewhere is checked by the schema alone
        import yaml

        from synthmix.dvcparams import missing_keys

        problems = missing_keys(dvc_yaml, yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        if problems:
            raise ParamsError(
                f"{path}: {len(problems)} key(s) that dvc.yaml needs:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        from synthmix.cluster.resources import load_resources

        load_resources(path, dvc_yaml)  # family and override names against dvc.yaml's stages
    print(
        f"{path}: ok ({len(params.models)} models, {len(params.sources)} sources, "
        f"{len(params.conditions)} conditions)"
    )


def list_checkpoints(clean: bool) -> None:
    from synthmix.runner import leftover_checkpoints, sweep_stale_checkpoints

    found = list(leftover_checkpoints())
    for checkpoint, output, stale in found:
        state = "stale (its output exists)" if stale else "resumable"
        size = checkpoint.stat().st_size if checkpoint.exists() else 0
        print(f"{checkpoint}  {size} bytes  {state}  -> {output or '(a path outside the project)'}")
    if clean:
        removed = sweep_stale_checkpoints()
        print(f"removed {len(removed)} stale checkpoint(s)")
    elif not found:
        print("no checkpoints")


def run(args: argparse.Namespace) -> None:
    if args.command == "check-params":
        check_params(args.file or args.params, explicit=args.file is not None)
    elif args.command == "provenance":
        from synthmix.provenance import show

        print(show(args.path))
    elif args.command == "checkpoints":
        list_checkpoints(args.clean)
    elif args.command == "run":
        options = {k: v for k, v in vars(args).items() if k not in ("command", "params")}
        code = cluster.main(params_file=args.params, **options)
        if code:
            raise SystemExit(code)
    else:
        options = {k: v for k, v in vars(args).items() if k not in ("command", "params")}
        stage_module(args.command).main(params_file=args.params, **options)


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
