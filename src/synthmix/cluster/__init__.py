"""`synthmix run`: DVC's pipeline as parallel jobs, on this machine or on Slurm, recorded in dvc.lock exactly
as `dvc repro` records it.

DVC runs stages one after another and cannot run two `dvc repro` in one workspace. This package reads the
pipeline from DVC (which stages exist, what each depends on, what is stale), submits every stage whose upstream
is done as its own job running the stage's `cmd`, and records each finished stage itself. Modules:

- `resources`: the `resources` params section (what each stage's job asks for) and the sbatch flags it becomes;
- `pipeline`: every DVC call (plan, dispatch, record), so that DVC's internals are in one place;
- `driver`: the scheduling loop, restarts, failures, Ctrl-C;
- `local`, `slurm`: the executors; `jobs`: a job as files under `.synthmix/jobs/`; `progress`: what is printed.

This module stays light: `synthmix --help` imports it to build the `run` command's options.
"""

from __future__ import annotations

import argparse
import sys

HELP = "run the pipeline's stale stages as parallel jobs (local or Slurm), recorded in dvc.lock as dvc repro would"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets", nargs="*", help="stages or dvc.yaml files, as for `dvc repro` (default: all)"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="jobs at a time (default: 1 with --executor local, no limit with slurm: the scheduler queues)",
    )
    parser.add_argument("--executor", choices=["local", "slurm"], default="local", help="where jobs run")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan, resources and sbatch flags; submit nothing"
    )
    parser.add_argument(
        "--gpus",
        default=None,
        help="local executor: GPU ids to hand out, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES, else nvidia-smi)",
    )
    parser.add_argument(
        "--poll", type=float, default=None, help="seconds between job checks (default: 0.5 local, 5 slurm)"
    )


def main(
    *,
    params_file: str,
    targets: list[str],
    jobs: int | None,
    executor: str,
    dry_run: bool,
    gpus: str | None,
    poll: float | None,
) -> int:
    """The `run` command: its exit status (0 all finished, 1 a stage failed, 2 cannot run, 130 interrupted)."""
    from dvc.exceptions import DvcException

    from synthmix.cluster.driver import run
    from synthmix.cluster.jobs import ClusterError

    if jobs is not None and jobs < 0:
        print("error: -j must be 0 (no limit) or more", file=sys.stderr)
        return 2
    try:
        return run(
            targets,
            jobs=jobs,
            executor=executor,
            dry_run=dry_run,
            gpus=gpus,
            params_file=params_file,
            poll_s=poll,
        )
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except DvcException as error:  # dvc.yaml or the project itself is wrong: DVC's message says where
        print(f"error: dvc: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any job was submitted (after, the driver cancels its jobs itself)
        print("interrupted", file=sys.stderr)
        return 130
