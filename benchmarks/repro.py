"""Time of a no-op `dvc repro` and `dvc status` on this project (goal: under 10 s, nothing executed).

    python benchmarks/repro.py [--runs 3]

Run it after a full `dvc repro`: every stage is then up to date, so the time is DVC's own overhead (reading
dvc.yaml and params, checking hashes). Prints the times and whether any stage ran.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    dvc = [sys.executable, "-m", "dvc"]
    if not Path("dvc.lock").is_file():
        raise SystemExit("no dvc.lock here: run `dvc repro` first")
    version, _ = timed([*dvc, "--version"])
    status = [timed([*dvc, "status"]) for _ in range(args.runs)]
    repro = [timed([*dvc, "repro"]) for _ in range(args.runs)]
    ran = [line for _, out in repro for line in out.splitlines() if line.startswith("Running stage")]
    print(f"dvc --version: {version:.2f} s (interpreter start-up, the floor of every dvc call)")
    print(f"dvc status (no-op): median {statistics.median(t for t, _ in status):.2f} s over {args.runs} runs")
    print(
        f"dvc repro (no-op):  median {statistics.median(t for t, _ in repro):.2f} s over {args.runs} runs; "
        f"stages executed: {len(ran)}"
    )
    print(f"ratio no-op repro / dvc --version: {statistics.median(t for t, _ in repro) / version:.1f}x")
    if ran:
        print("not a no-op: " + "; ".join(ran[:5]))


if __name__ == "__main__":
    main()
