"""The pipeline's stages: one module per dvc.yaml stage, each with `HELP`, `add_arguments(parser)` and a
keyword-only `main(...)` (see synthmix.cli). A stage module never imports another stage module: shared
services live in library modules (synthmix.generation, synthmix.judge, synthmix.runner, ...)."""

from __future__ import annotations

import argparse


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The condition and run seed of a per-run stage (<stage>@<condition>-<seed>)."""
    parser.add_argument("condition")
    parser.add_argument(
        "--seed",
        type=int,
        required=True,
        help="the run seed, one of params `seeds` (training seed and the target's sampling seed)",
    )
