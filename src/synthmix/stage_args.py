"""The command-line arguments every per-run stage shares (its condition, run seed and generation). A library
module, so that no stage module imports the `synthmix.stages` package or another stage module."""

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
