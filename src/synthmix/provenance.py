"""What made an artifact: the manifest inside every output folder, and an untracked log of each run.

The manifest (`<output>/manifest.json`) is part of a DVC output, so DVC hashes it into dvc.lock. It holds
only what the stage's inputs determine: the params slice, model revisions, seeds, package versions, counts.
A fresh clone that reproduces the same content therefore leaves dvc.lock unchanged.

Facts that differ from run to run of the same inputs (wall time, start time, host, how many records came
from a checkpoint, the git commit and whether the tree was dirty) go to the run log
`.synthmix/runs/<stage>.jsonl` instead: ignored by git and DVC, one line per run, newest last.
`synthmix provenance <folder>` prints both.

The git commit is the commit of the code: `git status` is asked about everything except the pipeline's own
results (dvc.lock, data/, models/, metrics/, reports/), which DVC rewrites while `dvc repro` runs and would
otherwise mark every run "-dirty".
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.io import read_json, write_json

MANIFEST = paths.MANIFEST
PACKAGES = ("synthmix", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "dvc", "dvclive")
# Written by the pipeline itself: left out of the "dirty" check (see the module docstring).
RESULTS = ("dvc.lock", "data", "models", "metrics", "reports")
# Metrics files (DVC metrics: metrics.json, matrix.json, curves, summary.json) hold values rounded to this
# many significant digits, the precision the paper reports. DVC hashes them into dvc.lock, and arithmetic
# noise between machines (about 1e-7 relative) then changes a rounded value only when it falls within 1e-7 of
# a rounding boundary (about 1 value in 2,500). Per-item outputs (perplexities, judge scores) keep full
# precision: they feed statistics, and float outputs of model passes are not expected to match bit for bit.
SIGNIFICANT_DIGITS = 4


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: str | Path = ".") -> str | None:
    """HEAD, with "-dirty" when tracked files other than the pipeline's results have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        excluded = [f":(exclude){path}" for path in RESULTS]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def rounded(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """`value` with every float rounded to `digits` significant digits (in dicts and lists too)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if value == value and abs(value) != float("inf") else value
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


class Run:
    """Provenance of one stage run: `write(folder, **facts)` saves the manifest and appends the run log.

    `volatile` facts (e.g. records resumed from a checkpoint, tokens per second) go to the run log only.
    """

    def __init__(self, stage: str, params: dict[str, Any]):
        self.stage = stage
        self.params = params
        self.started = time.time()

    def manifest(self, **facts: Any) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params": self.params,
            **facts,
            "python": platform.python_version(),
            "packages": package_versions(),
        }

    def log(self, **volatile: Any) -> dict[str, Any]:
        """Append this run's volatile facts to `.synthmix/runs/<stage>.jsonl` (best effort: never fails a stage)."""
        entry = {
            "stage": self.stage,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_time_s": round(time.time() - self.started, 2),
            "host": socket.gethostname(),
            "git_commit": git_commit(),
            **volatile,
        }
        try:
            path = paths.run_log(self.stage)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        except OSError as error:
            print(f"{self.stage}: could not append to the run log ({error}); the outputs are complete")
        return entry

    def write(
        self, folder: str | Path, volatile: dict[str, Any] | None = None, **facts: Any
    ) -> dict[str, Any]:
        data = self.manifest(**facts)
        write_json(Path(folder) / MANIFEST, data)
        self.log(**(volatile or {}))
        return data


def find_manifest(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path / MANIFEST, path / "model.json", path.parent / MANIFEST):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no {MANIFEST} here or beside it (is it a synthmix output?)")


def last_runs(stage: str, root: str | Path = ".", n: int = 1) -> list[dict[str, Any]]:
    """The last `n` entries of a stage's run log (none when it never ran here)."""
    log = Path(root) / paths.run_log(stage)
    if not log.is_file():
        return []
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = []
    for line in lines[-n:]:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut off by a crash: the log is best effort
    return entries


def show(path: str | Path) -> str:
    manifest = find_manifest(path)
    data = read_json(manifest)
    text = f"# {manifest}\n" + json.dumps(data, indent=2, ensure_ascii=False)
    runs = last_runs(str(data.get("stage", ""))) if isinstance(data, dict) and data.get("stage") else []
    if runs:
        text += f"\n# last run on this machine ({paths.run_log(data['stage'])})\n"
        text += json.dumps(runs[-1], indent=2, ensure_ascii=False)
    return text
