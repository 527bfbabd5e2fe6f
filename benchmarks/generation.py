"""Generation throughput: batched transformers backend vs one prompt at a time, on the packaged SmolLM2.

    python benchmarks/generation.py [--prompts 16] [--max-new-tokens 32] [--batch-size 16]

Prints generated tokens/s of both and their ratio (goal: batched >= 3x). Both runs share one process and
one loaded model, and alternate, so machine load affects them alike; the ratio is the number to read.
"""

from __future__ import annotations

import argparse
import time

from _common import pydoc_prompts, smollm2_dir


def run(backend, requests, settings) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = sum(r["n_tokens"] for r in backend.generate(requests, settings))
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from synthmix.backends.transformers_backend import TransformersBackend
    from synthmix.config import Generation
    from synthmix.prompts import chat_messages

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = TransformersBackend(str(smollm2_dir()))
    requests = [
        {"id": f"p{i}", "messages": chat_messages(p, "You are a helpful assistant.")}
        for i, p in enumerate(pydoc_prompts(args.prompts))
    ]
    # Greedy decoding and no EOS stop would make both runs generate the same token count; sampling is what the
    # pipeline does, so measure that and report tokens actually generated.
    common = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": args.max_new_tokens, "seed": 0}
    run(backend, requests[:2], Generation(batch_size=2, **common))  # warm-up
    batched = run(backend, requests, Generation(batch_size=args.batch_size, **common))
    single = run(backend, requests, Generation(batch_size=1, **common))
    rate_b, rate_s = batched[0] / batched[1], single[0] / single[1]
    print(
        f"model: SmolLM2-135M-Instruct, {args.prompts} prompts, max_new_tokens {args.max_new_tokens}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"batched (batch {args.batch_size}): {batched[0]} tokens in {batched[1]:.1f} s = {rate_b:.1f} tokens/s"
    )
    print(f"one prompt at a time:    {single[0]} tokens in {single[1]:.1f} s = {rate_s:.1f} tokens/s")
    print(f"ratio batched / one-at-a-time: {rate_b / rate_s:.2f}x")


if __name__ == "__main__":
    main()
