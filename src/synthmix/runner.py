"""The one resumable runner: every loop that costs model time goes through `run_resumable`.

Generation, sampling, red-team answers, judging, perplexity and preference judging all have the same shape:
a list of items, each turned into one record by a model. `run_resumable` writes the checkpoint, resumes
after a crash, shows progress and publishes the records atomically; the caller only says how to compute the
records of the items that are not done yet.

- The checkpoint is `.synthmix/checkpoints/<output>.partial.jsonl` (`synthmix.paths.checkpoint`): outside
  every DVC dependency and output, so a killed run leaves no stray file where DVC looks, and DVC (which
  deletes a stage's outputs before running it) never deletes it. It starts with a fingerprint of everything
  that decides the records; a checkpoint made with other settings is discarded, never mixed in.
- Each finished record is flushed and fsynced before the next is computed (`io.ResumableRecords`).
- The output file is written in item order, in one rename, only when every item is done; then the
  checkpoint is removed.
- The model is never loaded for a run whose items are all in the checkpoint: `compute` is called only when
  something is left.
- A checkpoint whose output file exists is stale: its stage was published or restored from DVC's run-cache
  since. Every run removes such leftovers first (`sweep_stale_checkpoints`), and `synthmix checkpoints`
  lists or removes them by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthmix import paths
from synthmix.io import DataError, ResumableRecords

# compute(items, done) yields one record (a dict with the item's "id") per item whose id is not in `done`.
Compute = Callable[[Sequence[Mapping[str, Any]], frozenset[str]], Iterable[dict[str, Any]]]


@dataclass
class Finished:
    """What a run produced: the records in item order, and how many came from a checkpoint."""

    records: list[dict[str, Any]]
    resumed: int


def run_resumable(
    items: Sequence[Mapping[str, Any]],
    output: str | Path,
    key: str,
    compute: Compute,
    desc: str,
    unit: str = "item",
) -> Finished:
    """Turn every item into a record with `compute`, resumably; publish them to `output` (JSONL).

    `key` is a fingerprint of everything that decides the records (settings, model revision, adapter hash,
    the items themselves). `compute(items, done)` receives every item (backends that seed by batch position
    need them all) and the ids already done, and yields a record for each remaining item, in any order.
    """
    from tqdm.auto import tqdm

    output = Path(output)
    sweep_stale_checkpoints()
    ids = [str(item["id"]) for item in items]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise ValueError(f"{desc}: item ids must be unique, repeated: {repeated}")
    with ResumableRecords(output, key, partial=paths.checkpoint(output)) as records:
        if records.resumed:
            print(f"{desc}: resuming, {records.resumed} of {len(items)} already done ({records.partial})")
        if len(records.done) < len(items):
            wanted = set(ids)
            with tqdm(total=len(items), initial=len(records.done), desc=desc, unit=unit) as bar:
                try:
                    for record in compute(items, frozenset(records.done)):
                        if record["id"] not in wanted:
                            raise ValueError(
                                f"{desc}: computed a record for an unknown item {record['id']!r}"
                            )
                        records.add(record)
                        bar.update(1)
                except DataError as error:  # bad input found by the model pass: say which stage met it
                    raise DataError(f"{desc}: {error}") from None
        records.publish(ids)
        return Finished([records.records[i] for i in ids], records.resumed)


def leftover_checkpoints(root: str | Path = ".") -> Iterator[tuple[Path, Path | None, bool]]:
    """(checkpoint, its output, stale) for every checkpoint under `root`'s work folder. A checkpoint is stale
    when its output exists: the stage was published or restored since the run that left it."""
    folder = Path(root) / paths.CHECKPOINTS
    if not folder.is_dir():
        return
    for checkpoint in sorted(folder.rglob("*.partial.jsonl")):
        output = paths.output_of_checkpoint(checkpoint.relative_to(Path(root)))
        yield checkpoint, output, output is not None and (Path(root) / output).is_file()


def sweep_stale_checkpoints(root: str | Path = ".") -> list[Path]:
    """Remove the stale checkpoints under `root` (see `leftover_checkpoints`); return them."""
    removed = []
    for checkpoint, _, stale in leftover_checkpoints(root):
        if stale:
            checkpoint.unlink(missing_ok=True)
            removed.append(checkpoint)
    return removed
