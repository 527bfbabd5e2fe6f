"""The summarisation candidates (Experiment 3): article/summary pairs (articles) and each source's summaries
(summarize@<source>)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from synthmix import articles, paths
from synthmix.config import ParamsError, Summaries, parse_params
from synthmix.human_data import PYDOC_MODULES
from synthmix.io import DataError, read_json, read_jsonl, write_jsonl
from synthmix.prompts import SUMMARY_INSTRUCTION, summary_request
from synthmix.stages import articles as articles_stage
from synthmix.stages import summarize

DOCSTRING = """Return the number of words in *text*.

    Words are maximal runs of characters that are not white space. Leading and
    trailing white space is ignored, so "  a b " holds two words.

    An empty string holds none.
    """


def test_a_pep257_docstring_splits_into_summary_line_and_body() -> None:
    body, summary = articles.docstring_pair(DOCSTRING, min_words=31)
    assert summary == "Return the number of words in *text*."
    assert body == (
        "Words are maximal runs of characters that are not white space. Leading and\n"
        'trailing white space is ignored, so "  a b " holds two words.\n\nAn empty string holds none.'
    )
    assert (
        articles.docstring_pair(DOCSTRING, min_words=32) is None
    )  # the body has 31 whitespace-separated words
    assert articles.docstring_pair("Too short.\n\nA body of several words here.", 3) is None  # 2-word summary
    assert articles.docstring_pair("No blank line after\nthe summary line.\n\nBody text here.", 1) is None
    assert articles.docstring_pair("Summary without a full stop\n\nBody text here.", 1) is None
    assert articles.docstring_pair("Has an example in it.\n\n>>> f(1)\n2\n\nmore words", 1) is None


def test_the_offline_pairs_are_many_long_and_not_trained_on() -> None:
    """Enough CPython docstrings qualify for the paper's 100 articles; none comes from a module whose
    docstrings are `data.dataset: pydoc` answers (no condition was trained on these texts)."""
    records = articles.load_docstrings(min_words=60)
    assert len(records) >= 100
    assert len({r["article"] for r in records}) == len(records) == len({r["id"] for r in records})
    assert all(len(r["article"].split()) >= 60 for r in records)
    assert all(r["summary"].endswith(".") and "\n" not in r["summary"] for r in records)
    assert not set(articles.DOCSTRING_MODULES) & set(PYDOC_MODULES)
    named = {r["id"].removeprefix("docstring-") for r in records}
    assert not any(n == m or n.startswith(f"{m}.") for n in named for m in PYDOC_MODULES)


def test_articles_are_drawn_as_pandas_df_sample_draws_them() -> None:
    """The paper: `df.sample(n=100, random_state=42)`; the same rows in the same order."""
    records = [{"id": f"r{i}", "article": f"text {i}", "summary": f"s{i}"} for i in range(250)]
    frame = pd.DataFrame(records)
    expected = frame.sample(n=100, random_state=42)["id"].tolist()
    assert [r["id"] for r in articles.select_articles(records, 100, 42)] == expected
    assert articles.select_articles(records, None, 42) == records == articles.select_articles(records, 999, 1)


def test_a_local_article_file_is_checked_row_by_row(tmp_path: Path) -> None:
    good = tmp_path / "pairs.jsonl"
    write_jsonl(
        good, [{"article": "Body one.", "summary": "One."}, {"id": "x", "article": "B.", "summary": "S."}]
    )
    assert [r["id"] for r in articles.load_article_file(good)] == ["pairs-00000", "x"]
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"article": "Body one.", "summary": "One."}, {"article": "Body two.", "summary": ""}])
    with pytest.raises(DataError, match=r"bad.jsonl: line 2: 'summary' is empty"):
        articles.load_article_file(bad)
    csv = tmp_path / "pairs.csv"
    csv.write_text("id,article,highlights\n1,Body.,Summary.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.csv: row 1: 'summary' is empty or not text \(None\)"):
        articles.load_article_file(csv)
    with pytest.raises(DataError, match="missing.jsonl: dataset file not found"):
        articles.load_articles(Summaries(dataset=str(tmp_path / "missing.jsonl")))


@pytest.fixture
def project(
    tmp_path: Path, tiny_model: Path, tiny_params_dict: dict, monkeypatch: pytest.MonkeyPatch
) -> dict:
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models" / "base"
    models.mkdir(parents=True)
    for name in tiny_params_dict["models"]:
        (models / name).symlink_to(tiny_model, target_is_directory=True)
    params = json.loads(json.dumps(tiny_params_dict))
    params["summaries"] = {"n_articles": 3, "min_words": 60, "max_article_chars": 300}
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return params


def test_articles_stage_then_each_source_summarises_every_article(project: dict) -> None:
    articles_stage.main()
    drawn = read_jsonl(paths.articles() / "articles.jsonl")
    assert len(drawn) == 3 and all(len(r["article"]) <= 300 for r in drawn)
    manifest = read_json(paths.articles() / "manifest.json")
    assert manifest["available"] >= 100 and manifest["articles"] == 3
    assert manifest["source"]["dataset"] == "pydoc-docstrings"

    for source in ("alpha", "beta"):
        summarize.main(source=source)
        records = read_jsonl(paths.summaries(source) / "responses.jsonl")
        assert [r["article_id"] for r in records] == [r["id"] for r in drawn]
        assert all(r["source"] == source and r["sampling"]["temperature"] == 0.7 for r in records)
    manifest = read_json(paths.summaries("alpha") / "manifest.json")
    assert manifest["stage"] == "summarize@alpha" and manifest["counts"]["records"] == 3


def test_summary_prompts_are_the_papers(project: dict) -> None:
    params = parse_params(project)
    system = params.summaries.system_prompt
    assert system == "You are a helpful assistant. Your task is to summarize the provided text."
    chat = summary_request("a1", "The article.", params.sources["alpha"], system)
    assert chat["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "The article."},
    ]
    fewshot = summary_request("a1", "The article.", params.sources["beta"], system)
    assert fewshot["text"].endswith(f"Instruction: {SUMMARY_INSTRUCTION}\n\nThe article.\nResponse:")


def test_instruction_candidates_need_no_articles(project: dict) -> None:
    """preference.task instructions: articles writes no pairs and summarize@ loads no model."""
    project["preference"] = {"task": "instructions"}
    Path("params.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    (Path("models/base") / "tiny-b").unlink()  # loading beta's model would fail
    articles_stage.main()
    assert read_jsonl(paths.articles() / "articles.jsonl") == []
    summarize.main(source="beta")
    assert read_jsonl(paths.summaries("beta") / "responses.jsonl") == []


def test_bad_summaries_sections_name_the_key(project: dict) -> None:
    project["summaries"] = {"n_article": 3}
    with pytest.raises(ParamsError, match="did you mean 'n_articles'"):
        parse_params(project)
    project["summaries"] = {"n_articles": 0}
    with pytest.raises(ParamsError, match="summaries.n_articles"):
        parse_params(project)
