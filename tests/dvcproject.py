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
from collections.abc import Callable, Sequence
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


def run_dvc(root: Path, env: dict[str, str], *args: str, timeout: float = 1500) -> str:
    """`dvc <args>` in the project `root`; its stdout, or an AssertionError with the end of its output."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


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
    work: Path,
    params: dict,
    env: dict[str, str],
    stages: Sequence[str] | None = None,
    message: str = "tiny",
    cache: Path | None = None,
) -> Path:
    """Lay out the tiny project in `work` (a new folder), `git init` + `dvc init` it and commit; return it.
    `cache`: a DVC cache folder shared with other projects (set in .dvc/config.local, not committed)."""
    work.mkdir(parents=True)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in (".gitignore", ".dvcignore", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    # the report's dependency on later generations (a tracked README keeps it) and the plot template
    for name in ("generations/README.md", "plots/generations.json"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, work / name)
    (work / "dvc.yaml").write_text(yaml.safe_dump(cut_pipeline(stages), sort_keys=False), encoding="utf-8")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    def run(*args: str) -> None:
        subprocess.run(args, cwd=work, env=env, check=True, capture_output=True)

    run("git", "init", "-q", "-b", "main")
    run("dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", work / ".dvc" / "config")  # the committed default remote
    if cache is not None:
        run(sys.executable, "-m", "dvc", "cache", "dir", "--local", str(cache))
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", message)
    return work


TINY_SUMMARIES = {"n_articles": 2, "max_article_chars": 200}  # two short docstring articles to summarise


def mix_study_params(raw_model: Path) -> dict:
    """params.yaml's names (models, sources, conditions) on tiny random models, every key written out."""
    from helpers import tiny_params

    params = tiny_params(raw_model)
    generation = params["sources"]["alpha"]["generation"]
    params["models"] = {name: {"path": str(raw_model)} for name in ("smollm2-135m", "gemma3-270m")}
    params["sources"] = {
        "smollm2": {"model": "smollm2-135m", "generation": generation},
        "gemma3": {"model": "gemma3-270m", "prompt_format": "fewshot", "generation": generation},
    }
    params["target"] = {**params["target"], "model": "smollm2-135m", "own_source": "smollm2"}
    params["conditions"] = {
        "vanilla": {"mix": {}},
        "human": {"mix": {"human": 1.0}},
        "single": {"mix": {"smollm2": 1.0}},
        "multi": {"mix": {"smollm2": 0.5, "gemma3": 0.5}},
    }
    params["collapse"] = {"embedding_model": None, "vocabulary_growth_every": 10}
    params["preference"] = {"n_items": 2}  # 2 articles x 3 candidates: 12 pairwise + 6 absolute judgements
    params["summaries"] = TINY_SUMMARIES
    return written_out(params)


# ---- the tiny study: every stage, one source, one tuned condition ----

STUDY_STAGES = (
    "models", "prepare", "generate", "articles", "summarize", "mix", "finetune", "sample", "perplexity", "collapse", "data_diversity",
    "redteam", "attack", "judge", "robustness", "candidates", "preference", "preference_metrics", "report",
)  # fmt: skip


def tiny_study(raw_model: Path) -> dict:
    """params for the whole pipeline on the tiny random model: one model, one source, one tuned condition,
    tiny evaluation sizes, no embedding model; every key written out."""
    from helpers import robustness_params, tiny_params

    params = tiny_params(raw_model)
    params["models"] = {"tiny-a": params["models"]["tiny-a"]}
    params["sources"] = {"alpha": params["sources"]["alpha"]}
    params["conditions"] = {"single": params["conditions"]["single"]}
    params["data"].update(max_train_prompts=12, max_test_prompts=4)
    params["mix"]["size"] = 8
    params["collapse"] = {"embedding_model": None}
    params["robustness"] = robustness_params("tiny-a")
    params["preference"] = {"n_items": 2}
    params["summaries"] = TINY_SUMMARIES
    params["report"] = {"bootstrap_resamples": 100}
    return written_out(params)


class Study:
    """The tiny study as its own git + DVC project, reproduced once (`first_run` is what `dvc repro` printed)
    and committed. Tests that change it put it back (`restore`)."""

    def __init__(self, root: Path, env: dict[str, str], params: dict, scratch: Path):
        self.root, self.env, self.params, self.scratch = root, env, params, scratch
        self.first_run = ""

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def stale(self) -> set[str]:
        """The stages `dvc status` reports as changed."""
        return set(json.loads(self.dvc("status", "--json").stdout or "{}"))

    def edit_params(self, change: Callable[[dict], None]) -> None:
        path = self.root / "params.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def restore(self) -> None:
        """Back to the committed params, lock and outputs."""
        self.run("git", "checkout", "-q", "--", "params.yaml", "dvc.lock")
        self.dvc("checkout", "-q")


def build_study(work: Path, raw_model: Path) -> Study:
    env = clean_env(work / "home")
    scratch = work / "tmp"
    scratch.mkdir(parents=True)
    env.update(
        PYTHONPATH=str(work / "project" / "src"),  # stage commands import the copy
        PYTHONDONTWRITEBYTECODE="1",  # no __pycache__ in the copied src: every new file is the pipeline's
        TMPDIR=str(scratch),  # Trainer checkpoints go here, and must be cleaned up
    )
    params = tiny_study(raw_model)
    root = make_project(work / "project", params, env, stages=STUDY_STAGES)
    study = Study(root, env, params, scratch)
    study.first_run = study.dvc("repro").stdout
    study.run("git", "add", "-A")
    study.run("git", "commit", "-q", "-m", "first run")
    return study
