"""Human instruction/response data: Dolly-15k (or any file in its schema) and an offline default.

Every loader returns records in Dolly's schema: `id`, `instruction`, `context`, `response`, `category`.

The offline default (`dataset: pydoc`) is documentation written by the CPython developers and shipped with
every Python (PSF licence): the language-reference topics of `pydoc_data.topics` and the docstrings of
standard-library modules, functions and classes. The *responses* are that human-written text; the
*instructions* are questions formed from a fixed template around the documented name (e.g. "What does the
Python function `json.dumps` do?"). No text written for this project is used as a response.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from synthmix.io import DataError, read_table

DOLLY_COLUMNS = ("instruction", "response", "category")

# Standard-library modules whose public docstrings make good answers (pure documentation, stable across
# 3.11-3.13). Order matters only for ids, which are derived from names, not positions.
PYDOC_MODULES = (
    "bisect",
    "calendar",
    "collections",
    "colorsys",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "difflib",
    "enum",
    "filecmp",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "heapq",
    "html",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "locale",
    "math",
    "operator",
    "os.path",
    "pathlib",
    "pprint",
    "queue",
    "random",
    "re",
    "secrets",
    "shlex",
    "shutil",
    "statistics",
    "string",
    "tempfile",
    "textwrap",
    "typing",
    "unicodedata",
    "urllib.parse",
    "uuid",
    "zipfile",
    "zlib",
)
MIN_DOC_WORDS = 12


def build_prompt(instruction: str, context: str | None) -> str:
    """The paper's prompt: any context goes before the instruction, separated by a blank line."""
    context = (context or "").strip()
    return f"{context}\n\n{instruction.strip()}" if context else instruction.strip()


def cut_at_word(text: str, max_chars: int | None) -> str:
    """`text` cut at the last word boundary within `max_chars` (None: whole)."""
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _doc_answer(doc: str) -> str | None:
    """A docstring as an answer: cleaned, signature lines of C functions removed; None if too short."""
    doc = inspect.cleandoc(doc)
    lines = doc.splitlines()
    while lines and re.match(r"^[\w.]+\(.*\)( -> .*)?$", lines[0].strip()):
        lines.pop(0)  # "dumps(obj, ...)" signature lines written by Argument Clinic
    text = "\n".join(lines).strip()
    return text if len(text.split()) >= MIN_DOC_WORDS else None


def load_pydoc() -> list[dict[str, Any]]:
    """The offline human data set (see module docstring)."""
    from pydoc_data.topics import topics

    records: list[dict[str, Any]] = []
    for key in sorted(topics):
        text = topics[key]
        heading, _, body = text.partition("\n")
        body = re.sub(r"^\*+\n", "", body.lstrip("\n"))
        paragraphs = _paragraphs(body)
        if not paragraphs:
            continue
        records.append(
            {
                "id": f"pydoc-topic-{key}",
                "instruction": f"Explain {heading.strip()} in Python.",
                "context": "",
                "response": "\n\n".join(paragraphs[:3]),
                "category": "language_reference",
            }
        )
    for module_name in PYDOC_MODULES:
        module = importlib.import_module(module_name)
        members = [(module_name, module)] + [
            (f"{module_name}.{name}", getattr(module, name))
            for name in sorted(getattr(module, "__all__", None) or dir(module))
            if not name.startswith("_") and hasattr(module, name)
        ]
        root = module.__name__.split(".")[0].lstrip("_")
        for qualified, obj in members:
            if obj is module:
                kind, category = "module", "module_doc"
            elif inspect.ismodule(obj):
                continue
            else:
                owner = (getattr(obj, "__module__", None) or "").split(".")[0].lstrip("_")
                if owner != root:
                    continue  # re-exported from elsewhere: documented under its own module
                if inspect.isclass(obj):
                    kind, category = "class", "class_doc"
                elif callable(obj):
                    kind, category = "function", "function_doc"
                else:
                    continue
            answer = _doc_answer(obj.__doc__ or "")
            if answer is None:
                continue
            records.append(
                {
                    "id": f"pydoc-{kind}-{qualified}",
                    "instruction": f"What does the Python {kind} `{qualified}` do?",
                    "context": "",
                    "response": answer,
                    "category": category,
                }
            )
    seen: set[str] = set()
    unique = []
    for record in records:  # the same object can be exported under two names
        if record["response"] not in seen:
            seen.add(record["response"])
            unique.append(record)
    return unique


def _check_records(rows: list[dict[str, Any]], source: str, line_of: list[int] | None = None) -> None:
    def where(i: int) -> str:
        return f"{source}: line {line_of[i]}" if line_of else f"{source}: row {i + 1}"

    if rows:
        missing = [c for c in DOLLY_COLUMNS if c not in rows[0]]
        if missing:
            raise DataError(
                f"{source}: missing column(s) {', '.join(missing)}; expected Dolly's schema "
                f"(instruction, context, response, category)"
            )
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        for column in DOLLY_COLUMNS:
            value = row.get(column)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where(i)}: '{column}' is empty or not text ({value!r})")
        if row["id"] in seen:
            raise DataError(
                f"{where(i)}: duplicate id '{row['id']}' (first seen in record {seen[row['id']] + 1})"
            )
        seen[row["id"]] = i


def load_file(path: str | Path) -> list[dict[str, Any]]:
    """A local JSONL, CSV or parquet file in Dolly's schema (an `id` column is optional)."""
    path = Path(path)
    rows, line_of = read_table(path)
    for i, row in enumerate(rows):
        row.setdefault("id", f"{path.stem}-{i:05d}")
        row["id"] = str(row["id"])
        row.setdefault("context", "")
        row["context"] = "" if row["context"] is None else str(row["context"])
    _check_records(rows, str(path), line_of)
    return rows


def load_hub(dataset: str, revision: str | None) -> list[dict[str, Any]]:
    """A hub dataset in Dolly's schema, e.g. databricks/databricks-dolly-15k."""
    import datasets

    try:
        table = datasets.load_dataset(dataset, revision=revision, split="train")
    except Exception as error:  # datasets raises many types for a missing/offline dataset
        raise DataError(f"data.dataset: cannot load hub dataset '{dataset}': {error}") from None
    rows = [dict(row, id=f"{dataset.split('/')[-1]}-{i:05d}") for i, row in enumerate(table)]
    for row in rows:
        row["context"] = row.get("context") or ""
    _check_records(rows, dataset)
    return rows


def load_dataset(dataset: str, revision: str | None = None) -> list[dict[str, Any]]:
    """Dispatch on `data.dataset`: 'pydoc', a local file, or a hub id."""
    if dataset == "pydoc":
        return load_pydoc()
    if Path(dataset).suffix in (".jsonl", ".csv", ".parquet") or Path(dataset).exists():
        return load_file(dataset)
    return load_hub(dataset, revision)


def dataset_provenance(dataset: str, revision: str | None) -> dict[str, Any]:
    if dataset == "pydoc":
        return {
            "dataset": "pydoc",
            "description": "CPython documentation (pydoc_data.topics and stdlib docstrings), PSF licence",
            "python": sys.version.split()[0],
        }
    return {"dataset": dataset, "revision": revision}
