"""Model backends, registered by the names used in params.yaml (`generation.backend`).

A backend offers the primitives that every evaluation is built on (lm-evaluation-harness's narrow `LM`
interface, adapted to chat models). Each takes a list of requests and the ids to skip (already done, from a
checkpoint) and yields one result per remaining request; `synthmix.runner.run_resumable` checkpoints them.

- `generate(requests, settings, skip)`: sample an answer. Requests are `{"id", "messages"}` (chat) or
  `{"id", "text", "stop"}` (few-shot completion); results `{"id", "response", "n_prompt_tokens",
  "n_tokens", "finish_reason", "prompt_truncated", "served"}` with the same keys from every backend (`served`:
  what an API says it served, `{"model", "system_fingerprint"}`; None for a local model).
- `next_token_logprobs(requests, skip, settings)`: the log-probabilities of the first token the model would
  write; `settings` are the job's generation settings (an API backend's endpoint, vLLM's tensor-parallel size).
  Requests are `{"id", "messages", "prefill", "tokens", "top_n"}`: the chat prompt with the generation
  prompt, then `prefill` (text the answer is forced to start with, may be empty); `tokens` are strings whose
  log-probability is wanted. Results `{"id", "n_prompt_tokens", "tokens": {string: logprob or None}, "top":
  [[string, logprob], ...]}`: None where a string is not one token of the vocabulary, `top` the `top_n` most
  likely tokens (decoded), log-probabilities of the raw (unprocessed) distribution over the vocabulary.
- `loglikelihood(requests, skip)`: the summed negative log-likelihood of a given answer. Requests are
  `{"id", "messages", "response", "max_length"}`; results `{"id", "nll", "n_tokens", "nll_end", "n_end",
  "truncated"}`: the response's tokens and, apart, the chat template's end-of-turn tokens after it (see
  `synthmix.metrics.perplexity` for which tokens each definition scores).

A backend that cannot offer a primitive raises `UnsupportedPrimitive` with what to use instead. Backends live
in their own modules and register themselves with `@register(name)`; only the chosen backend's module is
imported, and each keeps its heavy imports (torch, vllm) inside functions, so a missing optional extra only
matters to the params that ask for it. Adding a backend: a module with a class decorated `@register("name")`
and its line in `BUILTIN` below (or, for a backend of your own, an import of your module before the run).
"""

from __future__ import annotations

import importlib
from typing import Any

from synthmix.registry import Registry

BACKENDS: Registry[Any] = Registry("backend")
# Backend name -> the module that registers it, imported on first use.
BUILTIN = {
    "transformers": "synthmix.backends.transformers_backend",
    "vllm": "synthmix.backends.vllm_backend",
    "openai": "synthmix.backends.openai_backend",
}
PRIMITIVES = ("generate", "next_token_logprobs", "loglikelihood")


class UnsupportedPrimitive(RuntimeError):
    """A backend was asked for a primitive it cannot provide; the message says which backends can."""


def register(name: str) -> Any:
    """Class decorator: register a backend under `name`."""
    return BACKENDS.register(name)


def available() -> list[str]:
    """Every backend name a params file may use: the built-in ones and any registered since."""
    return [*BUILTIN, *(name for name in BACKENDS.names() if name not in BUILTIN)]


def load_backend(name: str, model_dir: str, adapter_dir: str | None = None, **options: Any) -> Any:
    """Instantiate the backend `name` for a materialised model (plus an optional LoRA adapter)."""
    if name in BUILTIN and name not in BACKENDS:
        importlib.import_module(BUILTIN[name])  # importing the module registers the backend
    if name not in BACKENDS:
        raise ValueError(BACKENDS.unknown(name, tuple(BUILTIN)))
    return BACKENDS.get(name)(model_dir, adapter_dir=adapter_dir, **options)


def require(backend: Any, primitive: str) -> Any:
    """The bound method `primitive` of `backend`, or UnsupportedPrimitive naming the backends that have it."""
    method = getattr(backend, primitive, None)
    if method is None:
        raise UnsupportedPrimitive(
            f"backend '{getattr(backend, 'name', type(backend).__name__)}' cannot provide {primitive}; "
            f"use a backend that can ({', '.join(n for n in available() if supports(n, primitive))})"
        )
    return method


def supports(name: str, primitive: str) -> bool:
    """Whether the backend `name` offers `primitive` (its module is imported; no model is loaded)."""
    if name in BUILTIN and name not in BACKENDS:
        importlib.import_module(BUILTIN[name])
    return name in BACKENDS and callable(getattr(BACKENDS.get(name), primitive, None))
