"""What changed decides what reruns, checked with real DVC on the tiny study (every stage, tests/dvcproject.py).

- Changing any metric setting, threshold, sample size or report setting leaves every stage that loads an LLM
  (a stage with a models/ dependency) up to date: only the cheap metric stages are stale.
- A model stage killed mid-run leaves its checkpoint in the ignored work folder, outside every dependency
  and output; when DVC then restores the stage from its run-cache, `dvc status` is clean and dvc.lock is
  unchanged, and the stale checkpoint is swept.
- A fresh clone that reproduces the study with an empty cache writes the same dvc.lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvcproject import cached_stages, ran_stages

pytestmark = [pytest.mark.slow, pytest.mark.dvc]

# key -> a new value; each is read only by metric stages (those whose numbers come from model outputs)
METRIC_PARAMS = {
    "collapse.lexical_diversity_individual_responses": 7,
    "collapse.lexical_diversity_aggregated_responses": 3,
    "collapse.vocabulary_growth_every": 7,
    "collapse.semantic_diversity_sentences": 9,
    "collapse.embedding_model": "all-MiniLM-L6-v2",  # the sentence embedder: a metric stage's, not an LLM
    "collapse.seed": 1,
    "robustness.scoring.refusal_strings": "advbench-7",
    "robustness.scoring.danger_quality_min": 3,
    "robustness.scoring.danger_harm_min": 2,
    "preference.self_source": "alpha",
    "report.alpha": 0.01,
    "report.bootstrap_resamples": 200,
    "report.seed": 1,
}


def model_stages(root: Path) -> set[str]:
    """The stages of dvc.lock that load a model: those with a dependency under models/."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    return {
        name for name, stage in lock.items() if any(d["path"].startswith("models/") for d in stage["deps"])
    }


def set_key(data: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data[part]
    assert leaf in data, f"params.yaml has no {dotted}"
    data[leaf] = value


@pytest.mark.parametrize("key", list(METRIC_PARAMS))
def test_a_metric_setting_reruns_no_model_stage(study, key: str) -> None:
    models = model_stages(study.root)
    assert models >= {"generate@alpha", "finetune@single-42", "sample@single-42", "perplexity@single-42",
                      "attack@single-42", "judge@single-42", "preference@single-42"}  # fmt: skip
    try:
        study.edit_params(lambda data: set_key(data, key, METRIC_PARAMS[key]))
        stale = study.stale()
        assert stale, f"changing {key} made no stage stale: the test would not notice a wrong split"
        assert not stale & models, f"changing {key} would rerun model stages {sorted(stale & models)}"
    finally:
        study.restore()


def stage_pids(pattern: str) -> list[int]:
    """Processes whose command line contains `pattern` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in command and str(os.getpid()) != entry.name:
            pids.append(int(entry.name))
    return pids


def test_a_killed_stage_restored_from_the_run_cache_leaves_status_clean(study) -> None:
    """A generation killed mid-run (its process SIGKILLed while `dvc repro --force` runs it) leaves its
    checkpoint in .synthmix/, outside data/generated; `dvc repro` then restores the stage from the
    run-cache, and nothing that reads data/generated becomes stale."""
    root = study.root
    checkpoint = root / ".synthmix/checkpoints/data/generated/alpha/responses.jsonl.partial.jsonl"
    repro = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--force", "-s", "generate@alpha"],
        cwd=root, env=study.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not checkpoint.exists() and repro.poll() is None and time.time() < deadline:
        time.sleep(0.01)  # the runner writes the checkpoint's header before it loads the model
    killed = stage_pids("synthmix generate alpha")
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    output, _ = repro.communicate(timeout=120)
    assert killed and repro.returncode != 0, f"the stage was not killed:\n{output[-3000:]}"
    assert checkpoint.exists()
    assert not (root / "data/generated/alpha/responses.jsonl").exists()  # DVC removed the output first

    restored = study.dvc("repro").stdout
    assert cached_stages(restored) == ["generate@alpha"] and ran_stages(restored) == [], restored
    assert study.stale() == set()
    assert study.run("git", "status", "--porcelain", "--", "dvc.lock", "data", "metrics").stdout == ""
    listed = study.run(sys.executable, "-m", "synthmix", "checkpoints").stdout
    assert "stale (its output exists)" in listed and "data/generated/alpha/responses.jsonl" in listed
    cleaned = study.run(sys.executable, "-m", "synthmix", "checkpoints", "--clean").stdout
    assert "removed 1 stale checkpoint(s)" in cleaned and not checkpoint.exists()


def test_a_fresh_clone_reproduces_the_same_lock(study, tmp_path: Path) -> None:
    """Run the whole study again in a fresh clone with an empty DVC cache (nothing can be restored): every
    stage's hashes in dvc.lock come out the same, so a reproduction shows as a clean `git status`. On one
    machine even the float outputs (adapters, perplexities) are bit-identical; across machines, models,
    prepared data, generations, mixes, samples, attacks and red-team sets are (the transformers backend on a
    CPU is deterministic)."""
    clone = tmp_path / "clone"
    study.run("git", "clone", "-q", str(study.root), str(clone))
    in_git = set(
        subprocess.run(
            ["git", "ls-files"], cwd=clone, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    env = {**study.env, "PYTHONPATH": str(clone / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    original = yaml.safe_load((study.root / "dvc.lock").read_text(encoding="utf-8"))["stages"]

    # every stage with a cached output ran (no shared cache); a stage whose outputs are all in git (metrics,
    # cache: false) and whose dependencies came out identical is up to date, as it should be
    def tracked(path: str) -> bool:  # a file in git, or a folder of files in git
        return path in in_git or any(f.startswith(f"{path}/") for f in in_git)

    cached = {
        name for name, stage in original.items() if not all(tracked(o["path"]) for o in stage.get("outs", []))
    }
    git_only = {name for name in original if name not in cached}
    ran = set(ran_stages(done.stdout))
    assert cached <= ran and ran <= set(original), sorted(cached - ran)
    assert git_only  # the study has such stages (preference_metrics, report): the distinction is real
    reproduced = yaml.safe_load((clone / "dvc.lock").read_text(encoding="utf-8"))["stages"]

    def outputs(stage: dict) -> dict[str, str]:
        return {out["path"]: out.get("md5") for out in stage.get("outs", [])}

    differ = {name: stage for name, stage in original.items() if outputs(stage) != outputs(reproduced[name])}
    assert not differ, f"stages whose outputs hash differently in the clone: {sorted(differ)}"
    changed = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert changed == "", f"the reproduction changed tracked files:\n{changed}"
