"""Time Self-BLEU (individual and aggregated mode) at 250 and 1,500 responses.

Responses are synthetic but realistic: runs of 1-12 consecutive sentences of CPython's human-written
documentation (``pydoc_data.topics``), so sentence lengths and vocabulary look like prose answers. Also times
the plain sacrebleu loop (one ``sentence_score`` call per sentence against all others) on a small pool, to
show what the shared-statistics implementation saves, and checks both give the same value there.
The pydoc text holds only a few thousand valid sentences, so large pools repeat sentences and their
aggregated lexical diversity is low: the values are for timing, not for interpretation.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/self_bleu.py``
"""

from __future__ import annotations

import argparse
import random
import time

from synthmix.metrics.self_bleu import (
    _paper_bleu,
    lexical_diversity_aggregated,
    lexical_diversity_individual,
    self_bleu,
)
from synthmix.metrics.text import split_sentences


def build_responses(n_responses: int, seed: int = 0) -> list[str]:
    """``n_responses`` texts, each a run of 1-12 consecutive valid sentences from one pydoc topic."""
    from pydoc_data.topics import topics

    documents = [sentences for sentences in map(split_sentences, topics.values()) if len(sentences) >= 12]
    rng = random.Random(seed)
    responses = []
    for _ in range(n_responses):
        sentences = rng.choice(documents)
        length = rng.randint(1, 12)
        start = rng.randrange(len(sentences) - length + 1)
        responses.append(" ".join(sentences[start : start + length]))
    return responses


def plain_self_bleu(sentences: list[str]) -> float:
    """The paper's loop: one sacrebleu call per sentence, all other sentences as references."""
    bleu = _paper_bleu()
    scores = [
        bleu.sentence_score(sentence, sentences[:i] + sentences[i + 1 :]).score
        for i, sentence in enumerate(sentences)
    ]
    return sum(scores) / len(scores)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1500])
    parser.add_argument(
        "--plain-pool", type=int, default=30, help="responses pooled for the plain-loop check"
    )
    args = parser.parse_args()

    responses = build_responses(max(args.sizes))
    times: dict[str, dict[int, float]] = {"individual": {}, "aggregated": {}}
    for size in args.sizes:
        subset = responses[:size]
        individual, seconds = timed(lexical_diversity_individual, subset, max_responses=size, seed=42)
        times["individual"][size] = seconds
        print(
            f"individual  n={size:5d}: {seconds:7.2f} s  scored={individual['n_responses']}  "
            f"lexical diversity={individual['lexical_diversity_individual']:.3f}"
        )
        aggregated, seconds = timed(lexical_diversity_aggregated, subset, sample_size=size, seed=42)
        times["aggregated"][size] = seconds
        print(
            f"aggregated  n={size:5d}: {seconds:7.2f} s  pooled sentences={aggregated['n_sentences']}  "
            f"lexical diversity={aggregated['lexical_diversity_aggregated']:.3f}"
        )
    if len(args.sizes) >= 2:
        small, large = min(args.sizes), max(args.sizes)
        for mode, by_size in times.items():
            print(f"{mode}: time ratio {large}/{small} = {by_size[large] / by_size[small]:.2f}")

    pool = [sentence for response in responses[: args.plain_pool] for sentence in split_sentences(response)]
    fast, fast_seconds = timed(self_bleu, pool)
    plain, plain_seconds = timed(plain_self_bleu, pool)
    print(
        f"pool of {len(pool)} sentences: shared statistics {fast_seconds:.3f} s, plain sacrebleu loop "
        f"{plain_seconds:.2f} s, same value: {fast == plain} ({fast:.6f} vs {plain:.6f})"
    )


if __name__ == "__main__":
    main()
