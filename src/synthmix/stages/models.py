"""models@<name>: materialise one base model into models/base/<name>/ (checkpoint + model.json)."""

from __future__ import annotations

from pathlib import Path

from synthmix.config import ParamsError, load_params
from synthmix.modelstore import materialise


def main(name: str, out: str, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    if name not in params.models:
        raise ParamsError(
            f"{params_file}: models.{name} is not defined (defined: {', '.join(params.models)})"
        )
    record = materialise(name, params.models[name], Path(out))
    print(f"models@{name}: {record['architecture'][0]}, {record['parameters']:,} parameters -> {out}")
