"""The vLLM backend: offline batched generation on GPUs (optional extra `synthmix[vllm]`).

vLLM is imported only inside functions, so this module imports (and its errors explain themselves) on
machines without it. Prompts are built exactly as the transformers backend builds them (the model's chat
template for `messages`, the tokenizer for few-shot `text`; the same left truncation to fit the context)
and passed to `LLM.generate` as token ids, so both engines see the same prompt tokens and records carry
the same `n_prompt_tokens`. Sampling uses `SamplingParams(n=1, temperature, top_p, max_tokens, stop, seed)`
with a seed per request, so a sample does not depend on the batch it ran in; vLLM output is still not
bit-reproducible across GPUs or versions (docs.vllm.ai, "Reproducibility"): treat it as a cached fact.

A tuned condition's LoRA adapter is applied per request with `LoRARequest` on the base engine (no merged
copy of the model); `tensor_parallel_size` GPUs share the engine. `batch_size` is the number of prompts per
engine call: each call's results are checkpointed before the next starts, so make it large (hundreds).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synthmix.backends import register
from synthmix.backends.transformers_backend import keep_prompt_end, reject_long_prompts
from synthmix.config import Generation
from synthmix.io import fingerprint
from synthmix.modelstore import ModelError
from synthmix.prompts import cut_at_stop, request_token_ids

INSTALL_HINT = (
    "install it on a CUDA machine with `pip install 'synthmix[vllm]'` (vLLM pins its own CUDA torch; see "
    "README, 'Scaling up'), or set generation.backend: transformers (CPU or GPU) or openai (a running server)"
)
LORA_RANK_SLOTS = (8, 16, 32, 64, 128, 256, 320, 512)  # max_lora_rank values vLLM accepts


def require_vllm() -> None:
    """Raise ModelError with install instructions when the `vllm` package is missing."""
    if importlib.util.find_spec("vllm") is None:
        raise ModelError(
            f"generation.backend 'vllm' needs the vllm package, which is not installed; {INSTALL_HINT}"
        )


def require_gpu() -> None:
    """Raise ModelError when no CUDA GPU is visible (vLLM's PyPI wheels run on CUDA GPUs only)."""
    import torch

    if not torch.cuda.is_available():
        raise ModelError(
            "generation.backend 'vllm' needs a CUDA GPU and none is visible (check CUDA_VISIBLE_DEVICES and "
            "the driver); on a CPU-only machine use generation.backend: transformers"
        )


def request_seed(seed: int, request_id: str) -> int:
    """A seed per request (same rule as the openai backend)."""
    return int(fingerprint(seed, request_id), 16) % (2**31)


def sampling_kwargs(request: dict[str, Any], settings: Generation) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one request (n=1: one record per request)."""
    return {
        "n": 1,
        "temperature": settings.temperature,  # 0 is greedy in vLLM
        "top_p": settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "seed": request_seed(settings.seed, request["id"]),
        "stop": list(request.get("stop") or []) or None,
    }


def lora_rank_slot(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds an adapter of rank `rank`."""
    for slot in LORA_RANK_SLOTS:
        if rank <= slot:
            return slot
    raise ModelError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank ({LORA_RANK_SLOTS[-1]})")


def to_result(
    request: dict[str, Any],
    text: str,
    n_prompt_tokens: int,
    token_ids: list[int],
    finish_reason: str | None,
    prompt_truncated: bool = False,
) -> dict[str, Any]:
    """A synthmix result from one vLLM completion (`CompletionOutput.text/.token_ids/.finish_reason`)."""
    text, stopped = cut_at_stop(text, request.get("stop"))
    if stopped or finish_reason in (None, "stop"):
        finish_reason = "stop"
    return {
        "id": request["id"],
        "response": text.strip(),
        "n_prompt_tokens": n_prompt_tokens,
        "n_tokens": len(token_ids),
        "finish_reason": finish_reason,  # "stop", "length" (or "abort" if vLLM aborted the request)
        "prompt_truncated": prompt_truncated,
        "served": None,  # what an API says it served; a local model is its model_revision
    }


@register("vllm")
class VLLMBackend:
    name = "vllm"

    def __init__(self, model_dir: str, adapter_dir: str | None = None):
        require_vllm()
        require_gpu()
        from transformers import AutoConfig, AutoTokenizer

        self.model_dir = str(model_dir)
        self.adapter_dir = str(adapter_dir) if adapter_dir else None
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.context_length = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
        self.truncated_prompts = 0
        self.llm: Any = None

    def _engine(self, settings: Generation) -> Any:
        """One engine per backend, built on first use (it needs the tensor-parallel size from settings)."""
        if self.llm is None:
            from vllm import LLM

            options: dict[str, Any] = {}
            if self.adapter_dir is not None:
                config = json.loads(
                    (Path(self.adapter_dir) / "adapter_config.json").read_text(encoding="utf-8")
                )
                options.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank_slot(int(config["r"])))
            self.llm = LLM(
                model=self.model_dir,
                tokenizer=self.model_dir,
                tensor_parallel_size=settings.tensor_parallel_size,
                dtype="bfloat16",  # as the transformers backend on a GPU
                seed=settings.seed,
                **options,
            )
            # Truncate prompts to the context the engine actually has (it may differ from config.json).
            model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
            self.context_length = getattr(model_config, "max_model_len", None) or self.context_length
        return self.llm

    def _lora_request(self) -> Any:
        if self.adapter_dir is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(Path(self.adapter_dir).name, 1, self.adapter_dir)

    def generate(
        self, requests: list[dict[str, Any]], settings: Generation, skip: frozenset[str] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """Yield one result per request not in `skip`, one engine call of `batch_size` prompts at a time."""
        from vllm import SamplingParams

        llm = self._engine(settings)
        lora = self._lora_request()
        todo = [r for r in requests if r["id"] not in skip]
        encoded = {r["id"]: request_token_ids(self.tokenizer, r) for r in todo}
        if settings.prompt_overflow == "reject":  # before the first engine call, so nothing is lost
            lengths = {key: len(ids) for key, ids in encoded.items()}
            reject_long_prompts(lengths, self.context_length, settings.max_new_tokens)
        # one engine call of batch_size prompts at a time; each call's results are checkpointed
        for start in range(0, len(todo), settings.batch_size):
            chunk = todo[start : start + settings.batch_size]
            prompts = []
            for request in chunk:
                ids = encoded[request["id"]]
                kept = keep_prompt_end(ids, self.context_length, settings.max_new_tokens)
                if len(kept) < len(ids):
                    self.truncated_prompts += 1
                    warnings.warn(
                        f"prompt '{request['id']}' has {len(ids)} tokens; kept the last {len(kept)}",
                        stacklevel=2,
                    )
                prompts.append({"prompt_token_ids": kept})  # a vllm.inputs.TokensPrompt
            params = [SamplingParams(**sampling_kwargs(r, settings)) for r in chunk]
            outputs = llm.generate(prompts, params, use_tqdm=False, lora_request=lora)
            for request, prompt, output in zip(chunk, prompts, outputs, strict=True):
                completion = output.outputs[0]
                yield to_result(
                    request,
                    completion.text,
                    len(prompt["prompt_token_ids"]),
                    list(completion.token_ids),
                    completion.finish_reason,
                    len(prompt["prompt_token_ids"]) < len(encoded[request["id"]]),
                )
