"""Training sets for recursive training over generations, the model-collapse loop (pure functions).

Generation 1 is a condition's mix (`synthmix.mixing.build_mix`). In generation g >= 2 the same train
prompts, each kept with the source the mix assigned it, are answered again by generation g-1's tuned model;
human-sourced prompts always keep the human response. Each generation thus has its own *chunk* of N records
(N = the mix's size), built by `generation_chunk`, and a data regime decides which chunks generation g
trains on (`build_generation`):

- ``replace``: only generation g's chunk (N records). Shumailov et al., "AI models collapse when trained on
  recursively generated data", Nature 631, 2024; the "replace" regime of Gerstgrasser et al., "Is Model
  Collapse Inevitable? Breaking the Curse of Recursion by Accumulating Real and Synthetic Data",
  arXiv 2404.01413, 2024.
- ``accumulate``: the chunks of generations 1..g together (g·N records), Gerstgrasser et al.'s "accumulate".
- ``accumulate-subsample``: generations 1..g together, subsampled to N records (seeded, stratified by
  category): Kazdan et al., "Collapse or Thrive? Perils and Promises of Synthetic Data in a Self-Generating
  World", arXiv 2410.16713, 2024, who separate this fixed-size regime from Gerstgrasser et al.'s growing one.

A human fraction h puts real data back into every chunk, as Shumailov et al.'s runs that preserve 10% of the
original data (`human_picks` gives the exact rule).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from synthmix.config import HUMAN, REGIMES
from synthmix.mixing import apportion, stratified_pick

FIRST_FIELDS = ("id", "prompt", "response", "source", "category")  # what build_mix writes


class GenerationError(ValueError):
    """A generation's training set cannot be built from the data given."""


def _derived_seed(seed: int, purpose: str, generation: int) -> int:
    # Each generation and each use gets its own stream; seed + generation would make seed 0's generation 2
    # repeat seed 1's generation 1 in a study that runs several seeds.
    digest = hashlib.sha256(f"{seed}/{purpose}/{generation}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _check_regime(regime: str) -> None:
    if regime not in REGIMES:
        raise GenerationError(f"unknown data regime {regime!r}; use one of {', '.join(REGIMES)}")


def _check_generation(generation: int) -> None:
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
        raise GenerationError(f"generation must be a whole number >= 1 (1 is the mix), got {generation!r}")


def expected_size(regime: str, size: int, generation: int) -> int:
    """Records in generation `generation`'s training set when the mix has `size`: g·size for accumulate,
    else size."""
    _check_regime(regime)
    _check_generation(generation)
    return generation * size if regime == "accumulate" else size


def _check_first(first: Sequence[Mapping[str, Any]]) -> None:
    if not first:
        raise GenerationError(
            "the generation-1 set is empty; a condition without fine-tuning has no recursion"
        )
    for position, record in enumerate(first, start=1):
        missing = [field for field in FIRST_FIELDS if field not in record]
        if missing:
            raise GenerationError(
                f"generation-1 record {position} ({record.get('id', 'no id')!r}) lacks {', '.join(missing)}; "
                f"give the mix's train.jsonl records ({', '.join(FIRST_FIELDS)})"
            )
    repeated = sorted(pid for pid, n in Counter(r["id"] for r in first).items() if n > 1)
    if repeated:
        raise GenerationError(f"the generation-1 set repeats prompt ids {repeated[:5]}; each prompt once")


def human_picks(
    first: Sequence[Mapping[str, Any]], human_fraction: float, generation: int, seed: int
) -> set[str]:
    """Prompt ids whose record in generation `generation`'s chunk holds the human reference response.

    With N = len(first) and h = human_fraction in [0, 1), the target is H = apportion({human: h,
    synthetic: 1 - h}, N)[human], i.e. h·N rounded to the nearest whole number, halves up. Every
    human-sourced item is a pick and counts toward H; when there are K < H of them, H - K synthetic items are
    added: split between sources by `apportion` in proportion to each source's synthetic items (sources in
    name order, so a multi-source mix keeps its shares), and within a source chosen by `stratified_pick`
    (category shares by largest remainder, seeded). When K >= H nothing is added (a human condition stays
    all human). The draw is seeded by (seed, generation): each generation puts real data back on other
    prompts, so accumulated sets do not repeat the same human pairs. The regeneration stage answers only the
    prompts not picked here.
    """
    _check_first(first)
    _check_generation(generation)
    if not 0.0 <= human_fraction < 1.0:
        raise GenerationError(
            f"human_fraction must lie in [0, 1) (1 would be the human condition), got {human_fraction!r}"
        )
    target = apportion({HUMAN: human_fraction, "synthetic": 1.0 - human_fraction}, len(first))[HUMAN]
    picks = {r["id"] for r in first if r["source"] == HUMAN}
    extra = target - len(picks)
    if extra <= 0:
        return picks
    by_source: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in first:
        if record["source"] != HUMAN:
            by_source[record["source"]].append(record)
    quota = apportion({s: len(items) for s, items in sorted(by_source.items())}, extra)
    for source, items in sorted(by_source.items()):
        chosen = stratified_pick(
            list(items), quota[source], _derived_seed(seed, f"human/{source}", generation)
        )
        picks.update(r["id"] for r in chosen)
    return picks


def record_id(prompt_id: str, generation: int) -> str:
    """A record's id: the prompt id in generation 1 (as in the mix, so training on generation 1's chunk with
    no human fraction splits and trains exactly as on the mix), ``<prompt id>@g<generation>`` after it, so
    ids stay unique when generations are accumulated."""
    return prompt_id if generation == 1 else f"{prompt_id}@g{generation}"


def generation_chunk(
    first: Sequence[Mapping[str, Any]],
    human: Mapping[str, Mapping[str, Any]],
    *,
    generation: int,
    human_fraction: float,
    seed: int,
    regenerated: Mapping[str, Mapping[str, Any]] | None = None,
    producer: str | Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Generation `generation`'s own N records: the generation-1 set's prompts, each with its answer.

    `first`: the mix's records (``id`` is the prompt id of data/prepared/train.jsonl). `human`: the prepared
    train records by id (their ``response`` is the human reference). The prompts in `human_picks` hold the
    human response (producer "human"). Every other prompt holds, in generation 1, the mix's answer (its
    producer is its source), and in generation g >= 2 the answer of `producer`, generation g-1's tuned model:
    `regenerated` maps prompt id to a record with ``response`` (and, if it has one, a ``producer`` that must
    equal `producer`); answers for other prompts are ignored. `producer` may also map each mix source to its
    own producer (a multi-source condition whose sources keep their own lines of models). An empty answer is
    kept: it is what the model produced, and dropping the prompt would change N.

    Each record: ``id`` (`record_id`), ``prompt_id``, ``prompt``, ``response``, ``category``, ``source`` (the
    mix source the prompt stands for), ``producer`` and ``generation``; sorted by prompt id.
    """
    _check_first(first)
    _check_generation(generation)
    if generation == 1 and (regenerated is not None or producer is not None):
        raise GenerationError("generation 1 takes its answers from the mix; give no regenerated answers")
    if generation >= 2 and (regenerated is None or not producer):
        raise GenerationError(
            f"generation {generation}: give the regenerated answers and the producer that wrote them "
            f"(generation {generation - 1}'s tuned model)"
        )
    picks = human_picks(first, human_fraction, generation, seed)
    missing_human = sorted(pid for pid in picks if not isinstance(human.get(pid, {}).get("response"), str))
    if missing_human:
        raise GenerationError(
            f"generation {generation}: {len(missing_human)} prompt(s) picked for the human response have "
            f"none in the prepared train set, e.g. {missing_human[:5]}; rebuild the mix from the same "
            "prepared data"
        )
    if regenerated is not None:
        needed = sorted(r["id"] for r in first if r["id"] not in picks)
        missing = [pid for pid in needed if not isinstance(regenerated.get(pid, {}).get("response"), str)]
        if missing:
            first_missing = next(r for r in first if r["id"] == missing[0])
            raise GenerationError(
                f"generation {generation}: producer {producer!r} has no answer for prompt {missing[0]!r} "
                f"(source {first_missing['source']}); {len(missing)} of {len(needed)} prompts lack one "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); regenerate them"
            )
        sources = {r["id"]: r["source"] for r in first}
        for pid in needed:
            expected = _producer_of(producer, sources[pid])
            said = regenerated[pid].get("producer", expected)
            if said != expected:
                raise GenerationError(
                    f"generation {generation}: the answer for prompt {pid!r} comes from {said!r}, expected "
                    f"{expected!r}; are these the answers of generation {generation - 1}'s model?"
                )
    chunk = []
    for record in sorted(first, key=lambda r: r["id"]):
        pid = record["id"]
        if pid in picks:
            response, made_by = human[pid]["response"], HUMAN
        elif regenerated is None:
            response, made_by = record["response"], record["source"]
        else:
            response, made_by = regenerated[pid]["response"], _producer_of(producer, record["source"])
        chunk.append(
            {
                "id": record_id(pid, generation),
                "prompt_id": pid,
                "prompt": record["prompt"],
                "response": response,
                "category": record["category"],
                "source": record["source"],
                "producer": made_by,
                "generation": generation,
            }
        )
    return chunk


def _producer_of(producer: str | Mapping[str, str] | None, source: str) -> str:
    if isinstance(producer, Mapping):
        if source not in producer:
            raise GenerationError(f"no producer given for source {source!r} (producers: {dict(producer)})")
        return producer[source]
    return str(producer)


def build_generation(
    chunks: Sequence[Sequence[Mapping[str, Any]]], regime: str, seed: int
) -> list[dict[str, Any]]:
    """Generation g's training set from the chunks of generations 1..g (in order), under `regime`.

    replace: chunk g. accumulate: chunks 1..g concatenated. accumulate-subsample: from the g·N records of
    chunks 1..g, N picked by `stratified_pick` seeded by (seed, g): each category gets its pool share by
    largest remainder, sampled uniformly within it; every chunk has the generation-1 set's categories, so
    the subsample has exactly its category counts, while generations and the human share vary around their
    pool shares. Records sorted by (generation, prompt id); `expected_size` gives the length.
    """
    _check_regime(regime)
    if not chunks:
        raise GenerationError("no chunks given; pass the chunks of generations 1..g in order")
    generation = len(chunks)
    prompts = sorted(r["prompt_id"] for r in chunks[0])
    for number, chunk in enumerate(chunks, start=1):
        wrong = sorted({r["generation"] for r in chunk} - {number})
        if wrong:
            raise GenerationError(
                f"chunk {number} holds records of generation(s) {wrong}; pass generations 1..{generation} "
                "in order, one chunk each"
            )
        if sorted(r["prompt_id"] for r in chunk) != prompts:
            raise GenerationError(
                f"generation {number}'s chunk has other prompts than generation 1's; every generation "
                "answers the same train prompts"
            )
    repeated = sorted(i for i, n in Counter(r["id"] for chunk in chunks for r in chunk).items() if n > 1)
    if repeated:
        raise GenerationError(f"record ids {repeated[:5]} occur more than once; build chunks with record_id")
    if regime == "replace":
        chosen = list(chunks[-1])
    elif regime == "accumulate":
        chosen = [record for chunk in chunks for record in chunk]
    else:
        pool = [record for chunk in chunks for record in chunk]
        chosen = stratified_pick(pool, len(prompts), _derived_seed(seed, "subsample", generation))
    return [dict(r) for r in sorted(chosen, key=lambda r: (r["generation"], r["prompt_id"]))]
