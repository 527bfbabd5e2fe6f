"""README "Compare mixes: DVC experiments", word for word, on a tiny copy of the project.

The copy has the real dvc.yaml cut to the stages up to `sample` plus `collapse` and the two preference stages
(their metrics are the columns the README's table keeps), the same source and condition names as params.yaml
(`smollm2`, `gemma3`; vanilla, human, single, multi) but tiny random models, and no embedder
(`collapse.embedding_model: null`). The test runs the pipeline once, commits as the README says, then runs the
section's sh blocks in order and checks what they promise: only multi's stages rerun for a new mix, the queued
sweep finishes, `dvc exp show` puts the mixes side by side with metrics, `dvc plots diff` writes one page.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dvcproject import cached_stages, clean_env, make_project, mix_study_params, ran_stages, readme_blocks

SECTION = "Compare mixes: DVC experiments"
BLOCKS = ("workspace", "queue", "compare", "plots")  # the section's sh blocks, in order
STAGES = ("models", "prepare", "generate", "articles", "summarize", "mix", "finetune", "sample", "perplexity",
          "collapse", "candidates", "preference", "preference_metrics")  # fmt: skip
# What one condition's new mix reruns, in the cut pipeline (the full one adds attack, judge, robustness and
# report); candidates is shared by every condition and does not rerun.
MULTI_STAGES = ["mix@multi", *(f"{stage}@multi-42" for stage in STAGES[6:] if stage != "candidates")]
CONDITIONS = ("vanilla", "human", "single", "multi")
EXPERIMENT = re.compile(r"-n (\S+) -S 'conditions\.multi\.mix=\{smollm2: ([\d.]+), gemma3: ([\d.]+)\}'")
QUEUE_WAIT_S = 300


def section_text() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(SECTION)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {SECTION}' section"
    return match.group(1)


def commit_command() -> str:
    """The inline `git add ... && git commit ...` that the section asks for before any experiment."""
    match = re.search(r"`(git add -A && git commit [^`]+)`", section_text())
    assert match, f"README '{SECTION}' should say how to commit first (`git add -A && git commit ...`)"
    return match.group(1)


def keep_pattern() -> str:
    """The --keep regex of the section's `dvc exp show --md` command."""
    match = re.search(r"dvc exp show --md --keep '([^']+)' --drop '\.\*'", "\n".join(readme_blocks(SECTION)))
    assert match, f"README '{SECTION}' should show a table with `dvc exp show --md --keep '...' --drop '.*'`"
    return match.group(1)


def markdown_rows(table: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the markdown table that `dvc exp show --md` prints."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, f"no markdown table in:\n{table}"
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], cells[2:]


@dataclass
class Walkthrough:
    root: Path
    env: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)  # block name -> its output
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        return done

    def shell(self, name: str, script: str) -> str:
        # Output to a file, not a pipe: the queue worker that `dvc queue start` leaves behind inherits it, and
        # a pipe would make this wait for the worker instead of returning at once as the README says.
        log = self.root.parent / f"{name}.log"
        start = time.monotonic()
        with open(log, "w", encoding="utf-8") as out:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
        self.seconds[name] = time.monotonic() - start
        output = log.read_text(encoding="utf-8")
        if done.returncode != 0:
            pytest.fail(f"README block '{name}' failed ({done.returncode}):\n{script}\n---\n{output[-6000:]}")
        self.outputs[name] = output
        return output

    def block(self, name: str) -> str:
        blocks = readme_blocks(SECTION)
        assert len(blocks) == len(BLOCKS), f"README '{SECTION}' should have the sh blocks {BLOCKS}"
        return self.shell(name, blocks[BLOCKS.index(name)])

    def queue_status(self) -> dict[str, str]:
        """experiment name -> status, from `dvc queue status`."""
        table = self.run("dvc", "queue", "status").stdout
        return dict(re.findall(r"^\w+\s+(\S+)\s+.*?\s(Queued|Running|Success|Failed)\s*$", table, flags=re.M))


@pytest.fixture(scope="module")
def walkthrough(tiny_raw_model: Path, tmp_path_factory: pytest.TempPathFactory, shared_dvc_cache: Path):
    root = tmp_path_factory.mktemp("experiments")
    (root / "home").mkdir()
    env = clean_env(root / "home")
    env["PYTHONPATH"] = str(root / "project" / "src")  # stage commands import the project's copy of synthmix
    # the DVC cache is shared with test_pipeline_dvc's study (same params): stages it ran are restored here
    project = make_project(
        root / "project", mix_study_params(tiny_raw_model), env, STAGES, "synthmix (tiny)", shared_dvc_cache
    )
    walk = Walkthrough(project, env)
    walk.run("python", "-m", "synthmix", "check-params")  # every key dvc.yaml reads is written out
    start = time.monotonic()
    first = walk.run("dvc", "repro")
    walk.seconds["repro"] = time.monotonic() - start
    done = set(ran_stages(first.stdout)) | set(cached_stages(first.stdout))
    assert {f"{s}@{c}-42" for s in ("sample", "collapse", "preference_metrics") for c in CONDITIONS} <= done
    walk.shell("commit", commit_command())
    assert walk.run("git", "status", "--porcelain").stdout == ""
    try:
        walk.block("workspace")
        walk.block("queue")
        # `dvc queue start` returns at once: wait (bounded) for the worker, as a reader would
        start = time.monotonic()
        deadline = start + QUEUE_WAIT_S
        while not (states := walk.queue_status()) or not set(states.values()) <= {"Success", "Failed"}:
            assert time.monotonic() < deadline, (
                f"queued experiments not done after {QUEUE_WAIT_S} s: {states}"
            )
            time.sleep(5)  # each `dvc queue status` is a process competing with the worker
        walk.seconds["queue_wait"] = time.monotonic() - start
        walk.outputs["queue_status"] = walk.run("dvc", "queue", "status").stdout
        walk.block("compare")
        walk.block("plots")
        yield walk
    finally:
        walk.run("dvc", "queue", "stop", "--kill", check=False)  # the worker this test started, if still up
        print("seconds:", {name: round(s) for name, s in walk.seconds.items()})
        print(walk.outputs.get("compare", ""))  # the README's table, with `pytest -s`


def readme_experiments() -> dict[str, tuple[float, float]]:
    """experiment name -> (smollm2 share, gemma3 share), from the section's `dvc exp run` lines."""
    found = EXPERIMENT.findall("\n".join(readme_blocks(SECTION)))
    return {name: (float(a), float(b)) for name, a, b in found}


def queued(walkthrough: Walkthrough) -> list[str]:
    """The README's experiments that the queue block queued."""
    return [
        name for name in readme_experiments() if f"Queued experiment '{name}'" in walkthrough.outputs["queue"]
    ]


def test_section_has_the_tested_blocks() -> None:
    blocks = readme_blocks(SECTION)
    assert len(blocks) == len(BLOCKS), f"README '{SECTION}' should have {len(BLOCKS)} sh blocks {BLOCKS}"
    experiments = readme_experiments()
    assert len(set(experiments.values())) >= 3, f"at least three mixes side by side: {experiments}"
    assert "dvc queue start" in blocks[1] and "--queue" in blocks[1]
    assert "dvc plots diff" in blocks[3]
    keep_pattern()
    commit_command()


@pytest.mark.slow
@pytest.mark.dvc
def test_a_new_mix_reruns_only_multis_stages(walkthrough: Walkthrough) -> None:
    runs = walkthrough.outputs["workspace"].split("Ran experiment(s)")[:-1]
    assert runs, walkthrough.outputs["workspace"][-3000:]
    for output in runs:
        ran = ran_stages(output)
        # run, or restored from the shared run-cache where another test's project ran the same mix first
        done = sorted(set(ran) | set(cached_stages(output)))
        assert done == sorted(MULTI_STAGES), (
            f"a new mix for multi reran {ran}, restored {cached_stages(output)}"
        )
        assert not any(s.startswith("generate@") for s in done)
    for name in queued(walkthrough):
        logs = walkthrough.run("dvc", "queue", "logs", name).stdout
        ran = ran_stages(logs)
        assert all(s == "mix@multi" or s.endswith("@multi-42") for s in ran), f"{name} reran {ran}"
        assert not any(s.startswith("generate@") for s in ran + cached_stages(logs))


@pytest.mark.slow
@pytest.mark.dvc
def test_the_queued_sweep_completes(walkthrough: Walkthrough) -> None:
    assert "Started '1' new experiments task queue worker" in walkthrough.outputs["queue"]
    names = queued(walkthrough)
    assert len(names) >= 2, walkthrough.outputs["queue"]
    states = walkthrough.queue_status()
    assert {name: states.get(name) for name in names} == dict.fromkeys(names, "Success"), states


@pytest.mark.slow
@pytest.mark.dvc
def test_exp_show_puts_the_mixes_side_by_side(walkthrough: Walkthrough) -> None:
    header, rows = markdown_rows(walkthrough.outputs["compare"])
    keep = re.compile(keep_pattern())
    assert all(keep.match(column) for column in header), f"--drop '.*' left other columns: {header}"
    assert len(header) <= 7, f"the readable table should stay narrow: {header}"
    mix_columns = {"conditions.multi.mix.smollm2": 0, "conditions.multi.mix.gemma3": 1}
    metric_columns = [c for c in header if c.startswith("metrics/")]
    assert {
        "metrics/collapse/multi/42/metrics.json:human_text_perplexity.median",
        "metrics/preference/multi/42/metrics.json:self_preference",
    } <= set(metric_columns), header
    shown = {}
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        name = re.search(r"\[(.+)\]", cells["Experiment"])
        if name:
            shown[name.group(1)] = cells
    experiments = readme_experiments()
    assert set(experiments) <= set(shown), (
        f"experiments missing from the table: {set(experiments) - set(shown)}"
    )
    for name, mix in experiments.items():
        cells = shown[name]
        assert tuple(float(cells[c]) for c in mix_columns) == mix, cells
        for column in metric_columns:
            float(cells[column])  # a value, not "-" or "!"
    assert len({experiments[name] for name in shown if name in experiments}) >= 3

    with open(walkthrough.root / "experiments.csv", newline="", encoding="utf-8") as file:
        table = {row["Experiment"]: row for row in csv.DictReader(file)}
    for name, (smollm2, gemma3) in experiments.items():
        assert float(table[name]["conditions.multi.mix.smollm2"]) == smollm2
        assert float(table[name]["conditions.multi.mix.gemma3"]) == gemma3
        # the column is named by its key alone when no other metrics file has it
        (share,) = [c for c in table[name] if c.split(":")[-1] == "mix.sources.gemma3.share"]
        assert float(table[name][share]) == pytest.approx(gemma3, abs=0.1)


@pytest.mark.slow
@pytest.mark.dvc
def test_keep_pattern_names_metric_keys_the_stages_write(walkthrough: Walkthrough) -> None:
    """Every metric the README's --keep names is a key of the condition's metrics files. Some (Self-BLEU)
    are null on a tiny random model's outputs and so have no column here, but do in the real pipeline."""
    keys = set()
    for stage in ("collapse", "preference"):
        data = json.loads(
            (walkthrough.root / "metrics" / stage / "multi" / "42" / "metrics.json").read_text()
        )
        stack = [(f"metrics/{stage}/multi/42/metrics.json:", data)]
        while stack:
            prefix, node = stack.pop()
            for key, value in node.items():
                if isinstance(value, dict):
                    stack.append((f"{prefix}{key}.", value))
                else:
                    keys.add(f"{prefix}{key}")
    pattern = keep_pattern()
    named = re.search(r":\(([^()]+)\)\$?$", pattern)  # the metric keys: ...metrics.json:(a|b|c)$
    assert named, f"--keep should end with the metric keys, ':(key|key...)': {pattern}"
    for key in named.group(1).split("|"):
        alone = re.compile(pattern[: named.start(1)] + key + pattern[named.end(1) :])
        assert any(alone.match(k) for k in keys), f"--keep names {key!r}, which no metrics file has: {keys}"


@pytest.mark.slow
@pytest.mark.dvc
def test_plots_diff_writes_one_page(walkthrough: Walkthrough) -> None:
    blocks = readme_blocks(SECTION)
    out = re.search(r"dvc plots diff (.+?) -o (\S+)", blocks[BLOCKS.index("plots")])
    assert out, blocks[-1]
    page = walkthrough.root / out.group(2) / "index.html"
    assert page.is_file(), walkthrough.outputs["plots"]
    html = page.read_text(encoding="utf-8")
    for name in out.group(1).split():
        assert f'"rev": "{name}"' in html
    assert "Vocabulary growth" in html and "metrics/finetune/multi/42/plots/metrics/train/loss.tsv" in html
