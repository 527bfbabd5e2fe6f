"""Generation backends, registered by the names used in params.yaml (`generation.backend`).

A backend turns requests (`{"id", "messages"}` for chat models or `{"id", "text", "stop"}` for completion
prompts) into results (`{"id", "response", "n_prompt_tokens", "n_tokens", "finish_reason"}`). Every backend
yields the same result keys, so the records that stages write do not depend on the engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}
# Backend name -> the module that registers it. Only the chosen backend's module is imported, and each
# module keeps its heavy imports (torch, vllm) inside functions, so a missing optional extra only matters
# to the params that ask for it.
_MODULES = {
    "transformers": "synthmix.backends.transformers_backend",
    "vllm": "synthmix.backends.vllm_backend",
    "openai": "synthmix.backends.openai_backend",
}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = factory
        return factory

    return decorate


def load_backend(name: str, model_dir: str, adapter_dir: str | None = None, **options: Any) -> Any:
    """Instantiate the backend `name` for a materialised model (plus an optional LoRA adapter)."""
    if name in _MODULES:
        importlib.import_module(_MODULES[name])  # importing the module registers the backend
    if name not in _REGISTRY:
        available = ", ".join(sorted(set(_REGISTRY) | set(_MODULES)))
        raise ValueError(f"unknown backend '{name}' (available: {available})")
    return _REGISTRY[name](model_dir, adapter_dir=adapter_dir, **options)
