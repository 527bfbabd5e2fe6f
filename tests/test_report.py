"""The report: per-item tests with known outcomes, the paper's drop rule for unparsed judge items, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmix import report
from synthmix.io import write_json, write_jsonl

CONDITIONS = ["vanilla", "human", "single", "multi"]


def fake_project(root: Path, shift: dict[str, float], judge: dict[str, list]) -> None:
    """The files the evaluation stages write, with per-item perplexities 2 + shift + i/100."""
    for c in CONDITIONS:
        values = [{"id": f"t{i}", "perplexity": 2.0 + shift[c] + i / 100} for i in range(30)]
        write_jsonl(root / "data" / "collapse" / c / "own_output_perplexity.jsonl", values)
        write_json(root / "metrics" / "collapse" / c / "metrics.json", {"lexical_diversity_individual": 70.0})
        write_json(root / "metrics" / "finetune" / c / "metrics.json", {"tuned": c != "vanilla", "steps": 3})
        write_jsonl(root / "data" / "judgements" / c / "scores.jsonl", judge[c])


def scores(values: list[int | None]) -> list[dict]:
    return [
        {"id": f"harmful/h{i}", "prompt_set": "harmful", "harmfulness": v, "quality": 3}
        for i, v in enumerate(values)
    ]


def test_identical_groups_are_not_significant_and_shifted_ones_are(tmp_path: Path) -> None:
    judge = {c: scores([1, 2, 3]) for c in CONDITIONS}
    fake_project(tmp_path / "same", dict.fromkeys(CONDITIONS, 0.0), judge)
    same = report.build_summary(report.collect(CONDITIONS, tmp_path / "same"), 0.05, 0, 200)
    test = same["tests"]["own_output_perplexity"]
    assert test["kruskal_wallis"]["p"] == pytest.approx(1.0)
    assert not any(pair["significant"] for pair in test["pairwise"])

    fake_project(tmp_path / "shifted", {"vanilla": 0.0, "human": 5.0, "single": 0.0, "multi": 0.0}, judge)
    shifted = report.build_summary(report.collect(CONDITIONS, tmp_path / "shifted"), 0.05, 0, 200)
    test = shifted["tests"]["own_output_perplexity"]
    assert test["kruskal_wallis"]["p"] < 1e-6
    significant = {(p["a"], p["b"]) for p in test["pairwise"] if p["significant"]}
    assert significant == {("vanilla", "human"), ("human", "single"), ("human", "multi")}
    # 6 pairs, Bonferroni: every corrected p is 6 x the raw one (capped at 1)
    for pair in test["pairwise"]:
        assert pair["p_bonferroni"] == pytest.approx(min(1.0, 6 * pair["p"]))
    row = shifted["conditions"]["human"]["own_output_perplexity"]
    assert row["mean"] == pytest.approx(7.0 + 0.145)
    assert row["ci95"][0] < row["mean"] < row["ci95"][1]


def test_an_item_unparsed_for_any_condition_is_dropped_for_all(tmp_path: Path) -> None:
    judge = {c: scores([1, 2, 3, 4]) for c in CONDITIONS}
    judge["single"] = scores([1, None, 3, 4])  # item h1 failed to parse for one condition only
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge)
    data = report.collect(CONDITIONS, tmp_path)
    groups, dropped = report.judged(data, "harmful", "harmfulness")
    assert dropped == 1
    assert groups == {c: [1.0, 3.0, 4.0] for c in CONDITIONS}
    # every item has a parsed quality score, so nothing is dropped there
    assert report.judged(data, "harmful", "quality")[1] == 0
    # a rubric absent from a prompt set is not tested at all
    assert report.judged(data, "benign", "harmfulness") == ({}, 0)


def test_report_stage_writes_markdown_json_and_figures(tmp_path: Path, tiny_params_dict: dict) -> None:
    import yaml

    from synthmix.stages import report as stage

    fake_project(
        tmp_path,
        {"vanilla": 0.0, "human": 1.0, "single": 0.0, "multi": 0.5},
        {c: scores([1, 2, 3]) for c in CONDITIONS},
    )
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params_dict, sort_keys=False), encoding="utf-8")
    stage.main(str(tmp_path / "reports"), str(tmp_path), str(params))
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert list(summary["conditions"]) == CONDITIONS
    markdown = (tmp_path / "reports" / "summary.md").read_text()
    for c in CONDITIONS:
        assert f"| {c} |" in markdown
    assert "Kruskal-Wallis" in markdown
    for name in (
        "perplexity_distributions",
        "diversity",
        "vocabulary_growth",
        "danger_zone",
        "self_preference_heatmap",
    ):
        png = tmp_path / "reports" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
