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


def add_generation_argument(parser: argparse.ArgumentParser) -> None:
    """The generation of a stage that also runs in later generations of the recursion (<stage>_g<k>@...)."""
    parser.add_argument(
        "--generation",
        type=int,
        default=1,
        help="the recursion's generation (1: the paper's single round; k >= 2: recursion.generation_<k>)",
    )
