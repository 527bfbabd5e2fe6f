"""The OpenAI-compatible backend: any server that speaks `/v1/chat/completions` (and `/v1/completions`).

`vllm serve`, SGLang, TGI, llama.cpp's server and hosted APIs all speak it. Chat requests go to
`<api_base>/chat/completions` (the server applies the model's chat template); few-shot text requests go to
`<api_base>/completions`. Token counts come from the response's `usage`, so records have the same keys and
types as the transformers backend's.

Model names: `api_model`, or else the model's key under `models` (serve it under that name, e.g.
`vllm serve models/base/llama-8b --served-model-name llama-8b`). A run's LoRA adapter is asked for by its run
name `<condition>-<seed>`, from its folder models/adapters/<condition>/<seed>
(`--enable-lora --lora-modules single-42=models/adapters/single/42 ...`).

Up to `max_concurrency` requests are in flight; results are yielded as they complete, so `answer_all`
checkpoints each one and a killed run resumes without asking again. 429, 5xx and network errors are retried
`max_retries` times with exponential backoff (honouring `Retry-After`); other errors stop the stage with the
server's message. The API key is read from the environment variable named by `api_key_env`, never from
params. HTTP goes through the standard library (urllib), so this backend needs no extra package.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from synthmix.backends import register
from synthmix.config import Generation
from synthmix.io import fingerprint
from synthmix.modelstore import ModelError, model_manifest
from synthmix.prompts import cut_at_stop

MAX_BACKOFF_S = 60.0
MAX_STOP_STRINGS = 4  # the OpenAI API accepts at most four stop sequences
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def adapter_name(adapter_dir: Path) -> str:
    """The served name of a run's adapter, models/adapters/<condition>/<seed> -> "<condition>-<seed>" (the
    run's stage suffix, e.g. sample@single-42); a folder outside that layout is asked for by its own name."""
    if adapter_dir.name.isdigit():
        return f"{adapter_dir.parent.name}-{adapter_dir.name}"
    return adapter_dir.name


class ApiError(ModelError):
    """The endpoint refused a request or kept failing; `status` is the last HTTP status (None: no reply)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def retryable(status: int) -> bool:
    """429 (rate limit), 408 (request timeout) and every 5xx are worth another try; other 4xx are not."""
    return status in (408, 429) or status >= 500


def backoff_delay(
    attempt: int, base: float, retry_after: str | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (0-based).

    Exponential backoff with "equal jitter" (half fixed, half random) so that many clients that failed
    together do not retry together; a server's `Retry-After` (seconds) wins when it asks for longer.
    """
    delay = min(MAX_BACKOFF_S, base * 2**attempt)
    delay = delay / 2 + (rng or random).uniform(0, delay / 2)
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP date (rare for these APIs): keep our own delay
            delay = max(delay, min(MAX_BACKOFF_S, float(retry_after)))
    return delay


def request_seed(seed: int, request_id: str) -> int:
    """A seed per request, so a sample does not depend on which other requests share its batch."""
    return int(fingerprint(seed, request_id), 16) % (2**31)


def request_body(request: dict[str, Any], settings: Generation, model: str) -> tuple[str, dict[str, Any]]:
    """The endpoint (relative to api_base) and JSON body for one synthmix request."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": request_seed(settings.seed, request["id"]),
        "n": 1,
    }
    stop = list(request.get("stop") or [])
    if stop:
        # Longer lists are still applied: cut_at_stop cuts the text at every stop string afterwards.
        body["stop"] = stop[:MAX_STOP_STRINGS]
    if "messages" in request:
        return "chat/completions", {**body, "messages": request["messages"]}
    return "completions", {**body, "prompt": request["text"]}


# finish reasons with which a provider refuses to answer (the text is empty or partial); such records are kept
# and counted as refused (`refused_by_provider` in the stage manifest), never dropped or asked again
REFUSED = ("content_filter", "refused")


def parse_response(request: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A synthmix result (`id, response, n_prompt_tokens, n_tokens, finish_reason, prompt_truncated, served`)
    from a JSON reply. `served` is what the API says it served: the model id and, where given, the system
    fingerprint. A reply without a choice (a provider's prompt filter) or a content-filter finish is a refusal:
    recorded with finish_reason 'refused' or 'content_filter', never dropped or retried."""
    served = {"model": data.get("model"), "system_fingerprint": data.get("system_fingerprint")}
    choices = data.get("choices")
    if isinstance(choices, list) and not choices:
        usage = data.get("usage") or {}
        return {
            "id": request["id"],
            "response": "",
            "n_prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "n_tokens": 0,
            "finish_reason": "refused",
            "prompt_truncated": False,
            "served": served,
        }
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] if "messages" in request else choice["text"]
    except (KeyError, IndexError, TypeError):
        raise ApiError(
            f"request '{request['id']}': the reply has no choices[0] text: {str(data)[:300]}"
        ) from None
    refusal = (choice.get("message") or {}).get("refusal") if "messages" in request else None
    if refusal:  # OpenAI's structured refusal: no content, the reason in message.refusal
        choice = {**choice, "finish_reason": "refused"}
        text = ""
    if text is None and choice.get("finish_reason") in REFUSED:
        text = ""
    usage = data.get("usage") or {}
    if not isinstance(usage.get("prompt_tokens"), int) or not isinstance(usage.get("completion_tokens"), int):
        raise ApiError(
            f"request '{request['id']}': the reply has no usage.prompt_tokens/completion_tokens; synthmix "
            "records token counts, so use a server that reports usage (vLLM, TGI, llama.cpp, hosted APIs do)"
        )
    text, stopped = cut_at_stop(text or "", request.get("stop"))
    reason = choice.get("finish_reason")
    if reason not in REFUSED and (stopped or reason in (None, "stop", "eos")):
        reason = "stop"
    return {
        "id": request["id"],
        "response": text.strip(),
        "n_prompt_tokens": usage["prompt_tokens"],
        "n_tokens": usage["completion_tokens"],
        "finish_reason": str(reason),  # "stop", "length", or the server's own word (e.g. content_filter)
        "prompt_truncated": False,  # the server decides how to treat a long prompt (it refuses by default)
        "served": served,
    }


class Client:
    """POSTs JSON to one endpoint with retries; safe to share between threads."""

    def __init__(self, settings: Generation, headers: dict[str, str], where: str = "generation.api_base"):
        assert settings.api_base is not None  # config.Params requires it for this backend
        self.base = settings.api_base.rstrip("/")
        self.settings = settings
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self.where = where  # the params key of the endpoint, for messages
        self.retries = 0  # retried attempts, for the log
        self._lock = threading.Lock()
        self._rng = random.Random(settings.seed)

    def post(self, path: str, body: dict[str, Any], label: str) -> dict[str, Any]:
        url = f"{self.base}/{path}"
        data = json.dumps(body).encode("utf-8")
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            retry_after = None
            try:
                request = urllib.request.Request(url, data=data, headers=self.headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.settings.request_timeout) as reply:
                    payload = reply.read()
                try:
                    data = json.loads(payload)
                except json.JSONDecodeError:
                    data = None
                if not isinstance(data, dict):
                    raise ApiError(
                        f"{url}: {label}: not an OpenAI-compatible endpoint: the reply is not a JSON object "
                        f"({payload[:120]!r}); check the api_base ({self.where})"
                    ) from None
                return data
            except urllib.error.HTTPError as error:
                detail = error.read()[:500].decode("utf-8", "replace")
                if error.code in (404, 405) and "model" not in detail.lower():
                    raise ApiError(
                        f"{url}: {label}: not an OpenAI-compatible endpoint (HTTP {error.code} on "
                        f"/{path}: {detail[:200]}); check the api_base ({self.where})",
                        error.code,
                    ) from None
                if not retryable(error.code):
                    raise ApiError(f"{url}: {label}: HTTP {error.code}: {detail}", error.code) from None
                last, status = f"HTTP {error.code}: {detail}", error.code
                retry_after = error.headers.get("Retry-After")
            except NETWORK_ERRORS as error:  # refused, reset, timed out: the server may come back
                last, status = f"{type(error).__name__}: {error}", None
            if attempt + 1 == attempts:
                raise ApiError(
                    f"{url}: {label}: gave up after {attempts} attempt(s); last error {last} "
                    "(raise generation.max_retries or request_timeout, or check the server)",
                    status,
                )
            with self._lock:
                self.retries += 1
                delay = backoff_delay(attempt, self.settings.retry_backoff, retry_after, self._rng)
            time.sleep(delay)
        raise AssertionError("unreachable")


@register("openai")
class OpenAIBackend:
    name = "openai"

    def __init__(self, model_dir: str, adapter_dir: str | None = None):
        self.model_dir = Path(model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.truncated_prompts = 0  # the server truncates (or refuses) long prompts itself
        self.client: Client | None = None
        name = self.model_dir.name
        api_only = (self.model_dir / "model.json").is_file() and model_manifest(self.model_dir)["origin"][
            "kind"
        ] == "api"
        # where a message should send the reader: the API-only model's entry, or the stage's generation settings
        self.key_where = f"models.{name}.api.api_key_env" if api_only else "generation.api_key_env"
        self.url_where = f"models.{name}.api.base_url" if api_only else "generation.api_base"

    def served_model(self, settings: Generation) -> str:
        """The model name to ask for: the adapter's run name, else api_model, else the model's key."""
        if self.adapter_dir is not None:
            return adapter_name(self.adapter_dir)
        return settings.api_model or self.model_dir.name

    def headers(self, settings: Generation) -> dict[str, str]:
        if settings.api_key_env is None:
            return {}
        key = os.environ.get(settings.api_key_env)
        if not key:
            raise ModelError(
                f"{self.key_where} names the environment variable {settings.api_key_env}, which is not set; "
                f"export {settings.api_key_env}=<your key> (keys never go into params files). Nothing was sent"
            )
        return {"Authorization": f"Bearer {key}"}

    def announce(self, remaining: list[dict[str, Any]], settings: Generation) -> None:
        """Say what the stage is about to send, and stop before the first request if it exceeds the cap."""
        characters = sum(
            len(request.get("text", "")) + sum(len(m["content"]) for m in request.get("messages", []))
            for request in remaining
        )
        print(
            f"openai: {len(remaining)} request(s) to {settings.api_base} ({self.served_model(settings)}), about "
            f"{characters // 4} prompt tokens (characters / 4), up to {settings.max_new_tokens} new tokens each"
        )
        if settings.max_requests is not None and len(remaining) > settings.max_requests:
            raise ModelError(
                f"generation.max_requests is {settings.max_requests}, but this stage would send {len(remaining)} "
                "requests; nothing was sent. Raise max_requests (or null it) to allow them, or send fewer prompts"
            )

    def answer(self, request: dict[str, Any], settings: Generation) -> dict[str, Any]:
        assert self.client is not None
        path, body = request_body(request, settings, self.served_model(settings))
        return parse_response(request, self.client.post(path, body, f"request '{request['id']}'"))

    def generate(
        self, requests: list[dict[str, Any]], settings: Generation, skip: frozenset[str] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """Yield one result per request not in `skip`, in the order they complete."""
        remaining = [r for r in requests if r["id"] not in skip]
        self.announce(remaining, settings)
        self.client = Client(settings, self.headers(settings), self.url_where)
        todo = iter(remaining)
        # Submit only as many requests as there are workers, so none wait in the pool's queue: after a
        # failure nothing new starts, and the requests already sent are the only ones left to finish.
        window = settings.max_concurrency
        pool = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="synthmix-openai")
        pending: set[Future[dict[str, Any]]] = set()

        def refill() -> None:
            while len(pending) < window and (request := next(todo, None)) is not None:
                pending.add(pool.submit(self.answer, request, settings))

        error: BaseException | None = None
        try:
            refill()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    if future.cancelled():
                        continue
                    if future.exception() is not None:
                        if error is None:
                            # Stop: drop queued requests, but let those already sent finish and be
                            # saved, so that the rerun does not pay for them again.
                            error = future.exception()
                            for queued in pending:
                                queued.cancel()
                        continue
                    yield future.result()
                if error is None:
                    refill()
        finally:
            # After an interrupt, do not wait for requests still in flight.
            pool.shutdown(wait=False, cancel_futures=True)
        if error is not None:
            raise error
