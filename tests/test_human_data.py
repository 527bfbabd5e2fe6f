"""The human data: the offline CPython-docs set and local files in Dolly's schema (synthmix.human_data)."""

from __future__ import annotations

import importlib
import inspect
import json
from collections import Counter
from pathlib import Path

import pytest

from synthmix.human_data import DOLLY_COLUMNS, build_prompt, load_dataset, load_file, load_pydoc
from synthmix.io import DataError


@pytest.fixture(scope="module")
def pydoc_records() -> list[dict]:
    return load_pydoc()


def test_pydoc_records_have_dollys_schema(pydoc_records: list[dict]) -> None:
    assert len(pydoc_records) >= 200
    for record in pydoc_records:
        assert set(record) == {"id", "instruction", "context", "response", "category"}
        assert record["instruction"].strip() and record["response"].strip()
    ids = [r["id"] for r in pydoc_records]
    assert len(ids) == len(set(ids))
    assert set(Counter(r["category"] for r in pydoc_records)) == {
        "language_reference",
        "module_doc",
        "class_doc",
        "function_doc",
    }
    assert load_pydoc() == pydoc_records  # deterministic


def test_pydoc_responses_are_the_cpython_documentation(pydoc_records: list[dict]) -> None:
    """Every response is text written by the CPython developers, found verbatim in the docs it names."""
    from pydoc_data.topics import topics

    responses = [r["response"] for r in pydoc_records]
    assert len(responses) == len(set(responses))
    for record in pydoc_records:
        kind, _, name = record["id"].removeprefix("pydoc-").partition("-")
        if kind == "topic":
            source = topics[name]
        else:
            module_name, obj = name, None
            while True:  # the longest importable module prefix, then attributes
                try:
                    module = importlib.import_module(module_name)
                    break
                except ImportError:
                    module_name = module_name.rsplit(".", 1)[0]
            obj = module
            for attribute in name.removeprefix(module_name).strip(".").split("."):
                obj = getattr(obj, attribute) if attribute else obj
            source = inspect.cleandoc(obj.__doc__)
            assert f"`{name}`" in record["instruction"]
        # paragraphs are re-joined, so compare paragraph by paragraph
        for paragraph in record["response"].split("\n\n"):
            assert paragraph.strip() in source, (record["id"], paragraph[:80])
        assert len(record["response"].split()) >= 12


def test_pydoc_question_examples(pydoc_records: list[dict]) -> None:
    by_id = {r["id"]: r for r in pydoc_records}
    dumps = by_id["pydoc-function-json.dumps"]
    assert dumps["instruction"] == "What does the Python function `json.dumps` do?"
    assert dumps["category"] == "function_doc" and dumps["context"] == ""
    assert dumps["response"].startswith("Serialize ``obj`` to a JSON formatted ``str``.")
    assert by_id["pydoc-topic-assert"]["instruction"].startswith("Explain")
    assert by_id["pydoc-topic-assert"]["category"] == "language_reference"


def test_build_prompt_puts_context_first() -> None:
    assert build_prompt("Summarise it.", "Some long text.") == "Some long text.\n\nSummarise it."
    assert build_prompt("  Summarise it. ", "\n Some text.\n") == "Some text.\n\nSummarise it."
    assert build_prompt("What is 2+2?", "") == "What is 2+2?"
    assert build_prompt("What is 2+2?", None) == "What is 2+2?"
    assert build_prompt("What is 2+2?", "   ") == "What is 2+2?"


def _write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(i: int, **changes: object) -> dict:
    row = {"instruction": f"Do thing {i}.", "context": "", "response": f"Done {i}.", "category": "open_qa"}
    return {**row, **changes}


def test_load_jsonl_file(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", [_row(1, context="Background."), _row(2, id=77)])
    rows = load_file(path)
    assert [r["id"] for r in rows] == ["mine-00000", "77"]  # ids made up when absent, text otherwise
    assert rows[0]["context"] == "Background."
    assert all(set(DOLLY_COLUMNS) <= set(r) for r in rows)
    assert load_dataset(str(path)) == rows


def test_load_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        'instruction,context,response,category\n"Say hi, please.",,Hi.,open_qa\nCount.,"1, 2",3,open_qa\n',
        encoding="utf-8",
    )
    rows = load_file(path)
    assert [(r["instruction"], r["context"], r["response"]) for r in rows] == [
        ("Say hi, please.", "", "Hi."),
        ("Count.", "1, 2", "3"),
    ]
    assert [r["id"] for r in rows] == ["mine-00000", "mine-00001"]


def test_missing_column(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [{"instruction": "x", "response": "y"}])
    with pytest.raises(DataError, match=rf"{path}: missing column\(s\) category; expected Dolly's schema"):
        load_file(path)
    csv = tmp_path / "d.csv"
    csv.write_text("instruction,answer,category\nx,y,z\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{csv}: missing column\(s\) response"):
        load_file(csv)


def test_empty_response_names_the_line(tmp_path: Path) -> None:
    # line 3 is blank and skipped: the bad record is on line 4 of the file, the third record
    path = _write_jsonl(tmp_path / "d.jsonl", [_row(1), _row(2), "", _row(3, response="  ")])
    with pytest.raises(DataError, match=rf"{path}: line 4: 'response' is empty or not text"):
        load_file(path)
    csv = tmp_path / "d.csv"
    csv.write_text("instruction,context,response,category\na,,b,c\nd,,,f\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{csv}: row 2: 'response' is empty or not text"):
        load_file(csv)


def test_duplicate_id(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [_row(1, id="q1"), _row(2, id="q2"), _row(3, id="q1")])
    with pytest.raises(DataError, match=rf"{path}: line 3: duplicate id 'q1' \(first seen in record 1\)"):
        load_file(path)


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [_row(1), '{"instruction": "cut off'])
    with pytest.raises(DataError, match=rf"{path}: line 2: not valid JSON"):
        load_file(path)


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"unsupported dataset format '\.txt' \(use \.jsonl, \.csv or \.parquet\)"
    ):
        load_dataset(str(path))
    with pytest.raises(DataError, match="dataset file not found"):
        load_dataset(str(tmp_path / "absent.jsonl"))


def test_unreachable_hub_dataset_says_so() -> None:
    # HF_HUB_OFFLINE=1 (conftest): fails at once, with the key and the dataset name
    with pytest.raises(DataError, match="data.dataset: cannot load hub dataset 'someone/no-such-dataset'"):
        load_dataset("someone/no-such-dataset")
