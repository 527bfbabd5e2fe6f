"""Faults in the middle of a stage: a SIGKILL, a full disk. Rerunning must finish with every item exactly once.

Already covered elsewhere: SIGKILL of `python -m synthmix generate` (test_generate.py), in-process crashes with
a torn checkpoint line for the robustness judge, the preference judge and collapse perplexity
(test_robustness_stages.py, test_preference_stage.py, test_collapse_stage.py). Here: a real SIGKILL of the
sample stage and of the preference judging loop, and a disk that fills up while records are checkpointed.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import complete_records

from synthmix import io as sio
from synthmix import paths
from synthmix.cli import main
from synthmix.io import read_jsonl, write_json, write_jsonl
from synthmix.provenance import last_runs

SEED = 42  # the run seed (tiny_params' `seeds: [42]`); per-run folders are <folder>/<condition>/<seed>
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def kill_when(command: list[str], partial: Path, at_least: int, timeout: float = 180) -> int:
    """Start `command`, SIGKILL it once `partial` holds `at_least` records; return how many it held."""
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while complete_records(partial) < at_least and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, (
        f"the stage ended before it could be killed:\n{output[-3000:]}"
    )
    return complete_records(partial)


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(params)), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def sample_project(tmp_path: Path, tiny_model: Path, tiny_params_dict: dict) -> dict:
    """params (target answers one prompt per batch), prepared prompts, models/base/tiny-a, untuned vanilla."""
    from helpers import make_prepared

    params = json.loads(json.dumps(tiny_params_dict))
    params["target"]["generation"].update(batch_size=1, max_new_tokens=24)
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "tiny-a").symlink_to(tiny_model, target_is_directory=True)
    write_json(tmp_path / "models" / "adapters" / "vanilla" / str(SEED) / "manifest.json", {"tuned": False})
    return {
        "root": tmp_path,
        "params_file": write_params(tmp_path / "params.yaml", params),
        "prepared": make_prepared(tmp_path / "prepared", n_train=2, n_test=60),
    }


def sample_argv(p: dict, out: Path) -> list[str]:
    return [
        "--params", str(p["params_file"]), "sample", "vanilla", "--seed", str(SEED), "--out", str(out),
        "--adapter", str(p["root"] / "models" / "adapters" / "vanilla" / str(SEED)), "--prepared", str(p["prepared"]),
        "--models", str(p["root"] / "models" / "base"),
    ]  # fmt: skip


def prompt_ids(p: dict) -> list[str]:
    return [r["id"] for r in read_jsonl(p["prepared"] / "test.jsonl")]


@pytest.mark.slow
def test_killed_sample_stage_resumes_with_every_prompt_once(sample_project: dict) -> None:
    p = sample_project
    out = p["root"] / "data" / "samples" / "vanilla" / str(SEED)
    partial = paths.checkpoint(out / "responses.jsonl")  # the test and the stage run in the project folder
    command = [sys.executable, "-m", "synthmix", *sample_argv(p, out)]
    answered = kill_when(command, partial, at_least=3)
    assert 3 <= answered < 60
    assert not (out / "responses.jsonl").exists() and not (out / "manifest.json").exists()

    rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(rf"sample@vanilla-{SEED}: resuming, (\d+) of 60 already done", rerun.stdout)
    assert resumed and int(resumed.group(1)) >= answered, rerun.stdout
    records = read_jsonl(out / "responses.jsonl")
    assert [r["id"] for r in records] == prompt_ids(p)  # every prompt once, in order
    assert {r["seed"] for r in records} == {SEED}  # sampled with the run seed
    assert last_runs(f"sample@vanilla-{SEED}")[-1]["resumed"] == int(resumed.group(1))
    assert not partial.exists()

    # the same records as an uninterrupted run: batches are seeded by their position
    clean = p["root"] / "data" / "clean" / "vanilla" / str(SEED)
    assert main(sample_argv(p, clean)) == 0
    assert read_jsonl(clean / "responses.jsonl") == records


# ---- the preference judge (one forward pass per judgement) ----


def preference_project(root: Path, tiny_model: Path, params: dict, n_items: int) -> dict:
    """The inputs preference@vanilla-42 reads: a test split, two sources' test answers, the model, no adapter."""
    prepared, generated = root / "data" / "prepared", root / "data" / "generated"
    items = [
        (f"t{i:02d}", f"What does function number {i} return?", f"It returns {i}.") for i in range(n_items)
    ]
    write_jsonl(
        prepared / "test.jsonl",
        [{"id": i, "prompt": q, "response": a, "category": "doc"} for i, q, a in items],
    )
    for source in ("alpha", "beta"):
        write_jsonl(
            generated / source / "responses.jsonl",
            [
                {
                    "id": f"{i}-{source}",
                    "prompt_id": i,
                    "split": "test",
                    "source": source,
                    "response": f"{source}: {a}",
                }
                for i, _, a in items
            ],
        )
    (root / "models" / "base").mkdir(parents=True)
    (root / "models" / "base" / "tiny-a").symlink_to(tiny_model, target_is_directory=True)
    write_json(root / "models" / "adapters" / "vanilla" / str(SEED) / "manifest.json", {"tuned": False})
    params = {
        **json.loads(json.dumps(params)),
        "preference": {"task": "instructions", "n_items": n_items, "absolute_scores": True},
    }
    return {"root": root, "params_file": write_params(root / "params.yaml", params)}


def preference_argv(p: dict, out: Path) -> list[str]:
    """preference@vanilla-42 on the candidates the `candidates` stage chose (run first, in the project)."""
    root = p["root"]
    if not (root / "data" / "candidates" / "candidates.jsonl").exists():
        assert main(["--params", str(p["params_file"]), "candidates"]) == 0
    return [
        "--params", str(p["params_file"]), "preference", "vanilla", "--seed", str(SEED), "--out", str(out),
        "--adapter", str(root / "models" / "adapters" / "vanilla" / str(SEED)),
        "--candidates", str(root / "data" / "candidates"), "--models", str(root / "models" / "base"),
    ]  # fmt: skip


@pytest.mark.slow
def test_killed_preference_judge_resumes_with_every_pair_once(
    tmp_path: Path, tiny_model: Path, tiny_params_dict: dict
) -> None:
    n_items, sources = 40, ["alpha", "beta", "human"]
    p = preference_project(tmp_path, tiny_model, tiny_params_dict, n_items)
    out = tmp_path / "data" / "preference" / "vanilla" / str(SEED)
    partial = paths.checkpoint(out / "judgements.jsonl")
    command = [sys.executable, "-m", "synthmix", *preference_argv(p, out)]
    pairs = n_items * len(list(itertools.permutations(sources, 2)))
    judged = kill_when(command, partial, at_least=10)
    assert 10 <= judged < pairs
    assert not (out / "judgements.jsonl").exists()

    rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(rf"preference@vanilla-{SEED}: resuming, (\d+) of {pairs} already done", rerun.stdout)
    assert resumed and int(resumed.group(1)) >= judged, rerun.stdout
    judgements = read_jsonl(out / "judgements.jsonl")
    seen = [(j["item"], j["first"], j["second"]) for j in judgements]
    expected = {(f"t{i:02d}", a, b) for i in range(n_items) for a, b in itertools.permutations(sources, 2)}
    assert len(seen) == len(set(seen)) == pairs and set(seen) == expected
    absolute = read_jsonl(out / "absolute.jsonl")
    assert sorted((r["item"], r["source"]) for r in absolute) == sorted(
        (f"t{i:02d}", s) for i in range(n_items) for s in sources
    )
    assert not list(out.parent.glob(".*partial*")) and not partial.exists()

    # resumed judgements equal an uninterrupted run's (a forward pass is deterministic)
    clean = tmp_path / "data" / "preference-clean" / "vanilla" / str(SEED)
    assert main(preference_argv(p, clean)) == 0
    reference = {j["id"]: j["logprobs"] for j in read_jsonl(clean / "judgements.jsonl")}
    for judgement in judgements:
        assert judgement["logprobs"] == pytest.approx(reference[judgement["id"]])


# ---- a full disk while records are checkpointed ----


class FullDisk:
    """A partial file's handle on a disk that fills up after `room` more records.

    The record that no longer fits is written only in part, as a full disk leaves it; from then on every
    write, flush and close fails with ENOSPC (closing a buffered file flushes it once more).
    """

    def __init__(self, handle: Any, room: int):
        self.handle, self.room, self.full = handle, room, False

    @staticmethod
    def _error() -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write(self, text: str) -> int:
        if self.full:
            raise self._error()
        if self.room == 0:
            self.full = True
            self.handle.write(text[: len(text) // 2])
            self.handle.flush()
            raise self._error()
        self.room -= 1
        return self.handle.write(text)

    def flush(self) -> None:
        if self.full:
            raise self._error()
        self.handle.flush()

    def fileno(self) -> int:
        return self.handle.fileno()

    def close(self) -> None:
        self.handle.close()
        if self.full:
            raise self._error()


def test_full_disk_keeps_finished_records_and_a_rerun_completes(
    sample_project: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p = sample_project
    from helpers import make_prepared

    make_prepared(p["prepared"], n_train=2, n_test=5)
    out = p["root"] / "data" / "samples" / "vanilla" / str(SEED)
    partial = paths.checkpoint(out / "responses.jsonl")
    enter = sio.ResumableRecords.__enter__

    def enter_on_a_filling_disk(self: sio.ResumableRecords) -> sio.ResumableRecords:
        enter(self)  # opens the partial file and writes its header
        self._handle = FullDisk(self._handle, room=2)
        return self

    with monkeypatch.context() as patch:
        patch.setattr(sio.ResumableRecords, "__enter__", enter_on_a_filling_disk)
        code = main(sample_argv(p, out))
    err = capsys.readouterr().err
    assert code == 2
    message = err[err.index("error: ") :]
    assert "Traceback" not in err
    assert f"No space left on device while saving a finished record to {partial}" in message
    assert "the 2 record(s) saved before are kept there" in message and "rerunning the stage" in message
    # nothing published half: no responses file, no manifest; the partial file keeps the two finished records
    assert not out.exists() or sorted(os.listdir(out)) == []
    assert complete_records(partial) == 2
    assert partial.read_text(encoding="utf-8").count("\n") == 3  # header, two records, and a torn third

    assert main(sample_argv(p, out)) == 0
    assert f"sample@vanilla-{SEED}: resuming, 2 of 5 already done" in capsys.readouterr().out
    records = read_jsonl(out / "responses.jsonl")
    assert [r["id"] for r in records] == prompt_ids(p)
    assert last_runs(f"sample@vanilla-{SEED}")[-1]["resumed"] == 2
    assert not partial.exists()

    clean = p["root"] / "data" / "clean" / "vanilla" / str(SEED)
    assert main(sample_argv(p, clean)) == 0
    assert read_jsonl(clean / "responses.jsonl") == records
