"""A tiny copy of the project as its own git + DVC repository, for tests that run README commands word for word.

The copy holds the real dvc.yaml (optionally cut to some stages), a copy of src/, the project's .gitignore,
.dvcignore, pyproject.toml and .dvc/config, and a params.yaml the test supplies (tiny random models). Commands
run in a clean environment: the venv first on PATH, a private HOME (no ~/.aws, no global git or DVC config).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def readme_blocks(section: str, readme: Path = REPO / "README.md") -> list[str]:
    """The ```sh blocks of the README section `## <section>`, in order, stripped."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    match = re.search(rf"^## {re.escape(section)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"{readme}: no '## {section}' section, but a test runs its sh blocks"
    return [block.strip() for block in re.findall(r"^```sh\n(.*?)^```", match.group(1), flags=re.M | re.S)]


def ran_stages(output: str) -> list[str]:
    """The stages that `dvc repro` / `dvc exp run` output says it ran, in order."""
    return re.findall(r"Running stage '([^']+)'", output)


def cached_stages(output: str) -> list[str]:
    """The stages that DVC restored from its run-cache instead of running."""
    return re.findall(r"Stage '([^']+)' is cached", output)


def clean_env(home: Path) -> dict[str, str]:
    """A clean environment: the venv first on PATH, a private HOME (no ~/.aws, no global git or DVC config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DVC_", "GIT_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        DVC_NO_ANALYTICS="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        GIT_AUTHOR_NAME="Synthmix Test",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="Synthmix Test",
        GIT_COMMITTER_EMAIL="test@example.org",
        GIT_CONFIG_NOSYSTEM="1",
        # Without credentials botocore would ask the EC2 metadata service (169.254.169.254): loopback only here.
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def written_out(params: dict) -> dict:
    """`params` validated, with every key spelt out (defaults and nulls too): dvc.yaml lists keys (e.g.
    target.system_prompt) that the schema fills with defaults, and DVC refuses to run a stage whose params are
    missing from the file. Sections `params` leaves out (e.g. the evaluation stages') get the schema's
    defaults, which name no model or source of the project's params.yaml."""
    from synthmix.config import parse_params

    plain = json.loads(json.dumps(params))  # a plain copy: tiny params share one `generation` dict
    return parse_params(plain, "tiny params").model_dump(mode="json")


def cut_pipeline(stages: Sequence[str] | None) -> dict:
    """The project's dvc.yaml with only `stages` (all when None). Top-level plots are kept only when every
    file they draw comes from a kept stage's outputs."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    if stages is None:
        return spec
    missing = [s for s in stages if s not in spec["stages"]]
    assert not missing, f"dvc.yaml lost the stages {missing}; update the test that keeps them"
    spec["stages"] = {name: stage for name, stage in spec["stages"].items() if name in stages}
    made = json.dumps(spec["stages"])
    for plot in list(spec.get("plots") or []):
        ((_, options),) = plot.items()
        files = list((options or {}).get("y") or {}) if isinstance(options, dict) else []
        templated = {
            re.sub(r"/(vanilla|human|single|multi)/(\d+)/", "/${item.condition}/${item.seed}/", f)
            for f in files
        }
        if not files or not all(f in made for f in templated):
            spec["plots"].remove(plot)
    if not spec.get("plots"):
        spec.pop("plots", None)
    return spec


def make_project(
    work: Path, params: dict, env: dict[str, str], stages: Sequence[str] | None = None, message: str = "tiny"
) -> Path:
    """Lay out the tiny project in `work` (a new folder), `git init` + `dvc init` it and commit; return it."""
    work.mkdir(parents=True)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in (".gitignore", ".dvcignore", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    (work / "dvc.yaml").write_text(yaml.safe_dump(cut_pipeline(stages), sort_keys=False), encoding="utf-8")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    def run(*args: str) -> None:
        subprocess.run(args, cwd=work, env=env, check=True, capture_output=True)

    run("git", "init", "-q", "-b", "main")
    run("dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", work / ".dvc" / "config")  # the committed default remote
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", message)
    return work
