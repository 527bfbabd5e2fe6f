"""dvc.yaml's code dependencies name exactly the files each stage runs, and no stage module imports another.

For each stage the synthmix modules its command runs are found by reading imports (every `import` statement,
also those inside functions) from the stage module, transitively. Then:

- every `src/synthmix/...` dependency of the stage is among them (a dependency on a file the stage does not run
  would rerun it for nothing: the bug where editing one stage's module reran another);
- every module among them is a dependency, except the infrastructure that decides how a stage runs but not
  what it writes (params loading, file I/O, paths, provenance, registries, the runner's checkpoints, model
  folder lookup, the CLI).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from synthmix.backends import BUILTIN
from synthmix.cli import STAGES

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
INFRASTRUCTURE = {
    "synthmix/__init__.py", "synthmix/__main__.py", "synthmix/cli.py", "synthmix/io.py", "synthmix/paths.py",
    "synthmix/provenance.py", "synthmix/registry.py", "synthmix/runner.py", "synthmix/modelstore.py",
    "synthmix/stages/__init__.py", "synthmix/stage_args.py", "synthmix/config/__init__.py", "synthmix/config/base.py",
    "synthmix/config/study.py", "synthmix/config/evaluation.py", "synthmix/config/params.py",
    "synthmix/metrics/__init__.py", "synthmix/resources/__init__.py",
}  # fmt: skip


def module_file(name: str) -> Path | None:
    """src-relative file of a synthmix module (package -> its __init__), None if it is not synthmix's."""
    if name != "synthmix" and not name.startswith("synthmix."):
        return None
    path = SRC / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported(file: Path) -> set[Path]:
    """The synthmix module files that `file` imports (module and `from` imports, at any depth of the code)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            for end in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b too
                if (path := module_file(".".join(parts[:end]))) is not None:
                    found.add(path)
    return found


def closure(start: Path) -> set[str]:
    """`start` and the synthmix modules it runs, transitively; infrastructure modules are reached but not
    followed (params validation imports the registries only to check names)."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        if str(file.relative_to(SRC)) not in INFRASTRUCTURE:
            todo.extend(imported(file) - seen)
        if file == SRC / "synthmix/backends/__init__.py":  # load_backend imports the chosen backend's module
            todo.extend(SRC / "synthmix/backends" / f"{name.split('.')[-1]}.py" for name in BUILTIN.values())
    return {str(path.relative_to(SRC)) for path in seen}


def stage_cases() -> list[tuple[str, str, list[str]]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    cases = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        command = body["cmd"].split()[3]  # python -m synthmix <command> ...
        deps = [d for d in body.get("deps", []) if d.startswith("src/")]
        cases.append((name, command, deps))
    return cases


@pytest.mark.parametrize(("name", "command", "deps"), stage_cases(), ids=[c[0] for c in stage_cases()])
def test_stage_dependencies_are_the_code_it_runs(name: str, command: str, deps: list[str]) -> None:
    module = SRC / "synthmix" / "stages" / f"{STAGES[command]}.py"
    runs = closure(module)

    def covered(file: str) -> bool:
        return any(f"src/{file}" == dep or f"src/{file}".startswith(dep.rstrip("/") + "/") for dep in deps)

    for dep in deps:
        target = dep.removeprefix("src/")
        inside = [f for f in runs if f == target or f.startswith(target.rstrip("/") + "/")]
        assert inside or target.endswith(".json"), f"{name}: depends on {dep}, which it never runs"
    missing = sorted(f for f in runs - INFRASTRUCTURE if not covered(f))
    assert not missing, f"{name}: runs {missing} but dvc.yaml does not list them as dependencies"


def test_no_stage_module_imports_another_and_no_library_module_imports_a_stage() -> None:
    stage_files = {SRC / "synthmix" / "stages" / f"{module}.py" for module in STAGES.values()}
    for file in sorted((SRC / "synthmix").rglob("*.py")):
        if file.name == "cli.py":
            continue  # the CLI collects the stages
        stages = {p for p in imported(file) if p in stage_files and p != file}
        assert not stages, f"{file.relative_to(SRC)} imports the stage module(s) {sorted(map(str, stages))}"
