"""prepare: the human dataset -> prompts with reference responses, category-stratified train/test split."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.config import load_params
from synthmix.human_data import build_prompt, cut_at_word, dataset_provenance, load_dataset
from synthmix.io import DataError, write_jsonl
from synthmix.provenance import Run


def dedupe_prompts(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The records without repeated prompts (the instruction after its context is merged in, as `to_item`
    builds it), keeping the first of each, and how many were dropped. The paper removed duplicate
    instructions the same way (keep the first exact string, context merged: generated_data_cleaning.ipynb), so
    no test prompt's human answer is also trained on."""
    seen: set[str] = set()
    kept = []
    for record in records:
        prompt = build_prompt(record["instruction"], record.get("context"))
        if prompt not in seen:
            seen.add(prompt)
            kept.append(record)
    return kept, len(records) - len(kept)


def stratified_split(
    records: list[dict[str, Any]], test_fraction: float, seed: int, source: str = "the dataset"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """sklearn's stratified train_test_split (as the paper: 90/10, random_state 42).

    Categories with a single record cannot be stratified; they go to train. A set too small to split stops
    with DataError naming `source` and the counts.
    """
    from sklearn.model_selection import train_test_split

    counts = Counter(r["category"] for r in records)
    splittable = [r for r in records if counts[r["category"]] >= 2]
    singles = [r for r in records if counts[r["category"]] < 2]
    try:
        train, test = train_test_split(
            splittable,
            test_size=test_fraction,
            random_state=seed,
            stratify=[r["category"] for r in splittable],
        )
    except ValueError as error:  # sklearn's words for "too few records for this split"
        raise DataError(
            f"{source}: cannot split {len(records)} prompt(s) ({len(splittable)} in categories with at least 2, "
            f"{len(counts)} categories) with data.test_fraction {test_fraction}: {error}; add prompts or raise "
            "test_fraction so that the test split holds at least one prompt per category"
        ) from None
    return list(train) + singles, list(test)


def proportional_sample(records: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """At most `n` records keeping category shares (a stratified draw); all of them if n is None or larger."""
    if n is None or n >= len(records):
        return records
    from sklearn.model_selection import train_test_split

    counts = Counter(r["category"] for r in records)
    strata = [r["category"] if counts[r["category"]] >= 2 else "_rare" for r in records]
    try:
        kept, _ = train_test_split(records, train_size=n, random_state=seed, stratify=strata)
    except ValueError:  # more strata than n: plain seeded draw
        kept, _ = train_test_split(records, train_size=n, random_state=seed)
    return sorted(kept, key=lambda r: r["id"])


def to_item(record: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    response = cut_at_word(record["response"].strip(), max_chars)
    return {
        "id": record["id"],
        "prompt": build_prompt(record["instruction"], record.get("context")),
        "response": response,
        "category": record["category"],
    }


HELP = "human data -> train/test prompts with reference responses"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(paths.prepared()))


def main(*, out: str = str(paths.prepared()), params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    data = params.data
    run = Run("prepare", {"data": data.model_dump()})
    records = load_dataset(data.dataset, data.revision)
    available = len(records)
    duplicates = 0
    if data.dedupe:
        records, duplicates = dedupe_prompts(records)
    if len(records) < 2:
        raise DataError(
            f"{data.dataset}: {available} record(s), {duplicates} of them repeated prompts: at least 2 distinct "
            "prompts are needed for a train/test split"
        )
    train, test = stratified_split(records, data.test_fraction, data.split_seed, data.dataset)
    train = proportional_sample(train, data.max_train_prompts, data.split_seed)
    test = proportional_sample(test, data.max_test_prompts, data.split_seed)
    out_dir = Path(out)
    items = {
        name: [to_item(r, data.max_response_chars) for r in split]
        for name, split in (("train", train), ("test", test))
    }
    shared = {i["prompt"] for i in items["train"]} & {i["prompt"] for i in items["test"]}
    if shared:  # only possible with data.dedupe: false
        print(f"prepare: {len(shared)} prompt(s) are in both train and test (data.dedupe is off)")
    for name, split_items in items.items():
        write_jsonl(out_dir / f"{name}.jsonl", split_items)
    run.write(
        out_dir,
        source=dataset_provenance(data.dataset, data.revision),
        counts={
            "available": available,
            "duplicate_prompts_removed": duplicates,
            "prompts_in_train_and_test": len(shared),
            "train": len(train),
            "test": len(test),
            "train_by_category": dict(sorted(Counter(r["category"] for r in train).items())),
            "test_by_category": dict(sorted(Counter(r["category"] for r in test).items())),
        },
    )
    print(
        f"prepare: {len(train)} train and {len(test)} test prompts from {data.dataset} ({duplicates} repeated "
        f"prompt(s) removed) -> {out_dir}"
    )
