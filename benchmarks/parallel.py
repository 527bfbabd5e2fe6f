"""Wall time of `synthmix run -j 1` against `-j 2` on the tiny test pipeline (tests/tinypipeline.py).

    python benchmarks/parallel.py [--seconds 3] [--executor local|slurm]

Each run gets a fresh copy of the tiny git + DVC project, whose two generate stages sleep `--seconds` each and
are independent; the other four stages are instant. With -j 1 the two sleeps follow each other, with -j 2 they
overlap; -j 1 also runs the instant stages one per polling round where -j 2 runs independent ones together.
The rest is the driver's own cost (start-up, DVC's hashing and recording). One run each, printed as a ratio,
with a plain sequential `dvc repro` of the same project for reference.
With `--executor slurm`, SLURM_CONF must name a running cluster (scripts/start_slurm.sh).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dvcproject import clean_env  # noqa: E402
from tinypipeline import PARAMS, write_project  # noqa: E402


def timed_run(jobs: int | None, seconds: float, executor: str, work: Path) -> float:
    """Wall time of `synthmix run -j <jobs>` on a fresh copy (jobs None: plain `dvc repro`)."""
    home = work / "home"
    home.mkdir(parents=True)
    env = {**clean_env(home), "RUNS_LOG": str(work / "runs.log")}
    if executor == "slurm":
        env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    params = {**PARAMS, "sources": {name: {"seconds": seconds} for name in PARAMS["sources"]}}
    write_project(work / "project", env, params)
    command = [sys.executable, "-m", "synthmix", "run", "-j", str(jobs), "--executor", executor]
    if jobs is None:
        command = [sys.executable, "-m", "dvc", "repro"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work / "project", env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="sleep of each generate stage")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthmix-parallel-") as tmp:
        repro = timed_run(None, args.seconds, args.executor, Path(tmp) / "repro")
        one = timed_run(1, args.seconds, args.executor, Path(tmp) / "j1")
        two = timed_run(2, args.seconds, args.executor, Path(tmp) / "j2")
    print(
        f"tiny pipeline, two independent {args.seconds:g} s stages + 4 instant ones, {args.executor} executor"
    )
    print(f"dvc repro:         {repro:.1f} s (for reference)")
    print(f"synthmix run -j 1: {one:.1f} s")
    print(f"synthmix run -j 2: {two:.1f} s")
    print(
        f"-j 2 / -j 1: {two / one:.2f} (the sleeps alone take {2 * args.seconds:g} s with -j 1, {args.seconds:g} s with -j 2)"
    )


if __name__ == "__main__":
    main()
