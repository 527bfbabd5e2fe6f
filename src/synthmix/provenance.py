"""What made an artifact: params slice, models, seeds, package versions, git commit, wall time."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from synthmix.io import read_json, write_json

MANIFEST = "manifest.json"
PACKAGES = ("synthmix", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "dvc", "dvclive")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


class Run:
    """Collects provenance for one stage run; `write(folder, **extra)` saves the manifest."""

    def __init__(self, stage: str, params: dict[str, Any]):
        self.stage = stage
        self.params = params
        self.started = time.time()

    def manifest(self, **extra: Any) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params": self.params,
            **extra,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "packages": package_versions(),
            "wall_time_s": round(time.time() - self.started, 2),
        }

    def write(self, folder: str | Path, **extra: Any) -> dict[str, Any]:
        data = self.manifest(**extra)
        write_json(Path(folder) / MANIFEST, data)
        return data


def find_manifest(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path / MANIFEST, path / "model.json", path.parent / MANIFEST):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no {MANIFEST} here or beside it (is it a synthmix output?)")


def show(path: str | Path) -> str:
    manifest = find_manifest(path)
    return f"# {manifest}\n" + json.dumps(read_json(manifest), indent=2, ensure_ascii=False)
