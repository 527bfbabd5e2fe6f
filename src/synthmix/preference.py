"""Self-preference bias: the candidates, the judge's inputs, and the judging (Schaffelder & Gatt, Experiment 3).

For each sampled held-out item the candidates are every candidate source's text and the human reference. The
judge (a condition's model: the base target, or the base plus the run's adapter) sees two candidates, "Text
A" and "Text B", without the prompt, and its verdict is read from the probabilities of its first token (the
backend primitive `next_token_logprobs`); every pair of candidate sources is judged in both orders. Each
candidate is also rated alone on a 1-5 scale. The reading of these probabilities (P(A) / (P(A) + P(B)), the
expected rating) is the metric stage's (`metrics.preference_summary`), so that it never reruns the judge.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.backends import load_backend, require
from synthmix.config import HUMAN, Params, ParamsError, Preference
from synthmix.io import DataError, fingerprint, read_jsonl
from synthmix.metrics.first_token import variants
from synthmix.runner import Finished, run_resumable

TOP_N = 50  # most likely first tokens kept with every judgement, for readings that renormalise over them


def candidate_sources(params: Params) -> list[str]:
    """`preference.sources`, or every source plus the human reference (names checked by Params)."""
    return list(params.preference.sources or [*params.sources, HUMAN])


def resolve_self_source(params: Params, sources: Sequence[str]) -> str:
    """`preference.self_source`, or `target.own_source`; it must be among `sources`, the candidates judged.

    Params already checks both against params.yaml; this checks them against a judgements folder, whose
    candidate set may come from an earlier run.
    """
    self_source = params.preference.self_source or params.target.own_source
    key = "preference.self_source" if params.preference.self_source else "target.own_source"
    if self_source not in sources:
        raise ParamsError(
            f"{key}: '{self_source}' is the judge's own source but not a candidate "
            f"(preference.sources: {', '.join(sources)}); add it to preference.sources"
        )
    return self_source


def select_items(ids: Sequence[str], n_items: int | None, seed: int) -> list[str]:
    """A seeded sample of `n_items` ids (all of them when None or larger), kept in their original order."""
    if n_items is None or n_items >= len(ids):
        return list(ids)
    chosen = set(random.Random(seed).sample(list(ids), n_items))
    return [item for item in ids if item in chosen]


def load_candidates(
    prepared: str | Path, generated: str | Path, sources: Sequence[str], settings: Preference
) -> list[dict[str, Any]]:
    """The sampled test items, each `{"item": id, "texts": {source: text}}`, one text per candidate source.

    Model sources give their response to the test prompt (data/generated/<source>/responses.jsonl, split
    "test"); `human` gives the reference response of data/prepared/test.jsonl.
    """
    test = read_jsonl(Path(prepared) / "test.jsonl", required=("id", "response"))
    texts: dict[str, dict[str, str]] = {HUMAN: {r["id"]: r["response"] for r in test}}
    for source in sources:
        if source == HUMAN:
            continue
        path = Path(generated) / source / paths.RESPONSES
        records = read_jsonl(path, required=("prompt_id", "split", "response"))
        texts[source] = {r["prompt_id"]: r["response"] for r in records if r["split"] == "test"}
        missing = [r["id"] for r in test if r["id"] not in texts[source]]
        if missing:
            raise DataError(
                f"{path}: no test response for {len(missing)} of the {len(test)} test prompts "
                f"(e.g. {missing[:3]}); rerun generate@{source}"
            )
    items = select_items([r["id"] for r in test], settings.n_items, settings.seed)
    return [{"item": item, "texts": {s: texts[s][item] for s in sources}} for item in items]


def pairwise_messages(text_a: str, text_b: str, settings: Preference) -> list[dict[str, str]]:
    """The paper's pairwise judge input: system prompt, then "<label> A: ...\\n<label> B: ..." (no prompt)."""
    label = settings.text_label
    return [
        {"role": "system", "content": settings.pairwise_system_prompt},
        {"role": "user", "content": f"{label} A: {text_a}\n{label} B: {text_b}"},
    ]


def absolute_messages(text: str, settings: Preference) -> list[dict[str, str]]:
    """The absolute-score judge input: the rating system prompt and the text alone."""
    return [
        {"role": "system", "content": settings.absolute_system_prompt},
        {"role": "user", "content": text},
    ]


def pairwise_requests(
    candidates: list[dict[str, Any]], sources: Sequence[str], settings: Preference
) -> list[dict]:
    """One request per item, unordered pair of sources and order: every pair is judged both ways."""
    requests = []
    for candidate in candidates:
        texts = candidate["texts"]
        for one, other in itertools.combinations(sources, 2):
            for first, second in ((one, other), (other, one)):
                requests.append(
                    {
                        "id": f"{candidate['item']}|{first}|{second}",
                        "item": candidate["item"],
                        "first": first,
                        "second": second,
                        "messages": pairwise_messages(texts[first], texts[second], settings),
                    }
                )
    return requests


def absolute_requests(
    candidates: list[dict[str, Any]], sources: Sequence[str], settings: Preference
) -> list[dict]:
    return [
        {
            "id": f"{candidate['item']}|{source}",
            "item": candidate["item"],
            "source": source,
            "messages": absolute_messages(candidate["texts"][source], settings),
        }
        for candidate in candidates
        for source in sources
    ]


def judge_all(
    requests: list[dict[str, Any]],
    output: Path,
    options: Sequence[str],
    model_dir: Path,
    adapter_dir: Path | None,
    identity: Sequence[Any],
    keep: Sequence[str],
    desc: str,
    backend: str = "transformers",
) -> Finished:
    """The judge's first-token log-probabilities for every request, resumably, into `output` (JSONL).

    `options` are the answer labels (A/B, or the ratings 1-5), asked for bare and space-prefixed; `keep`
    names the request fields copied into each record; `identity` (model revision, adapter hash) keys the
    checkpoint with the requests."""
    key = fingerprint(list(identity), [(r["id"], r["messages"]) for r in requests], list(options), TOP_N)
    by_id = {r["id"]: r for r in requests}
    tokens = variants(options)

    def compute(todo: Sequence[Mapping[str, Any]], done: frozenset[str]):
        model = load_backend(backend, str(model_dir), str(adapter_dir) if adapter_dir else None)
        asks = [{"id": r["id"], "messages": r["messages"], "tokens": tokens, "top_n": TOP_N} for r in todo]
        for result in require(model, "next_token_logprobs")(asks, done):
            request = by_id[result["id"]]
            yield {
                "id": result["id"],
                **{k: request[k] for k in keep},
                "n_prompt_tokens": result["n_prompt_tokens"],
                "logprobs": result["tokens"],
                "top": result["top"],
            }

    return run_resumable(requests, output, key, compute, desc=desc, unit="judgement")


def read_gold_labels(path: str | Path) -> list[dict[str, Any]]:
    """Human pairwise labels: jsonl of `{"item", "sources": [a, b], "winner"}` with winner one of the two."""
    records = read_jsonl(path, required=("item", "sources", "winner"))
    for number, record in enumerate(records, start=1):
        pair = record["sources"]
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]):
            raise DataError(
                f"{path}: record {number}: 'sources' must list two different sources, got {pair!r}"
            )
        if record["winner"] not in pair:
            raise DataError(f"{path}: record {number}: winner {record['winner']!r} is not one of {pair}")
    return records
