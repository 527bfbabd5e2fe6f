"""The DVC pipeline end to end on tiny models: what reruns when one source, one condition or the set of
conditions changes, and experiments over mixes.

One temporary git repository holds the project's dvc.yaml, a copy of src/synthmix and a tiny params.yaml.
The pipeline is reproduced once up to the sample stages; each test then changes one thing, checks what DVC
reran, and puts the repository back to the committed state. The evaluation stages (collapse, robustness,
preference) are not run here: the targets are the sample stages and everything upstream of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dvcproject import mix_study_params

from synthmix.io import read_json, read_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.dvc]

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ("vanilla", "human", "single", "multi")
SEED = 42  # the tiny params' one run seed
TARGET = "sample"  # the matrix group: every sample@<condition>-<seed> and all that it needs


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        # stage commands are `python -m synthmix ...`: the venv's python, importing the copied src tree
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root / "src"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DVC_NO_ANALYTICS": "1",
        "ITERATIVE_DO_NOT_TRACK": "1",
    }


def sh(root: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=root, env=_env(root), capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(root, sys.executable, "-m", "dvc", *args, check=check)


def repro(root: Path, *targets: str) -> tuple[set[str], set[str]]:
    """Run `dvc repro`; return (stages that ran, stages restored from the run-cache)."""
    output = dvc(root, "repro", *(targets or (TARGET,))).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", output))
    restored = set(re.findall(r"Stage '([^']+)' is cached", output))
    return ran, restored


def status(root: Path) -> set[str]:
    """The stages `dvc status` flags among the targets and everything upstream."""
    return set(json.loads(dvc(root, "status", "--with-deps", "--json", TARGET).stdout or "{}"))


def edit_params(root: Path, change: Callable[[dict], None]) -> None:
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def commit(root: Path, message: str) -> None:
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", message)


def reset(root: Path) -> None:
    """Back to the last commit: params, lock file and the outputs it records."""
    sh(root, "git", "reset", "-q", "--hard")
    sh(root, "git", "clean", "-fdq")  # outputs of stages the commit does not know
    dvc(root, "checkout", "-q", "--with-deps", TARGET)
    assert status(root) == set()


def stage(name: str, condition: str, seed: int = SEED) -> str:
    """mix@<condition> runs once per condition; the stages after it once per condition and seed."""
    return f"{name}@{condition}" if name == "mix" else f"{name}@{condition}-{seed}"


def stages(*names: str, seed: int = SEED) -> set[str]:
    return {stage(name, c, seed) for name in names for c in CONDITIONS}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_raw_model: Path, shared_dvc_cache: Path) -> Path:
    """The study of the README's experiments (same params and names), run up to the sample stages. Its DVC
    cache is shared with that test's project, which then restores these stages from the run-cache."""
    root = tmp_path_factory.mktemp("pipeline")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(
        REPO / "src" / "synthmix", root / "src" / "synthmix", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    (root / "params.yaml").write_text(yaml.safe_dump(mix_study_params(tiny_raw_model), sort_keys=False))
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "config", "user.name", "synthmix tests")
    sh(root, "git", "config", "user.email", "tests@synthmix.invalid")
    sh(root, "git", "config", "commit.gpgsign", "false")
    dvc(root, "init", "-q")
    dvc(root, "cache", "dir", "--local", str(shared_dvc_cache))
    commit(root, "pipeline")
    ran, restored = repro(root)
    # run, or restored from the shared run-cache when another project (tests/test_generations.py) ran them first
    done = ran | restored
    assert done >= {
        "prepare",
        "models@smollm2-135m",
        "models@gemma3-270m",
        "generate@smollm2",
        "generate@gemma3",
    }
    assert done >= stages("mix", "finetune", "sample")
    commit(root, "first run")
    assert status(root) == set()
    return root


def test_dag_and_matched_training_sets(pipeline: Path) -> None:
    dot = dvc(pipeline, "dag", "--dot").stdout
    nodes = set(re.findall(r'^"([^"]+)";$', dot, flags=re.MULTILINE))
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    assert nodes >= {
        "models@smollm2-135m",
        "models@gemma3-270m",
        "prepare",
        "generate@smollm2",
        "generate@gemma3",
    }
    assert nodes >= stages("mix", "finetune", "sample")
    assert {
        ("models@smollm2-135m", "generate@smollm2"),
        ("models@gemma3-270m", "generate@gemma3"),
        ("prepare", "generate@smollm2"),
        ("prepare", "generate@gemma3"),
        ("generate@gemma3", "mix@multi"),
        ("models@smollm2-135m", "finetune@multi-42"),  # the target is smollm2-135m
    } <= edges
    for condition in CONDITIONS:
        assert (f"mix@{condition}", stage("finetune", condition)) in edges
        assert (stage("finetune", condition), stage("sample", condition)) in edges
    assert not any(a == "models@gemma3-270m" and b.startswith("finetune@") for a, b in edges)

    size = yaml.safe_load((pipeline / "params.yaml").read_text())["mix"]["size"]
    sets = {c: read_jsonl(pipeline / "data" / "mixes" / c / "train.jsonl") for c in CONDITIONS}
    assert {c: len(records) for c, records in sets.items()} == {
        "vanilla": 0,
        "human": size,
        "single": size,
        "multi": size,
    }
    assert {r["source"] for r in sets["human"]} == {"human"}
    assert {r["source"] for r in sets["single"]} == {"smollm2"}
    assert sorted(r["source"] for r in sets["multi"]) == ["gemma3"] * (size // 2) + ["smollm2"] * (size // 2)
    assert (
        read_json(pipeline / "metrics" / "mix" / "multi.json")["mix"]["sources"]["gemma3"]["examples"]
        == size // 2
    )

    test_prompts = read_jsonl(pipeline / "data" / "prepared" / "test.jsonl")
    for condition in CONDITIONS:
        samples = read_jsonl(pipeline / "data" / "samples" / condition / str(SEED) / "responses.jsonl")
        assert [r["id"] for r in samples] == [p["id"] for p in test_prompts]
        assert {r["condition"] for r in samples} == {condition} and {r["seed"] for r in samples} == {SEED}
        manifest = read_json(pipeline / "models" / "adapters" / condition / str(SEED) / "manifest.json")
        assert manifest["tuned"] == (condition != "vanilla")
        assert (manifest["stage"], manifest["seed"]) == (stage("finetune", condition), SEED)
        metrics = read_json(pipeline / "metrics" / "finetune" / condition / str(SEED) / "metrics.json")
        assert metrics["tuned"] == manifest["tuned"]
    for source in ("smollm2", "gemma3"):
        generated = read_jsonl(pipeline / "data" / "generated" / source / "responses.jsonl")
        assert {r["split"] for r in generated} == {"train", "test"} and {r["source"] for r in generated} == {
            source
        }


def test_changing_one_source_reruns_only_its_generation(pipeline: Path) -> None:
    before = (pipeline / "data" / "mixes" / "multi" / "train.jsonl").read_text()
    try:
        edit_params(pipeline, lambda p: p["sources"]["gemma3"]["generation"].update(temperature=1.5))
        assert status(pipeline) == {"generate@gemma3"}
        ran, restored = repro(pipeline)
        assert "generate@gemma3" in ran
        assert not ran & {"generate@smollm2", "models@smollm2-135m", "models@gemma3-270m", "prepare"}
        assert not restored & {"generate@smollm2", "generate@gemma3"}
        after = (pipeline / "data" / "mixes" / "multi" / "train.jsonl").read_text()
        assert after != before, "precondition: gemma3's new answers should change the multi-source set"
        assert {"finetune@multi-42", "sample@multi-42"} <= ran
        # conditions that use no gemma3 data keep their adapters and samples: their training sets are unchanged
        unaffected = {
            stage(name, c) for name in ("finetune", "sample") for c in ("vanilla", "human", "single")
        }
        assert not ran & unaffected, (
            f"retrained although their training sets did not change: {sorted(ran & unaffected)}"
        )
    finally:
        reset(pipeline)


def test_adding_a_condition_adds_only_its_stages(pipeline: Path) -> None:
    try:
        edit_params(pipeline, lambda p: p["conditions"].update(gemma3_only={"mix": {"gemma3": 1.0}}))
        ran, restored = repro(pipeline)
        assert ran == {"mix@gemma3_only", "finetune@gemma3_only-42", "sample@gemma3_only-42"}
        assert restored == set()
        records = read_jsonl(pipeline / "data" / "mixes" / "gemma3_only" / "train.jsonl")
        size = yaml.safe_load((pipeline / "params.yaml").read_text())["mix"]["size"]
        assert len(records) == size and {r["source"] for r in records} == {"gemma3"}
    finally:
        reset(pipeline)


def test_an_experiment_over_one_conditions_mix_reruns_only_its_stages(pipeline: Path) -> None:
    try:
        edit_params(
            pipeline, lambda p: p["conditions"]["multi"].update(mix={"smollm2": 0.25, "gemma3": 0.75})
        )
        assert status(pipeline) == {"mix@multi", "finetune@multi-42"}
        sh(pipeline, "git", "checkout", "-q", "--", "params.yaml")

        mix = "conditions.multi.mix={smollm2: 0.25, gemma3: 0.75}"
        done = dvc(pipeline, "exp", "run", "-n", "mix-25-75", "-S", mix, TARGET)
        ran = set(re.findall(r"Running stage '([^']+)'", done.stdout))
        restored = set(re.findall(r"Stage '([^']+)' is cached", done.stdout))
        assert ran == {"mix@multi", "finetune@multi-42", "sample@multi-42"}
        assert not any(stage.startswith("generate@") for stage in ran | restored)
        sources = [r["source"] for r in read_jsonl(pipeline / "data" / "mixes" / "multi" / "train.jsonl")]
        size = yaml.safe_load((pipeline / "params.yaml").read_text())["mix"]["size"]
        assert (sources.count("smollm2"), sources.count("gemma3")) == (size // 4, size - size // 4)

        shown = json.loads(dvc(pipeline, "exp", "show", "--json").stdout)
        experiments = [
            rev for commit_ in shown for exp in commit_.get("experiments") or [] for rev in exp["revs"]
        ]
        (experiment,) = [rev for rev in experiments if rev.get("name") == "mix-25-75"]
        params = experiment["data"]["params"]["params.yaml"]["data"]
        assert params["conditions"]["multi"]["mix"] == {"smollm2": 0.25, "gemma3": 0.75}
        metrics = experiment["data"]["metrics"]["metrics/mix/multi.json"]["data"]["mix"]
        assert metrics["examples"] == size
        assert metrics["sources"]["smollm2"] == {"examples": size // 4, "share": 0.25, "weight": 0.25}
        assert metrics["sources"]["gemma3"]["examples"] == size - size // 4
        assert (
            experiment["data"]["metrics"]["metrics/finetune/multi/42/metrics.json"]["data"]["tuned"] is True
        )
        # the workspace's own row still shows the committed mix
        baseline = next(c for c in shown if c["rev"] != "workspace")
        assert baseline["data"]["params"]["params.yaml"]["data"]["conditions"]["multi"]["mix"] == {
            "smollm2": 0.5,
            "gemma3": 0.5,
        }
    finally:
        reset(pipeline)


def test_adding_a_seed_runs_only_the_new_seeds_stages(pipeline: Path) -> None:
    """`seeds: [42, 7]`: finetune and sample run once more per condition for seed 7; seed 42's runs, the mixes
    and everything upstream stay as they are. The new seed trains and samples differently. Run as the README's
    experiment `dvc exp run -S 'seeds=[42, 43, 44]'`, with a list on the command line."""
    try:
        edit_params(pipeline, lambda p: p.update(seeds=[SEED, 7]))
        assert status(pipeline) == stages("finetune", "sample", seed=7)
        sh(pipeline, "git", "checkout", "-q", "--", "params.yaml")
        output = dvc(pipeline, "exp", "run", "-n", "two-seeds", "-S", f"seeds=[{SEED}, 7]", TARGET).stdout
        ran = set(re.findall(r"Running stage '([^']+)'", output))
        assert ran == stages("finetune", "sample", seed=7)
        assert not re.findall(r"Stage '([^']+)' is cached", output)
        assert yaml.safe_load((pipeline / "params.yaml").read_text())["seeds"] == [SEED, 7]
        for condition in ("human", "multi"):
            runs = {s: pipeline / "models" / "adapters" / condition / str(s) for s in (SEED, 7)}
            assert read_json(runs[7] / "manifest.json")["seed"] == 7
            assert (runs[7] / "adapter_model.safetensors").read_bytes() != (
                runs[SEED] / "adapter_model.safetensors"
            ).read_bytes(), "another training seed must give another adapter"
        samples = read_jsonl(pipeline / "data" / "samples" / "vanilla" / "7" / "responses.jsonl")
        assert {r["seed"] for r in samples} == {7}
        # dropping seed 42 leaves seed 7's runs up to date: no run depends on the list itself
        edit_params(pipeline, lambda p: p.update(seeds=[7]))
        assert status(pipeline) == set()
    finally:
        reset(pipeline)
