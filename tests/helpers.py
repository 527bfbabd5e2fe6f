"""Helpers shared by the tests: tiny params, prepared prompts, red-team settings (not fixtures, not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from synthmix.cli import main
from synthmix.io import write_jsonl

JUDGE_GENERATION = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 6, "batch_size": 4, "seed": 7}


def tiny_params(tiny_raw_model: Path) -> dict:
    """A params dict for a fast pipeline on two tiny random models (same shape as params.yaml)."""
    generation = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 8, "batch_size": 4, "seed": 42}
    return {
        "seeds": [42],
        "models": {"tiny-a": {"path": str(tiny_raw_model)}, "tiny-b": {"path": str(tiny_raw_model)}},
        "data": {
            "dataset": "pydoc",
            "max_train_prompts": 16,
            "max_test_prompts": 6,
            "max_response_chars": 200,
        },
        "sources": {
            "alpha": {"model": "tiny-a", "generation": generation},
            "beta": {"model": "tiny-b", "prompt_format": "fewshot", "generation": generation},
        },
        # the target samples with each run seed (`seeds`), so its generation settings name none
        "target": {"model": "tiny-a", "own_source": "alpha", "generation": {**generation, "seed": None}},
        "conditions": {
            "vanilla": {"mix": {}},
            "human": {"mix": {"human": 1.0}},
            "single": {"mix": {"alpha": 1.0}},
            "multi": {"mix": {"alpha": 0.5, "beta": 0.5}},
        },
        "mix": {"size": 12, "seed": 42},
        "finetune": {
            "lora_r": 4,
            "lora_alpha": 8,
            "target_modules": ["q_proj", "v_proj"],
            "learning_rate": 5e-3,
            "num_epochs": 1,
            "batch_size": 4,
            "gradient_accumulation_steps": 1,
            "eval_steps": 2,
            "validation_fraction": 0.2,
            "max_length": 128,
        },
    }


def make_prepared(folder: Path, n_train: int, n_test: int) -> Path:
    """data/prepared as the prepare stage writes it, from the first CPython docs topics."""
    from pydoc_data.topics import topics

    names = sorted(topics)
    items = [
        {
            "id": f"q{i:03d}",
            "prompt": f"Explain {name} in Python.",
            "response": topics[name][:80],
            "category": c,
        }
        for i, (name, c) in enumerate(zip(names, ["language", "library"] * 200, strict=False))
    ]
    write_jsonl(folder / "train.jsonl", items[:n_train])
    write_jsonl(folder / "test.jsonl", items[n_train : n_train + n_test])
    return folder


def robustness_params(judge_model: str = "tiny-a") -> dict:
    return {
        "prompts": {
            "n_harmful": 2,
            "n_templates": 1,
            "n_jailbreak_prompts": 2,
            "max_template_chars": 300,
            "n_benign": 2,
            "seed": 3,
        },
        "attack": {"max_new_tokens": 5},
        "judge": {"model": judge_model, "generation": JUDGE_GENERATION},
    }


def unavailable(tool: str, reason: str) -> None:
    """A real server or engine a test needs cannot run here: skip, unless SYNTHMIX_REQUIRE names the tool
    (CI sets SYNTHMIX_REQUIRE=slurm,vllm after installing them), where the test fails instead: CI must never
    pass by skipping what it installed."""
    import os

    import pytest

    required = {name.strip() for name in os.environ.get("SYNTHMIX_REQUIRE", "").split(",") if name.strip()}
    if tool in required:
        pytest.fail(f"{tool} is required here (SYNTHMIX_REQUIRE) but unavailable: {reason}")
    pytest.skip(f"no {tool}: {reason}")


def complete_records(partial: Path) -> int:
    """Finished records in a checkpoint being written (its header and a torn last line not counted): how far a
    run got before it was killed."""
    if not partial.exists():
        return 0
    count = 0
    for line in partial.read_text(encoding="utf-8").split("\n")[1:]:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            break
        count += 1
    return count


# the fields of every generation record, whichever backend wrote it
RECORD_KEYS = {
    "id", "prompt_id", "split", "category", "source", "model", "response", "n_prompt_tokens", "n_tokens",
    "finish_reason", "prompt_truncated", "served", "model_revision", "backend", "sampling", "seed",
}  # fmt: skip


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run `synthmix <argv>` in-process; return (exit code, stderr). Uncaught exceptions fail the test."""
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_error(code: int, err: str, *phrases: str) -> None:
    """Exit status 2 and one `error: ...` message (after any progress bars) holding every phrase."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(starts) == 1, err
    message = "\n".join(lines[starts[0] :])
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in:\n{message}"


def dump(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False), encoding="utf-8")
    return path
