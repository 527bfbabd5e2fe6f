"""Article/summary pairs for the self-preference experiment (Schaffelder & Gatt, Experiment 3).

Every loader returns records `{"id", "article", "summary"}`: a text for the sources to summarise and its
human-written summary (the fifth candidate).

- `cnn_dailymail` (the paper's): news articles and their `highlights` from the hub's abisee/cnn_dailymail.
- `pydoc-docstrings` (the offline default): CPython docstrings. PEP 257 asks a docstring to open with a
  one-line summary, then a blank line, then the body; the body is the article and the author's own summary
  line is the human summary. Only docstrings whose first paragraph is one line ending in "." (at least four
  words) and whose body has at least `summaries.min_words` words qualify, bodies with doctest examples are
  skipped, and the modules are disjoint from the ones `data.dataset: pydoc` takes its answers from (so no
  condition was trained on these texts).
- a local JSONL, CSV or parquet file with `article` and `summary` columns (`id` optional).

`select_articles` then draws `n_articles` exactly as the paper's `df.sample(n=100, random_state=42)` did.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from synthmix.config import Summaries
from synthmix.io import DataError, read_table

PYDOC_DOCSTRINGS = "pydoc-docstrings"
CNN_DAILYMAIL = "cnn_dailymail"
CNN_HUB_ID = "abisee/cnn_dailymail"

# Standard-library modules (3.11-3.13) with many PEP 257 docstrings; none is in human_data.PYDOC_MODULES.
DOCSTRING_MODULES = (
    "abc",
    "argparse",
    "ast",
    "asyncio",
    "base64",
    "bz2",
    "cmd",
    "code",
    "codecs",
    "codeop",
    "compileall",
    "concurrent.futures",
    "configparser",
    "doctest",
    "email.message",
    "ftplib",
    "getopt",
    "gettext",
    "hmac",
    "http.client",
    "http.cookiejar",
    "http.server",
    "imaplib",
    "importlib.metadata",
    "inspect",
    "io",
    "linecache",
    "logging",
    "lzma",
    "mailbox",
    "mimetypes",
    "pickle",
    "pkgutil",
    "plistlib",
    "pyclbr",
    "pydoc",
    "runpy",
    "sched",
    "selectors",
    "shelve",
    "site",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "subprocess",
    "sysconfig",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "types",
    "unittest",
    "urllib.request",
    "warnings",
    "xml.etree.ElementTree",
    "xmlrpc.client",
    "zipapp",
    "zipimport",
)
MIN_SUMMARY_WORDS = 4


def _documented(module_name: str) -> list[tuple[str, Any]]:
    """The module, its public classes and functions defined there, and their public methods."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(module_name)
    root = module.__name__.split(".")[0]
    found: list[tuple[str, Any]] = [(module_name, module)]
    for name in sorted(dir(module)):
        obj = getattr(module, name, None)
        if name.startswith("_") or obj is None or inspect.ismodule(obj):
            continue
        if (getattr(obj, "__module__", None) or "").split(".")[0] != root:
            continue  # re-exported from elsewhere
        found.append((f"{module_name}.{name}", obj))
        if inspect.isclass(obj):
            for member, value in sorted(vars(obj).items()):
                if not member.startswith("_") and (
                    callable(value) or isinstance(value, staticmethod | classmethod)
                ):
                    found.append((f"{module_name}.{name}.{member}", getattr(value, "__func__", value)))
    return found


def docstring_pair(doc: str, min_words: int) -> tuple[str, str] | None:
    """(body, summary line) of a PEP 257 docstring, or None when it has no one-line summary or a short body."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", inspect.cleandoc(doc)) if p.strip()]
    if len(paragraphs) < 2:
        return None
    summary, body = paragraphs[0], "\n\n".join(paragraphs[1:])
    if "\n" in summary or not summary.endswith(".") or len(summary.split()) < MIN_SUMMARY_WORDS:
        return None
    if len(body.split()) < min_words or ">>>" in body:
        return None
    return body, summary


def load_docstrings(min_words: int) -> list[dict[str, Any]]:
    """The offline article/summary pairs (see module docstring), one per distinct body, in module order."""
    records, seen = [], set()
    for module_name in DOCSTRING_MODULES:
        for qualified, obj in _documented(module_name):
            doc = obj.__doc__
            pair = docstring_pair(doc, min_words) if isinstance(doc, str) else None
            if pair is None or pair[0] in seen:  # the same docstring can sit on two names
                continue
            seen.add(pair[0])
            records.append({"id": f"docstring-{qualified}", "article": pair[0], "summary": pair[1]})
    return records


def load_cnn_dailymail(settings: Summaries) -> list[dict[str, Any]]:
    """CNN/DailyMail (`article`, `highlights`) from the hub; ids are the dataset's own `id` column."""
    import datasets

    try:
        table = datasets.load_dataset(
            CNN_HUB_ID, settings.config, split=settings.split, revision=settings.revision
        )
    except Exception as error:  # datasets raises many types for a missing/offline dataset
        raise DataError(
            f"summaries.dataset: cannot load {CNN_HUB_ID} ({settings.config}, {settings.split}): {error}"
        ) from None
    return [
        {"id": str(row.get("id") or f"cnn-{i:06d}"), "article": row["article"], "summary": row["highlights"]}
        for i, row in enumerate(table)
    ]


def load_article_file(path: str | Path) -> list[dict[str, Any]]:
    """A local table of `article` and `summary` (and optionally `id`), checked row by row."""
    path = Path(path)
    rows, line_of = read_table(path)
    records, seen = [], {}
    for i, row in enumerate(rows):
        where = f"{path}: line {line_of[i]}" if line_of else f"{path}: row {i + 1}"
        for column in ("article", "summary"):
            value = row.get(column)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"{where}: '{column}' is empty or not text ({value!r}); expected article, summary"
                )
        item = str(row.get("id", f"{path.stem}-{i:05d}"))
        if item in seen:
            raise DataError(f"{where}: duplicate id '{item}' (first seen in row {seen[item] + 1})")
        seen[item] = i
        records.append({"id": item, "article": row["article"], "summary": row["summary"]})
    return records


def load_articles(settings: Summaries) -> list[dict[str, Any]]:
    if settings.dataset == PYDOC_DOCSTRINGS:
        return load_docstrings(settings.min_words)
    if settings.dataset == CNN_DAILYMAIL:
        return load_cnn_dailymail(settings)
    return load_article_file(settings.dataset)


def select_articles(records: list[dict[str, Any]], n_articles: int | None, seed: int) -> list[dict[str, Any]]:
    """`n_articles` records drawn as pandas' `df.sample(n, random_state=seed)` draws them (the paper's call),
    in the order drawn; all records when `n_articles` is None or not smaller."""
    import pandas as pd

    if n_articles is None or n_articles >= len(records):
        return list(records)
    positions = pd.RangeIndex(len(records)).to_series().sample(n=n_articles, random_state=seed)
    return [records[i] for i in positions]


def provenance(settings: Summaries) -> dict[str, Any]:
    if settings.dataset == PYDOC_DOCSTRINGS:
        return {
            "dataset": PYDOC_DOCSTRINGS,
            "description": "CPython docstrings: body and PEP 257 summary line, PSF licence",
            "python": sys.version.split()[0],
        }
    if settings.dataset == CNN_DAILYMAIL:
        return {
            "dataset": CNN_HUB_ID,
            "config": settings.config,
            "split": settings.split,
            "revision": settings.revision,
        }
    return {"dataset": settings.dataset}
