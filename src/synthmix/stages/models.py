"""models@<name>: materialise one base model into models/base/<name>/ (checkpoint + model.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthmix import paths
from synthmix.config import ParamsError, load_params
from synthmix.modelstore import materialise
from synthmix.provenance import Run

HELP = "materialise one base model as a plain checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a key of `models` in params")
    parser.add_argument("--out", default=None, help="default: models/base/<name>")


def main(*, name: str, out: str | None = None, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    if name not in params.models:
        raise ParamsError(
            f"{params_file}: models.{name} is not defined (defined: {', '.join(params.models)})"
        )
    run = Run(f"models@{name}", {"models": {name: params.models[name].model_dump()}})
    out_dir = Path(out) if out else paths.base_model(name)
    record = materialise(name, params.models[name], out_dir)
    run.log()  # model.json is the manifest of a model folder; the run log keeps the wall time
    if record["origin"]["kind"] == "api":
        print(f"models@{name}: served only behind {record['origin']['base_url']} -> {out_dir}")
    else:
        print(f"models@{name}: {record['architecture'][0]}, {record['parameters']:,} parameters -> {out_dir}")
