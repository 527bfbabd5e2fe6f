"""Building a condition's training set from source generations and human responses (pure functions).

The paper gives every tuned condition the same number of examples. A single-source condition takes all of
them from one source; a multi-source condition splits the prompts between sources in stratified shares
(each category divided in proportion to the weights), and every prompt is answered by exactly one source.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from typing import Any

from synthmix.config import HUMAN


class MixError(ValueError):
    """A condition cannot be built from the available data."""


def apportion(weights: dict[str, float], size: int) -> dict[str, int]:
    """Integer counts summing to `size`, proportional to `weights` (largest-remainder method)."""
    total = sum(weights.values())
    quotas = {name: size * w / total for name, w in weights.items()}
    counts = {name: math.floor(q) for name, q in quotas.items()}
    remainders = sorted(weights, key=lambda name: (-(quotas[name] - counts[name]), list(weights).index(name)))
    for name in remainders[: size - sum(counts.values())]:
        counts[name] += 1
    return counts


def normalise_prompt(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def dedupe_prompts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the first item (by id) of each distinct prompt text (case and whitespace ignored)."""
    seen: set[str] = set()
    kept = []
    for item in sorted(items, key=lambda i: i["id"]):
        key = normalise_prompt(item["prompt"])
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def stratified_pick(items: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """`size` items whose category shares follow the pool's (largest remainder per category), seeded."""
    rng = random.Random(seed)
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in sorted(items, key=lambda i: i["id"]):
        by_category[item["category"]].append(item)
    quota = apportion({c: len(v) for c, v in sorted(by_category.items())}, size)
    picked = []
    for category, members in sorted(by_category.items()):
        picked.extend(rng.sample(members, quota[category]))
    return picked


def assign_sources(items: list[dict[str, Any]], weights: dict[str, float], seed: int) -> dict[str, str]:
    """Map each item id to one source, counts by `apportion`, stratified by category.

    Items are ordered by category (shuffled within it, seeded) and dealt one by one to the source furthest
    below its running quota, so every category is split close to the weights and the totals are exact.
    """
    rng = random.Random(seed)
    targets = apportion(weights, len(items))
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in sorted(items, key=lambda i: i["id"]):
        by_category[item["category"]].append(item)
    ordered = []
    for category in sorted(by_category):
        members = by_category[category]
        rng.shuffle(members)
        ordered.extend(members)
    assigned = dict.fromkeys(weights, 0)
    mapping = {}
    for position, item in enumerate(ordered, start=1):
        open_sources = [s for s in weights if assigned[s] < targets[s]]
        best = max(open_sources, key=lambda s: targets[s] * position / len(items) - assigned[s])
        assigned[best] += 1
        mapping[item["id"]] = best
    return mapping


def build_mix(
    condition: str,
    weights: dict[str, float],
    prompts: list[dict[str, Any]],
    responses: dict[str, dict[str, str]],
    size: int,
    seed: int,
    dedupe: bool = True,
) -> list[dict[str, Any]]:
    """The training records of one condition.

    `prompts`: train items with `id`, `prompt`, `category`, `response` (the human reference).
    `responses`: {source: {prompt id: response text}} for the sources in `weights`.
    """
    if not weights:
        return []
    answers = {HUMAN: {p["id"]: p["response"] for p in prompts}, **responses}
    pool = [p for p in prompts if all((answers[s].get(p["id"]) or "").strip() for s in weights)]
    if dedupe:
        pool = dedupe_prompts(pool)
    if len(pool) < size:
        parts = ", ".join(weights)
        raise MixError(
            f"conditions.{condition}: mix.size is {size} but only {len(pool)} train prompts have a non-empty "
            f"answer from every part of its mix ({parts}); lower mix.size or raise data.max_train_prompts"
        )
    chosen = stratified_pick(pool, size, seed)
    owner = assign_sources(chosen, weights, seed)
    return [
        {
            "id": item["id"],
            "prompt": item["prompt"],
            "response": answers[owner[item["id"]]][item["id"]],
            "source": owner[item["id"]],
            "category": item["category"],
        }
        for item in sorted(chosen, key=lambda i: i["id"])
    ]


def mix_summary(records: list[dict[str, Any]], weights: dict[str, float]) -> dict[str, Any]:
    """Counts per source and category, and realised vs intended shares (the stage's DVC metrics)."""
    per_source = Counter(r["source"] for r in records)
    n = len(records)
    return {
        "examples": n,
        "sources": {
            s: {
                "examples": per_source.get(s, 0),
                "share": per_source.get(s, 0) / n if n else 0.0,
                "weight": w,
            }
            for s, w in weights.items()
        },
        "categories": dict(sorted(Counter(r["category"] for r in records).items())),
    }
