"""Training sets over recursive generations (synthmix.recursion): sizes per regime, the human fraction,
stratified subsampling, determinism and errors, on small sets whose counts are worked out by hand."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from synthmix.config import HUMAN
from synthmix.recursion import (
    FIRST_FIELDS,
    REGIMES,
    GenerationError,
    build_generation,
    expected_size,
    generation_chunk,
    human_picks,
)


def make_first(sources: list[str], categories: list[str]) -> list[dict]:
    """Mix records as build_mix writes them, one per (source, category) pair given."""
    return [
        {
            "id": f"p{i:02d}",
            "prompt": f"Question {i}?",
            "response": f"{source} answers p{i:02d}" if source != HUMAN else f"human answers p{i:02d}",
            "source": source,
            "category": category,
        }
        for i, (source, category) in enumerate(zip(sources, categories, strict=True))
    ]


def make_human(first: list[dict]) -> dict[str, dict]:
    return {
        r["id"]: {
            "id": r["id"],
            "prompt": r["prompt"],
            "response": f"human answers {r['id']}",
            "category": r["category"],
        }
        for r in first
    }


def answers(first: list[dict], producer: str, skip: set[str] = frozenset()) -> dict[str, dict]:
    return {
        r["id"]: {"prompt_id": r["id"], "response": f"{producer} answers {r['id']}", "producer": producer}
        for r in first
        if r["source"] != HUMAN and r["id"] not in skip
    }


# 8 prompts from one source: 5 "code", 3 "docs"
SINGLE = make_first(["smollm2"] * 8, ["code"] * 5 + ["docs"] * 3)


def chunks_up_to(first: list[dict], generations: int, human_fraction: float = 0.0, seed: int = 7) -> list:
    human = make_human(first)
    chunks = [generation_chunk(first, human, generation=1, human_fraction=human_fraction, seed=seed)]
    for g in range(2, generations + 1):
        producer = f"single@g{g - 1}"
        chunks.append(
            generation_chunk(
                first,
                human,
                generation=g,
                human_fraction=human_fraction,
                seed=seed,
                regenerated=answers(first, producer),
                producer=producer,
            )
        )
    return chunks


# ---- sizes ------------------------------------------------------------------------------------------------


def test_expected_size_by_hand() -> None:
    # N = 8, generation 3: replace keeps N, accumulate holds 3 chunks of 8, accumulate-subsample keeps N
    assert expected_size("replace", 8, 3) == 8
    assert expected_size("accumulate", 8, 3) == 24
    assert expected_size("accumulate-subsample", 8, 3) == 8
    assert [expected_size(regime, 8, 1) for regime in REGIMES] == [8, 8, 8]


@pytest.mark.parametrize(
    ("regime", "size"), [("replace", 8), ("accumulate", 24), ("accumulate-subsample", 8)]
)
def test_built_sets_have_the_hand_worked_sizes(regime: str, size: int) -> None:
    built = build_generation(chunks_up_to(SINGLE, 3), regime, seed=1)
    assert len(built) == size
    assert len({r["id"] for r in built}) == size  # ids stay unique, also when generations accumulate


def test_accumulate_holds_every_generation_once() -> None:
    built = build_generation(chunks_up_to(SINGLE, 3), "accumulate", seed=1)
    assert Counter(r["generation"] for r in built) == {1: 8, 2: 8, 3: 8}
    assert Counter(r["prompt_id"] for r in built) == {r["id"]: 3 for r in SINGLE}
    assert {r["id"] for r in built if r["prompt_id"] == "p03"} == {"p03", "p03@g2", "p03@g3"}


def test_replace_keeps_the_prompts_and_sources_with_the_new_answers() -> None:
    multi = make_first(["smollm2", "gemma3"] * 4, ["code"] * 5 + ["docs"] * 3)
    built = build_generation(chunks_up_to(multi, 3), "replace", seed=1)
    by_prompt = {r["prompt_id"]: r for r in built}
    assert set(by_prompt) == {r["id"] for r in multi}
    for first in multi:
        record = by_prompt[first["id"]]
        assert record["prompt"] == first["prompt"]
        assert record["source"] == first["source"] and record["category"] == first["category"]
        assert record["response"] == f"single@g2 answers {first['id']}"
        assert record["producer"] == "single@g2" and record["generation"] == 3
        assert record["id"] == f"{first['id']}@g3"


def test_generation_one_is_the_mix_itself() -> None:
    multi = make_first(["smollm2", "gemma3", HUMAN, "smollm2"], ["code", "code", "docs", "docs"])
    chunk = generation_chunk(multi, make_human(multi), generation=1, human_fraction=0.0, seed=3)
    assert [{k: r[k] for k in FIRST_FIELDS} for r in chunk] == multi  # same ids, so the same training split
    assert [r["producer"] for r in chunk] == ["smollm2", "gemma3", HUMAN, "smollm2"]
    assert {r["generation"] for r in chunk} == {1}
    assert set(chunk[0]) == {
        "id",
        "prompt_id",
        "prompt",
        "response",
        "category",
        "source",
        "producer",
        "generation",
    }


# ---- human fraction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, 0),
        (0.1, 1),  # 0.8 -> 1
        (0.25, 2),  # 2.0
        (0.3, 2),  # 2.4 -> 2
        (0.3125, 3),  # 2.5 -> 3: halves round up (Python's round would give 2)
        (0.9, 7),  # 7.2 -> 7
    ],
)
def test_human_share_is_h_times_n_rounded(fraction: float, expected: int) -> None:
    chunk = chunks_up_to(SINGLE, 2, human_fraction=fraction)[1]
    made = Counter(r["producer"] for r in chunk)
    assert made[HUMAN] == expected and made["single@g1"] == 8 - expected
    for record in chunk:
        if record["producer"] == HUMAN:
            assert record["response"] == f"human answers {record['prompt_id']}"
            assert record["source"] == "smollm2"  # it still stands for its mix source


def test_human_top_up_keeps_a_multi_source_mix_balanced() -> None:
    # 4 smollm2 + 4 gemma3, h = 0.25: 2 human picks, apportioned 4:4 between the sources -> 1 each
    multi = make_first(["smollm2", "gemma3"] * 4, ["code"] * 8)
    for generation in (1, 2, 3):
        picks = human_picks(multi, 0.25, generation, seed=5)
        by_id = {r["id"]: r for r in multi}
        assert Counter(by_id[p]["source"] for p in picks) == {"smollm2": 1, "gemma3": 1}


def test_human_top_up_is_stratified_by_category() -> None:
    # 6 code + 2 docs, h = 0.5: 4 picks, apportioned 6:2 -> 3 code, 1 docs
    first = make_first(["smollm2"] * 8, ["code"] * 6 + ["docs"] * 2)
    by_id = {r["id"]: r for r in first}
    for seed in range(5):
        picks = human_picks(first, 0.5, 2, seed)
        assert Counter(by_id[p]["category"] for p in picks) == {"code": 3, "docs": 1}


def test_human_sourced_items_count_toward_the_fraction() -> None:
    # 2 human-sourced + 6 smollm2 items, N = 8
    first = make_first([HUMAN, HUMAN] + ["smollm2"] * 6, ["code"] * 8)
    assert human_picks(first, 0.25, 2, seed=0) == {"p00", "p01"}  # target 2, already there: nothing added
    picks = human_picks(first, 0.5, 2, seed=0)  # target 4: the 2 human items and 2 synthetic ones
    assert len(picks) == 4 and {"p00", "p01"} <= picks
    assert human_picks(first, 0.0, 2, seed=0) == {"p00", "p01"}  # human-sourced items are always human


def test_human_condition_stays_human_in_every_generation() -> None:
    human_only = make_first([HUMAN] * 8, ["code"] * 8)
    chunk = generation_chunk(
        human_only,
        make_human(human_only),
        generation=4,
        human_fraction=0.25,
        seed=0,
        regenerated={},
        producer="m",
    )
    assert {r["producer"] for r in chunk} == {HUMAN}
    assert all(r["response"] == f"human answers {r['prompt_id']}" for r in chunk)


def test_each_generation_puts_human_data_on_other_prompts() -> None:
    draws = {frozenset(human_picks(SINGLE, 0.25, g, seed=11)) for g in range(1, 7)}
    assert len(draws) > 1


def test_human_picks_need_no_regenerated_answer() -> None:
    picks = human_picks(SINGLE, 0.25, 2, seed=7)
    chunk = generation_chunk(
        SINGLE,
        make_human(SINGLE),
        generation=2,
        human_fraction=0.25,
        seed=7,
        regenerated=answers(SINGLE, "m", skip=picks),
        producer="m",
    )
    assert {r["prompt_id"] for r in chunk if r["producer"] == HUMAN} == picks


# ---- accumulate-subsample ---------------------------------------------------------------------------------


def test_subsample_keeps_the_category_counts() -> None:
    # N = 10: 7 code, 3 docs. Generation 3 pools 21 code + 9 docs; 10 of 30 by largest remainder: 7 and 3
    first = make_first(["smollm2"] * 10, ["code"] * 7 + ["docs"] * 3)
    for seed in range(5):
        built = build_generation(chunks_up_to(first, 3), "accumulate-subsample", seed)
        assert Counter(r["category"] for r in built) == {"code": 7, "docs": 3}
        assert len({r["id"] for r in built}) == 10


def test_subsample_is_drawn_from_the_pool_and_depends_on_the_seed() -> None:
    chunks = chunks_up_to(SINGLE, 3)
    pool = {r["id"]: r for chunk in chunks for r in chunk}
    draws = set()
    for seed in range(4):
        built = build_generation(chunks, "accumulate-subsample", seed)
        assert all(pool[r["id"]] == r for r in built)
        draws.add(tuple(r["id"] for r in built))
    assert len(draws) > 1


# ---- determinism ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", REGIMES)
def test_same_inputs_and_seed_give_the_same_set_whatever_the_order(regime: str) -> None:
    multi = make_first(["smollm2", "gemma3", HUMAN, "gemma3"] * 3, ["code", "docs", "code"] * 4)

    def build(order: random.Random | None) -> list[dict]:
        first = list(multi)
        human = make_human(multi)
        if order:
            order.shuffle(first)
            human = dict(reversed(list(human.items())))
        chunks = []
        for g in (1, 2, 3):
            regenerated = answers(first, f"m{g}") if g > 1 else None
            if order and regenerated:
                regenerated = dict(reversed(list(regenerated.items())))
            producer = f"m{g}" if g > 1 else None
            chunks.append(
                generation_chunk(
                    first,
                    human,
                    generation=g,
                    human_fraction=0.3,
                    seed=9,
                    regenerated=regenerated,
                    producer=producer,
                )
            )
        if order:
            chunks = [list(reversed(chunk)) for chunk in chunks]
        return build_generation(chunks, regime, seed=9)

    assert build(None) == build(random.Random(1)) == build(random.Random(2))


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regenerated", "producer", "message"),
    [
        (  # generation 2 is answered by generation 1's model; p05 has no answer
            answers(SINGLE, "single@g1", skip={"p05"}),
            "single@g1",
            r"generation 2: producer 'single@g1' has no answer for prompt 'p05' \(source smollm2\); 1 of 8",
        ),
        (  # answers from generation 1's model given where generation 2's are due
            answers(SINGLE, "single@g1"),
            "single@g2",
            r"the answer for prompt 'p00' comes from 'single@g1', expected 'single@g2'",
        ),
    ],
)
def test_bad_regenerated_answers_name_the_prompt_and_the_producer(
    regenerated: dict, producer: str, message: str
) -> None:
    with pytest.raises(GenerationError, match=message):
        generation_chunk(
            SINGLE,
            make_human(SINGLE),
            generation=2,
            human_fraction=0.0,
            seed=0,
            regenerated=regenerated,
            producer=producer,
        )


def test_a_missing_human_reference_names_the_prompt() -> None:
    human = make_human(SINGLE)
    picks = sorted(human_picks(SINGLE, 0.25, 1, seed=0))
    del human[picks[0]]
    with pytest.raises(GenerationError, match=rf"none in the prepared train set, e\.g\. \['{picks[0]}'\]"):
        generation_chunk(SINGLE, human, generation=1, human_fraction=0.25, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"generation": 1, "regenerated": {}, "producer": "m"},
            "generation 1 takes its answers from the mix",
        ),
        ({"generation": 2}, "generation 2: give the regenerated answers and the producer"),
        ({"generation": 0}, r"generation must be a whole number >= 1"),
        (
            {"generation": 2, "human_fraction": 1.0, "regenerated": {}, "producer": "m"},
            r"human_fraction must lie in \[0, 1\)",
        ),
    ],
)
def test_bad_chunk_arguments(kwargs: dict, message: str) -> None:
    arguments = {"human_fraction": 0.0, "seed": 0, **kwargs}
    with pytest.raises(GenerationError, match=message):
        generation_chunk(SINGLE, make_human(SINGLE), **arguments)


def test_bad_first_sets() -> None:
    with pytest.raises(GenerationError, match="the generation-1 set is empty"):
        human_picks([], 0.0, 1, seed=0)
    without_source = [{k: v for k, v in r.items() if k != "source"} for r in SINGLE]
    with pytest.raises(GenerationError, match=r"generation-1 record 1 \('p00'\) lacks source"):
        human_picks(without_source, 0.0, 1, seed=0)
    with pytest.raises(GenerationError, match=r"repeats prompt ids \['p00'\]"):
        human_picks([*SINGLE, SINGLE[0]], 0.0, 1, seed=0)


def test_chunks_out_of_order_or_unknown_regime_are_refused() -> None:
    one, two = chunks_up_to(SINGLE, 2)
    with pytest.raises(GenerationError, match=r"chunk 1 holds records of generation\(s\) \[2\]"):
        build_generation([two, one], "accumulate", seed=0)
    with pytest.raises(GenerationError, match="generation 2's chunk has other prompts than generation 1's"):
        build_generation([one, two[:-1]], "replace", seed=0)
    with pytest.raises(
        GenerationError, match="unknown data regime 'accumulated'; use one of replace, accumulate"
    ):
        build_generation([one, two], "accumulated", seed=0)
    with pytest.raises(GenerationError, match="unknown data regime"):
        expected_size("subsample", 8, 2)
