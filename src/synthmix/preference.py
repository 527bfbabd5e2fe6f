"""Self-preference bias: the candidates and the judge's inputs (Schaffelder & Gatt, Experiment 3).

For each sampled item the candidates are every candidate source's text and the human one: summaries of an
article (task 'summarisation', the paper's) or answers to a held-out prompt (task 'instructions'). The judge
(a condition's model: the base target, or the base plus the run's adapter) sees two candidates,
"<label> A: ...\n<label> B: ..." (label 'Summary' in the paper), without the article or prompt, and its verdict
is read from the probabilities of its first token (the backend primitive `next_token_logprobs`, in the
preference@ stage); every pair of candidate sources is judged in both orders. Each candidate is also rated
alone on a 1-5 scale. The reading of these probabilities (P(A) / (P(A) + P(B)), the expected rating) is the
metric stage's (`metrics.preference_summary`), so that it never reruns the judge.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.config import HUMAN, Params, Preference
from synthmix.io import DataError, read_jsonl

CHOICES = ("A", "B")  # the pairwise judge answers with a letter (its first token is read)
RATINGS = ("1", "2", "3", "4", "5")  # the absolute judge answers with a digit

TOP_N = 50  # most likely first tokens kept with every judgement, for readings that renormalise over them


def candidate_sources(params: Params) -> list[str]:
    """`preference.sources`, or every source plus the human reference (names checked by Params)."""
    return list(params.preference.sources or [*params.sources, HUMAN])


def select_items(ids: Sequence[str], n_items: int | None, seed: int) -> list[str]:
    """A seeded sample of `n_items` ids (all of them when None or larger), kept in their original order."""
    if n_items is None or n_items >= len(ids):
        return list(ids)
    chosen = set(random.Random(seed).sample(list(ids), n_items))
    return [item for item in ids if item in chosen]


def _model_texts(
    path: Path, key: str, ids: Sequence[str], rerun: str, split: str | None = None
) -> dict[str, str]:
    """{item id: response} of one source's responses.jsonl, which must hold every id of `ids`."""
    required = (key, "response") if split is None else (key, "split", "response")
    records = read_jsonl(path, required=required)
    texts = {r[key]: r["response"] for r in records if split is None or r["split"] == split}
    missing = [item for item in ids if item not in texts]
    if missing:
        raise DataError(
            f"{path}: no response for {len(missing)} of the {len(ids)} items (e.g. {missing[:3]}); rerun {rerun}"
        )
    return texts


def load_candidates(
    prepared: str | Path, generated: str | Path, sources: Sequence[str], settings: Preference
) -> list[dict[str, Any]]:
    """Task 'instructions': the sampled test items, each `{"item": id, "texts": {source: text}}`.

    Model sources give their response to the test prompt (data/generated/<source>/responses.jsonl, split
    "test"); `human` gives the reference response of data/prepared/test.jsonl.
    """
    test = read_jsonl(Path(prepared) / "test.jsonl", required=("id", "response"))
    ids = [r["id"] for r in test]
    texts: dict[str, dict[str, str]] = {HUMAN: {r["id"]: r["response"] for r in test}}
    for source in sources:
        if source != HUMAN:
            path = Path(generated) / source / paths.RESPONSES
            texts[source] = _model_texts(path, "prompt_id", ids, f"generate@{source}", split="test")
    items = select_items(ids, settings.n_items, settings.seed)
    return [{"item": item, "texts": {s: texts[s][item] for s in sources}} for item in items]


def load_summary_candidates(
    articles: str | Path, summaries: str | Path, sources: Sequence[str], settings: Preference
) -> list[dict[str, Any]]:
    """Task 'summarisation' (the paper's): for the sampled articles, each source's summary
    (data/summaries/<source>/responses.jsonl) and, for `human`, the article's own human summary."""
    records = read_jsonl(Path(articles) / paths.ARTICLES, required=("id", "summary"))
    if not records:
        raise DataError(f"{Path(articles) / paths.ARTICLES}: no articles; rerun the articles stage")
    ids = [r["id"] for r in records]
    texts: dict[str, dict[str, str]] = {HUMAN: {r["id"]: r["summary"] for r in records}}
    for source in sources:
        if source != HUMAN:
            path = Path(summaries) / source / paths.RESPONSES
            texts[source] = _model_texts(path, "article_id", ids, f"summarize@{source}")
    items = select_items(ids, settings.n_items, settings.seed)
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
