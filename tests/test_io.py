"""Atomic writes, line-numbered JSONL errors and resumable record files (synthmix.io)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmix.io import (
    DataError,
    ResumableRecords,
    atomic_write_text,
    fingerprint,
    read_json,
    read_jsonl,
    sha256_file,
    write_json,
    write_jsonl,
)


def test_atomic_writes_leave_only_the_target(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "deep" / "a.txt", "first")
    atomic_write_text(tmp_path / "deep" / "a.txt", "second")  # replaces, not appends
    write_json(tmp_path / "deep" / "b.json", {"k": [1, "é"]})
    write_jsonl(tmp_path / "deep" / "c.jsonl", [{"id": "1"}, {"id": "2"}])
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["a.txt", "b.json", "c.jsonl"]
    assert (tmp_path / "deep" / "a.txt").read_text() == "second"
    assert read_json(tmp_path / "deep" / "b.json") == {"k": [1, "é"]}
    assert read_jsonl(tmp_path / "deep" / "c.jsonl") == [{"id": "1"}, {"id": "2"}]


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"id": "old"}])

    def records():
        yield {"id": "new"}
        raise RuntimeError("generator broke")

    with pytest.raises(RuntimeError):
        write_jsonl(target, records())
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert read_jsonl(target) == [{"id": "old"}]

    # a write that fails after the temporary file exists (a lone surrogate cannot be encoded as UTF-8)
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(target, "half \ud800 written")
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert read_jsonl(target) == [{"id": "old"}]

    with pytest.raises(TypeError):  # not JSON-serialisable: nothing half-written
        write_json(tmp_path / "x.json", {"bad": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_read_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b"\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"id": "a"}\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 2: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_text('{"id": "a", "prompt": "p"}\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 2: missing key\(s\) prompt"):
        read_jsonl(path, required=("id", "prompt"))
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_read_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{\n  "a": 1,\n  oops\n}', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 3: not valid JSON"):
        read_json(path)
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "none.json")


def test_fingerprint_and_sha256(tmp_path: Path) -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})  # key order does not matter
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    # sha256("abc"), FIPS 180-2 appendix B.1
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _partial_lines(records: ResumableRecords) -> list[str]:
    return records.partial.read_text(encoding="utf-8").splitlines()


def test_resumable_records_publish_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out" / "responses.jsonl"
    with ResumableRecords(out, fingerprint="fp1") as records:
        for key in ("c", "a", "b"):  # finished in another order than the prompts
            records.add({"id": key, "value": key.upper()})
        assert not out.exists()  # nothing published before every item is done
        records.publish(order=["a", "b", "c"])
    assert [r["id"] for r in read_jsonl(out)] == ["a", "b", "c"]
    assert not records.partial.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["responses.jsonl"]


def test_publish_refuses_unfinished_items(tmp_path: Path) -> None:
    out = tmp_path / "responses.jsonl"
    with ResumableRecords(out, fingerprint="fp") as records:
        records.add({"id": "a"})
        with pytest.raises(RuntimeError, match=r"1 item\(s\) unfinished, e.g. \['b'\]"):
            records.publish(order=["a", "b"])
    assert not out.exists()
    assert records.partial.exists()  # kept for the next run


def test_resumable_records_refuse_duplicates(tmp_path: Path) -> None:
    with ResumableRecords(tmp_path / "r.jsonl", fingerprint="fp") as records:
        records.add({"id": "a"})
        with pytest.raises(ValueError, match="record 'a' was already written"):
            records.add({"id": "a", "other": 1})
    # the refused record never reached the partial file
    assert len(_partial_lines(records)) == 2


def test_resume_after_a_torn_last_line(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    partial = tmp_path / "elsewhere" / ".r.partial.jsonl"  # outside the output folder, as stages use it
    with ResumableRecords(out, fingerprint="fp", partial=partial) as records:
        records.add({"id": "a", "n": 1})
        records.add({"id": "b", "n": 2})
    # a crash in the middle of writing the third record
    with partial.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "c", "n"')

    with ResumableRecords(out, fingerprint="fp", partial=partial) as records:
        assert records.resumed == 2
        assert records.done == {"a", "b"}
        # the torn tail was dropped, so the next record starts on its own line
        records.add({"id": "c", "n": 3})
        lines = _partial_lines(records)
        assert [json.loads(line) for line in lines] == [
            {"_fingerprint": "fp"},
            {"id": "a", "n": 1},
            {"id": "b", "n": 2},
            {"id": "c", "n": 3},
        ]
        records.publish(order=["a", "b", "c"])
    assert [r["n"] for r in read_jsonl(out)] == [1, 2, 3]
    assert not partial.exists()


def test_partial_file_of_other_settings_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with ResumableRecords(out, fingerprint="old-settings") as records:
        records.add({"id": "a", "answer": "from old settings"})
    with ResumableRecords(out, fingerprint="new-settings") as records:
        assert records.resumed == 0 and records.done == set()
        assert _partial_lines(records) == [json.dumps({"_fingerprint": "new-settings"})]
        records.add({"id": "a", "answer": "new"})
        records.publish(order=["a"])
    assert read_jsonl(out) == [{"id": "a", "answer": "new"}]


def test_partial_file_with_broken_header_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    partial = tmp_path / "r.jsonl.partial"
    partial.write_text('{"_fingerp', encoding="utf-8")
    with ResumableRecords(out, fingerprint="fp") as records:
        assert records.partial == partial
        assert records.resumed == 0
        assert _partial_lines(records) == [json.dumps({"_fingerprint": "fp"})]
