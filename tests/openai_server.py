"""A small OpenAI-compatible HTTP server for tests: serves transformers checkpoints on 127.0.0.1.

Implements enough of the OpenAI schema for synthmix's `openai` backend: POST `/v1/chat/completions`
(`choices[0].message.content`), POST `/v1/completions` (`choices[0].text`), both with `finish_reason` and
`usage`, and GET `/v1/models`. Generation is plain transformers `generate()` on one prompt at a time.

Like OpenAI's API, it refuses a request field that the OpenAI schema does not have (HTTP 400 "Unrecognized
request argument supplied"), so it stands for an endpoint without vLLM's extensions (`continue_final_message`,
`prompt_logprobs`, token-id prompts); it returns no log-probabilities. A real vLLM server for everything else
is tests/vllm_server.py.

Fault injection is deterministic: `failures` maps a prompt (the last message's content, or the completion
prompt) to what its successive attempts get: an HTTP status (429 is sent with `Retry-After: 0`) or "hang"
(no reply for `hang_s` seconds, past a client's timeout); later attempts are answered normally. After
`max_requests` requests every request gets HTTP 400, so a client that loops cannot run away.

Run by hand: `python tests/openai_server.py models/base/smollm2-135m --port 8000`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# the request fields of OpenAI's chat and legacy completions APIs (platform.openai.com/docs/api-reference)
OPENAI_FIELDS = {
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
    "seed", "stream", "stream_options", "logprobs", "top_logprobs", "echo", "logit_bias", "presence_penalty",
    "frequency_penalty", "user", "response_format", "tools", "tool_choice", "suffix", "best_of",
}  # fmt: skip


class TinyOpenAIServer:
    """Serve `models` ({served name: (model folder, LoRA adapter folder or None)}) on 127.0.0.1."""

    def __init__(
        self,
        models: dict[str, tuple[str | Path, str | Path | None]],
        failures: dict[str, list[int | str]] | None = None,
        api_key: str | None = None,
        max_requests: int = 500,
        hang_s: float = 1.0,
        port: int = 0,
    ):
        self.models = {name: self._load(Path(m), a and Path(a)) for name, (m, a) in models.items()}
        self.failures = failures or {}
        self.api_key = api_key
        self.max_requests = max_requests
        self.hang_s = hang_s
        self.log: list[dict[str, Any]] = []  # one entry per request: path, model, prompt, status (or 'hang')
        self.attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()  # one forward pass at a time: torch's RNG is global
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @staticmethod
    def _load(model_dir: Path, adapter_dir: Path | None) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> TinyOpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> TinyOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def statuses(self, prompt: str) -> list[int | str]:
        """The HTTP statuses that the requests for one prompt got, in order."""
        return [entry["status"] for entry in self.log if entry["prompt"] == prompt]

    # ---- request handling ----

    def generate(self, name: str, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        import torch

        model, tokenizer = self.models[name]
        if chat:
            encoded = tokenizer.apply_chat_template(
                body["messages"], add_generation_prompt=True, tokenize=True, return_dict=True
            )
            ids = list(encoded["input_ids"])
        else:
            ids = tokenizer(body["prompt"], add_special_tokens=True)["input_ids"]
        stop = body.get("stop")
        stop = [stop] if isinstance(stop, str) else stop
        temperature = float(body.get("temperature", 1.0))
        sample = temperature > 0
        max_tokens = int(body.get("max_tokens", 16))
        with self._generate_lock, torch.inference_mode():
            torch.manual_seed(int(body.get("seed", 0)))
            output = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=max_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=float(body.get("top_p", 1.0)) if sample else None,
                top_k=0 if sample else None,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=stop or None,
                tokenizer=tokenizer if stop else None,
            )
        tokens = [t for t in output[0, len(ids) :].tolist() if t != tokenizer.pad_token_id]
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        ended = bool(tokens) and tokens[-1] == tokenizer.eos_token_id or len(tokens) < max_tokens
        cuts = [text.index(s) for s in stop or () if s in text]
        if cuts:
            text, ended = text[: min(cuts)], True
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop" if ended else "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        usage = {
            "prompt_tokens": len(ids),
            "completion_tokens": len(tokens),
            "total_tokens": len(ids) + len(tokens),
        }
        kind = "chat.completion" if chat else "text_completion"
        return {
            "id": f"cmpl-{len(self.log)}",
            "object": kind,
            "model": name,
            "choices": [choice],
            "usage": usage,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            entry: dict[str, Any] | None = None  # the log entry of the POST being answered

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: the test reads server.log instead

            def _done(self, status: int | str) -> None:
                """Log the outcome and leave the in-flight count before the client can see a reply."""
                if self.entry is not None and self.entry["status"] is None:
                    with server._lock:
                        self.entry["status"] = status
                        server.in_flight -= 1

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                self._done(status)
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out) first

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                error = {"error": {"message": message, "type": "test_server", "code": status}}
                self._send(status, error, headers)

            def do_GET(self) -> None:  # noqa: N802
                self.entry = None
                if self.path.rstrip("/") == "/v1/models":
                    models = [{"id": name, "object": "model"} for name in server.models]
                    self._send(200, {"object": "list", "data": models})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:  # noqa: N802
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    number = len(server.log)
                    self.entry = {"path": self.path, "model": None, "prompt": None, "status": None}
                    server.log.append(self.entry)
                try:
                    self._answer(number, self.entry)
                finally:
                    self._done("crashed")  # only if no reply was sent

            def _answer(self, number: int, entry: dict[str, Any]) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                chat = self.path.rstrip("/") == "/v1/chat/completions"
                if not chat and self.path.rstrip("/") != "/v1/completions":
                    return self._error(404, f"no route {self.path}")
                prompt = body["messages"][-1]["content"] if chat else body.get("prompt")
                entry.update(model=body.get("model"), prompt=prompt)
                if number >= server.max_requests:
                    return self._error(400, f"test server: request limit ({server.max_requests}) reached")
                if (
                    server.api_key is not None
                    and self.headers.get("Authorization") != f"Bearer {server.api_key}"
                ):
                    return self._error(401, "invalid API key")
                unknown = sorted(set(body) - OPENAI_FIELDS)
                if unknown:
                    return self._error(400, f"Unrecognized request argument supplied: {', '.join(unknown)}")
                if body.get("model") not in server.models:
                    return self._error(404, f"The model '{body.get('model')}' does not exist")
                if body.get("n", 1) != 1:
                    return self._error(400, "test server: only n=1 is supported")
                with server._lock:
                    attempt = server.attempts.get(prompt, 0)
                    server.attempts[prompt] = attempt + 1
                plan = server.failures.get(prompt, [])
                if attempt < len(plan):
                    action = plan[attempt]
                    if action == "hang":  # no reply: the client stops waiting and retries
                        self._done("hang")
                        time.sleep(server.hang_s)
                        self.close_connection = True
                        return None
                    status = int(action)
                    headers = {"Retry-After": "0"} if status == 429 else None
                    return self._error(status, f"test server: injected {status}", headers)
                reply = server.generate(body["model"], body, chat)
                return self._send(200, reply)

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--name", help="served model name (default: the folder name)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-requests", type=int, default=100_000)
    args = parser.parse_args()
    name = args.name or Path(args.model_dir).name
    server = TinyOpenAIServer({name: (args.model_dir, None)}, max_requests=args.max_requests, port=args.port)
    print(f"serving '{name}' at {server.url}", flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
