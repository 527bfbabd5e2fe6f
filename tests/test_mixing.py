"""Building a condition's training set (synthmix.mixing): matched sizes, stratified shares, one owner per prompt."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest

from synthmix.config import HUMAN
from synthmix.mixing import MixError, apportion, assign_sources, build_mix, dedupe_prompts, mix_summary

CATEGORIES = {"language_reference": 14, "module_doc": 9, "function_doc": 21, "class_doc": 6}


def make_prompts(sizes: dict[str, int] = CATEGORIES) -> list[dict]:
    return [
        {
            "id": f"{cat}-{i:03d}",
            "prompt": f"Question {i} about {cat}?",
            "response": f"human {cat} {i}",
            "category": cat,
        }
        for cat, n in sizes.items()
        for i in range(n)
    ]


def make_responses(prompts: list[dict], sources: tuple[str, ...] = ("alpha", "beta", "gamma")) -> dict:
    return {s: {p["id"]: f"{s} answers {p['id']}" for p in prompts} for s in sources}


# ---- apportion -------------------------------------------------------------------------------------------


def test_apportion_hand_worked_examples() -> None:
    # quotas 3.333.. each: floors 3+3+3 = 9, the one left goes to the first of the tied remainders
    assert apportion({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10) == {"a": 4, "b": 3, "c": 3}
    # quotas 2.5 / 2.5 -> 3 / 2 (tie broken by order)
    assert apportion({"a": 0.5, "b": 0.5}, 5) == {"a": 3, "b": 2}
    # quotas 6.3 / 2.1 / 1.6 -> floors 6, 2, 1 (= 9); largest remainder .6 gets the tenth
    assert apportion({"a": 0.63, "b": 0.21, "c": 0.16}, 10) == {"a": 6, "b": 2, "c": 2}
    assert apportion({"only": 1.0}, 7) == {"only": 7}
    assert apportion({"a": 0.5, "b": 0.5}, 0) == {"a": 0, "b": 0}


@pytest.mark.parametrize("seed", range(40))
def test_apportion_sums_exactly_and_stays_within_one_of_the_quota(seed: int) -> None:
    rng = random.Random(seed)
    weights = {f"s{i}": rng.random() + 0.01 for i in range(rng.randint(1, 6))}
    size = rng.randint(0, 500)
    counts = apportion(weights, size)
    assert sum(counts.values()) == size
    total = sum(Fraction(w) for w in weights.values())
    for name, w in weights.items():
        quota = size * Fraction(w) / total
        assert math.floor(quota) <= counts[name] <= math.ceil(quota)


# ---- build_mix -------------------------------------------------------------------------------------------


def test_single_source_set_contains_only_that_source() -> None:
    prompts = make_prompts()
    responses = make_responses(prompts)
    records = build_mix("single", {"alpha": 1.0}, prompts, responses, size=30, seed=42)
    assert len(records) == 30
    assert {r["source"] for r in records} == {"alpha"}
    assert all(r["response"] == f"alpha answers {r['id']}" for r in records)
    assert set(records[0]) == {"id", "prompt", "response", "source", "category"}


def test_human_condition_uses_the_reference_responses() -> None:
    prompts = make_prompts()
    by_id = {p["id"]: p for p in prompts}
    records = build_mix("human", {HUMAN: 1.0}, prompts, {}, size=20, seed=1)
    assert len(records) == 20
    assert all(r["source"] == HUMAN and r["response"] == by_id[r["id"]]["response"] for r in records)
    assert all(r["prompt"] == by_id[r["id"]]["prompt"] for r in records)


def test_untuned_condition_is_empty() -> None:
    assert build_mix("vanilla", {}, make_prompts(), {}, size=30, seed=42) == []


@pytest.mark.parametrize(
    "weights",
    [
        {"alpha": 0.5, "beta": 0.5},
        {"alpha": 1 / 3, "beta": 1 / 3, "gamma": 1 / 3},
        {"alpha": 0.25, "beta": 0.75},
        {"alpha": 0.2, "beta": 0.3, HUMAN: 0.5},
    ],
)
def test_multi_source_split(weights: dict[str, float]) -> None:
    prompts = make_prompts()
    responses = make_responses(prompts)
    size = 40
    records = build_mix("multi", weights, prompts, responses, size=size, seed=7)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == size  # no prompt answered twice
    human = {p["id"]: p["response"] for p in prompts}
    for r in records:  # each answer really comes from the source the record names
        expected = human[r["id"]] if r["source"] == HUMAN else f"{r['source']} answers {r['id']}"
        assert r["response"] == expected
    # totals are exactly the apportioned counts
    assert Counter(r["source"] for r in records) == Counter(apportion(weights, size))
    # each category is split in proportion to the weights, within rounding
    by_category = Counter(r["category"] for r in records)
    cells = Counter((r["category"], r["source"]) for r in records)
    equal = len(set(weights.values())) == 1
    for category, n in by_category.items():
        for source, weight in weights.items():
            deviation = abs(cells[category, source] - n * weight)
            # equal weights: within one example; unequal weights: the running-quota dealing keeps each source
            # within one example of its cumulative quota, so a category is within two
            assert deviation < (1 if equal else 2), (category, source, cells[category, source], n * weight)


def test_category_shares_of_the_set_follow_the_pool() -> None:
    prompts = make_prompts()
    records = build_mix("single", {"alpha": 1.0}, prompts, make_responses(prompts), size=25, seed=3)
    shares = Counter(r["category"] for r in records)
    assert dict(shares) == apportion({c: n for c, n in sorted(CATEGORIES.items())}, 25)


def test_every_condition_gets_the_same_size() -> None:
    prompts = make_prompts()
    responses = make_responses(prompts)
    conditions = {
        "human": {HUMAN: 1.0},
        "single": {"alpha": 1.0},
        "pair": {"alpha": 0.5, "beta": 0.5},
        "multi": {"alpha": 0.4, "beta": 0.3, "gamma": 0.3},
    }
    sizes = {
        name: len(build_mix(name, w, prompts, responses, size=33, seed=42)) for name, w in conditions.items()
    }
    assert set(sizes.values()) == {33}


def test_prompts_without_an_answer_from_every_part_are_left_out() -> None:
    prompts = make_prompts({"a": 10})
    responses = make_responses(prompts, ("alpha", "beta"))
    responses["beta"]["a-000"] = "   "  # an empty generation
    del responses["alpha"]["a-001"]  # a missing one
    records = build_mix("multi", {"alpha": 0.5, "beta": 0.5}, prompts, responses, size=8, seed=0)
    assert {r["id"] for r in records} == {f"a-{i:03d}" for i in range(2, 10)}
    # the single-source condition of alpha still may use a-000 (only beta's answer was empty)
    single = build_mix("single", {"alpha": 1.0}, prompts, responses, size=9, seed=0)
    assert "a-000" in {r["id"] for r in single} and "a-001" not in {r["id"] for r in single}


def test_too_few_prompts_raises_a_mix_error_that_says_what_to_change() -> None:
    prompts = make_prompts({"a": 10})
    responses = make_responses(prompts, ("alpha", "beta"))
    responses["beta"]["a-003"] = ""
    with pytest.raises(MixError) as caught:
        build_mix("multi", {"alpha": 0.5, "beta": 0.5}, prompts, responses, size=10, seed=0)
    message = str(caught.value)
    assert "conditions.multi" in message
    assert "mix.size is 10 but only 9 train prompts" in message
    assert "alpha, beta" in message
    assert "lower mix.size or raise data.max_train_prompts" in message


# ---- dedupe ----------------------------------------------------------------------------------------------


def test_dedupe_keeps_the_first_of_each_prompt_text() -> None:
    items = [
        {"id": "b", "prompt": "What is a  list?"},
        {"id": "a", "prompt": "what is a list?\n"},  # same text up to case and whitespace
        {"id": "c", "prompt": "What is a tuple?"},
    ]
    assert [i["id"] for i in dedupe_prompts(items)] == ["a", "c"]


def test_build_mix_dedupes_prompts_when_asked() -> None:
    prompts = make_prompts({"a": 6})
    prompts.append({"id": "a-900", "prompt": "  QUESTION 0 about a? ", "response": "dup", "category": "a"})
    responses = make_responses(prompts, ("alpha",))
    with pytest.raises(MixError, match="only 6 train prompts"):
        build_mix("single", {"alpha": 1.0}, prompts, responses, size=7, seed=0, dedupe=True)
    records = build_mix("single", {"alpha": 1.0}, prompts, responses, size=7, seed=0, dedupe=False)
    assert len(records) == 7 and "a-900" in {r["id"] for r in records}
    kept = build_mix("single", {"alpha": 1.0}, prompts, responses, size=6, seed=0, dedupe=True)
    assert "a-900" not in {r["id"] for r in kept}  # the later id of the two is dropped


# ---- determinism -----------------------------------------------------------------------------------------


def test_same_seed_same_set_other_seed_other_set() -> None:
    prompts = make_prompts()
    responses = make_responses(prompts)
    weights = {"alpha": 0.5, "beta": 0.5}
    first = build_mix("multi", weights, prompts, responses, size=30, seed=11)
    again = build_mix("multi", weights, list(reversed(prompts)), responses, size=30, seed=11)
    assert first == again  # input order does not matter either
    other = build_mix("multi", weights, prompts, responses, size=30, seed=12)
    assert [(r["id"], r["source"]) for r in other] != [(r["id"], r["source"]) for r in first]
    assert [r["id"] for r in first] == sorted(r["id"] for r in first)


def test_assign_sources_is_seeded_and_exact() -> None:
    items = [{"id": f"{i:02d}", "category": "abc"[i % 3]} for i in range(30)]
    weights = {"x": 0.6, "y": 0.4}
    mapping = assign_sources(items, weights, seed=5)
    assert mapping == assign_sources(items, weights, seed=5)
    assert Counter(mapping.values()) == Counter({"x": 18, "y": 12})
    assert set(mapping) == {i["id"] for i in items}


def test_mix_summary() -> None:
    records = [
        {"source": "alpha", "category": "b"},
        {"source": "alpha", "category": "a"},
        {"source": "beta", "category": "a"},
        {"source": "alpha", "category": "a"},
    ]
    summary = mix_summary(records, {"alpha": 0.5, "beta": 0.5})
    assert summary["examples"] == 4
    assert summary["sources"]["alpha"] == {"examples": 3, "share": 0.75, "weight": 0.5}
    assert summary["sources"]["beta"] == {"examples": 1, "share": 0.25, "weight": 0.5}
    assert summary["categories"] == {"a": 3, "b": 1}
    assert mix_summary([], {}) == {"examples": 0, "sources": {}, "categories": {}}
