"""Generation backends, registered by the names used in params.yaml (`generation.backend`).

A backend turns requests (`{"id", "messages"}` for chat models or `{"id", "text", "stop"}` for completion
prompts) into results (`{"id", "response", "n_prompt_tokens", "n_tokens", "finish_reason"}`). Every backend
yields the same result keys, so the records that stages write do not depend on the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = factory
        return factory

    return decorate


def load_backend(name: str, model_dir: str, adapter_dir: str | None = None, **options: Any) -> Any:
    """Instantiate the backend `name` for a materialised model (plus an optional LoRA adapter)."""
    # Importing the modules registers them; each keeps its heavy imports inside functions.
    from synthmix.backends import transformers_backend  # noqa: F401

    if name not in _REGISTRY:
        raise ValueError(f"unknown backend '{name}' (available: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name](model_dir, adapter_dir=adapter_dir, **options)
