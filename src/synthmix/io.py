"""Files: atomic writes, JSONL with line-numbered errors, and resumable record files.

A stage that loops over items writes each finished record to `<output>.partial` (flushed and fsynced) and
renames it to `<output>` only when every item is done. DVC deletes declared outputs before a stage runs, but
the partial file is not a declared output, so after a crash the rerun finds it and continues. The partial
file starts with a header holding a fingerprint of everything that decides the records (params slice,
model, prompts); a rerun with other settings discards it instead of mixing old and new records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data file is malformed; the message names the file (and line)."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each non-blank line; a bad line raises DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a JSONL file; every record must have the `required` keys."""
    required = list(required)
    records = []
    for number, record in iter_jsonl(path):
        missing = [key for key in required if key not in record]
        if missing:
            raise DataError(f"{path}: line {number}: missing key(s) {', '.join(missing)}")
        records.append(record)
    return records


def read_table(path: str | Path) -> tuple[list[dict[str, Any]], list[int] | None]:
    """The rows of a local JSONL, CSV or parquet file, and for JSONL the line number of each row (else None).

    CSV cells are read as text with empty cells kept as "" (no NaN)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    if path.suffix == ".jsonl":
        pairs = list(iter_jsonl(path))
        return [record for _, record in pairs], [number for number, _ in pairs]
    if path.suffix in (".csv", ".parquet"):
        import pandas as pd

        frame = pd.read_csv(path, keep_default_na=False) if path.suffix == ".csv" else pd.read_parquet(path)
        return frame.to_dict(orient="records"), None
    raise DataError(f"{path}: unsupported dataset format '{path.suffix}' (use .jsonl, .csv or .parquet)")


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ResumableRecords:
    """Append-only records keyed by `id`, resumable after a crash, published atomically when complete.

    Usage::

        with ResumableRecords(out, fingerprint=fp) as records:
            for item in items:
                if item["id"] not in records.done:
                    records.add({"id": item["id"], ...})
            records.publish(order=[item["id"] for item in items])
    """

    def __init__(self, path: str | Path, fingerprint: str, partial: str | Path | None = None):
        self.path = Path(path)
        # Outputs inside a DVC-declared folder need `partial` outside that folder (DVC deletes the folder).
        self.partial = Path(partial) if partial else self.path.with_name(self.path.name + ".partial")
        self.fingerprint = fingerprint
        self.records: dict[str, dict[str, Any]] = {}
        self.resumed = 0
        self._handle = None

    @property
    def done(self) -> set[str]:
        return set(self.records)

    def __enter__(self) -> ResumableRecords:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.exists() and not self._load_partial():
            self.partial.unlink()
        fresh = not self.partial.exists()
        self._handle = self.partial.open("a", encoding="utf-8")
        if fresh:
            self._write_line({"_fingerprint": self.fingerprint})
        return self

    def _load_partial(self) -> bool:
        """Load finished records from a previous run; False if the partial file belongs to other settings."""
        with self.partial.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        try:
            header = json.loads(lines[0])
        except (json.JSONDecodeError, IndexError):
            return False
        if header.get("_fingerprint") != self.fingerprint:
            return False
        # The last line may be cut off by the crash: keep every complete line, drop the rest.
        good = [lines[0]]
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            self.records[record["id"]] = record
            good.append(line)
        self.resumed = len(self.records)
        # Rewrite without the torn tail so later appends start on a clean line.
        atomic_write_text(self.partial, "\n".join(good) + "\n")
        return True

    def _write_line(self, record: dict[str, Any]) -> None:
        assert self._handle is not None
        try:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:  # a full disk or quota: say what is kept and how to go on
            raise OSError(
                error.errno,
                f"{error.strerror or error} while saving a finished record to {self.partial}; the "
                f"{len(self.records)} record(s) saved before are kept there, and rerunning the stage (once "
                "there is space) continues from them",
            ) from error

    def add(self, record: dict[str, Any]) -> None:
        if record["id"] in self.records:
            raise ValueError(f"record '{record['id']}' was already written to {self.partial}")
        self._write_line(record)
        self.records[record["id"]] = record  # only once it is on disk

    def publish(self, order: list[str]) -> None:
        """Write the final file in `order` (every id must be done) and remove the partial file."""
        missing = [key for key in order if key not in self.records]
        if missing:
            raise RuntimeError(f"{self.path}: {len(missing)} item(s) unfinished, e.g. {missing[:3]}")
        write_jsonl(self.path, (self.records[key] for key in order))
        self.close()
        self.partial.unlink()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Closing flushes again; after a failed write (a full disk) that fails too and would hide the first
        # error, which is the one that says what happened.
        with contextlib.suppress(OSError):
            self.close()


def write_tsv(path: str | Path, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """A tab-separated file with a header line (for `dvc plots`), written atomically."""
    lines = ["\t".join(columns)] + ["\t".join(str(value) for value in row) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
