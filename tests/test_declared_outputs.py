"""After `dvc repro`, the project holds exactly what dvc.yaml declares, and nothing else.

The pipeline runs on a tiny random model in a temporary git + DVC repository (tests/dvcproject.py) with one
source and one tuned condition, through every stage up to the report. Then every file and folder of the
checkout must be one of: a git-tracked input, git's and DVC's own folders (.git/, .dvc/), dvc.lock, a
.gitignore that DVC wrote for declared outputs, or a declared output (outs, metrics, plots) or inside one.
The one exception is the ignored work folder .synthmix/, which holds the run logs and must hold no checkpoint
once every stage is published. A checkpoint file left behind, a Trainer checkpoint, a DVCLive extra
(report.html, dvc.yaml) or a stray temporary file would all show up here. Trainer checkpoints go to the system
temporary folder; that must be empty of synthmix's scratch folders afterwards too.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
import yaml
from dvcproject import ran_stages

pytestmark = [pytest.mark.slow, pytest.mark.dvc]


def lock_outputs(root: Path) -> dict[str, list[str]]:
    """stage -> the output paths dvc.lock records for it (outs, metrics and plots alike)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    return {name: [out["path"] for out in stage.get("outs", [])] for name, stage in lock["stages"].items()}


def expansions(stage: dict, params: dict) -> list[dict[str, str]]:
    """The placeholder values of each stage a foreach or matrix stage generates ([{}] for a plain stage)."""
    if "foreach" in stage:
        return [{"${key}": key} for key in params[stage["foreach"].strip("${}")]]
    if "matrix" in stage:
        axes = {axis: list(params[spec.strip("${}")]) for axis, spec in stage["matrix"].items()}
        return [
            {f"${{item.{axis}}}": str(value) for axis, value in zip(axes, combo, strict=True)}
            for combo in itertools.product(*axes.values())
        ]
    return [{}]


def declared_outputs(root: Path, params: dict) -> set[str]:
    """Every output path dvc.yaml declares, with foreach and matrix expanded over the params (independent of
    dvc.lock)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    paths = set()
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for placeholders in expansions(stage, params):
            for section in ("outs", "metrics", "plots"):
                for entry in body.get(section, []):
                    path = next(iter(entry)) if isinstance(entry, dict) else entry
                    for placeholder, value in placeholders.items():
                        path = path.replace(placeholder, value)
                    paths.add(path)
        assert "${" not in "".join(paths), f"{name}: an output path interpolates more than its foreach/matrix"
    return paths


def test_repro_leaves_only_declared_outputs(study) -> None:
    root, params, env, scratch = study.root, study.params, study.env, study.scratch
    # the inputs: what git tracked before the first run (the study commits its results after it)
    tracked = set(subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD~1"], cwd=root, env=env,
                                 capture_output=True, text=True, check=True).stdout.split())  # fmt: skip
    assert "report" in ran_stages(study.first_run)

    declared = declared_outputs(root, params)
    recorded = lock_outputs(root)
    assert {p for paths in recorded.values() for p in paths} == declared
    missing = sorted(p for p in declared if not (root / p).exists())
    assert not missing, f"declared but not written: {missing}"

    def inside_output(rel: Path) -> bool:
        return any(rel == Path(p) or Path(p) in rel.parents for p in declared)

    # DVC's .gitignore files list only declared outputs of their own folder
    ignores = [p for p in root.rglob(".gitignore") if str(p.relative_to(root)) not in tracked]
    for ignore in ignores:
        folder = ignore.parent.relative_to(root)
        for line in filter(None, ignore.read_text(encoding="utf-8").splitlines()):
            assert line.startswith("/") and str(folder / line[1:]) in declared, f"{ignore}: {line}"

    allowed_files = tracked | {"dvc.lock"} | {str(p.relative_to(root)) for p in ignores}
    needed_dirs = {parent for p in allowed_files | declared for parent in Path(p).parents}
    stray = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".git", ".dvc", ".synthmix") or inside_output(rel):
            continue
        if path.is_dir() and not path.is_symlink():
            if rel not in needed_dirs:
                stray.append(f"{rel}/")
        elif str(rel) not in allowed_files:
            stray.append(str(rel))
    assert not stray, f"files that no stage declares: {stray}"

    # inside declared folders: no checkpoint or temporary files either
    hidden = [
        str(p.relative_to(root)) for out in declared for p in (root / out).rglob("*")
        if (root / out).is_dir() and p.name.endswith((".partial", ".partial.jsonl", ".tmp"))
    ]  # fmt: skip
    assert not hidden, hidden
    # the work folder: a run log per stage that ran, and no checkpoint left
    work = root / ".synthmix"
    assert not [p for p in work.rglob("*") if p.is_file() and "runs" not in p.relative_to(work).parts[:1]]
    logged = {p.name.removesuffix(".jsonl") for p in (work / "runs").iterdir()}
    assert set(ran_stages(study.first_run)) <= logged
    leftovers = sorted(p.name for p in scratch.iterdir() if p.name.startswith(("synthmix", ".synthmix")))
    assert not leftovers, f"scratch folders left in the temporary folder: {leftovers}"
