"""The report: per-item tests with known outcomes, the paper's drop rule for unparsed judge items, confidence
intervals across seeds and over items, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from synthmix import report, report_markdown
from synthmix.io import write_json, write_jsonl

CONDITIONS = ["vanilla", "human", "single", "multi"]


def fake_project(
    root: Path, shift: dict[str, float], judge: dict[str, list], seed: int = 42, diversity: float = 70.0
) -> None:
    """The files the evaluation stages write for run <condition>/<seed>, with per-item perplexities
    2 + shift + i/100."""
    for c in CONDITIONS:
        run = Path(c) / str(seed)
        # one scored token and no end of turn: the perplexity is exp(nll) under either definition
        values = [
            {
                "id": f"t{i}",
                "nll": math.log(2.0 + shift[c] + i / 100),
                "n_tokens": 1,
                "nll_end": 0.0,
                "n_end": 0,
            }
            for i in range(30)
        ]
        write_jsonl(root / "data" / "perplexity" / run / "own_output_perplexity.jsonl", values)
        write_json(
            root / "metrics" / "collapse" / run / "metrics.json", {"lexical_diversity_individual": diversity}
        )
        write_json(
            root / "metrics" / "finetune" / run / "metrics.json", {"tuned": c != "vanilla", "steps": 3}
        )
        write_jsonl(root / "data" / "robustness" / run / "scores.jsonl", judge[c])


def scores(values: list[int | None]) -> list[dict]:
    return [
        {"id": f"harmful/h{i}", "prompt_set": "harmful", "harmfulness": v, "quality": 3}
        for i, v in enumerate(values)
    ]


def test_identical_groups_are_not_significant_and_shifted_ones_are(tmp_path: Path) -> None:
    judge = {c: scores([1, 2, 3]) for c in CONDITIONS}
    fake_project(tmp_path / "same", dict.fromkeys(CONDITIONS, 0.0), judge)
    same = report.build_summary(report.collect(CONDITIONS, [42], tmp_path / "same"), 0.05, 0, 200)
    test = same["tests"]["own_output_perplexity"]
    assert test["kruskal_wallis"]["p"] == pytest.approx(1.0)
    assert not any(pair["significant"] for pair in test["pairwise"])

    fake_project(tmp_path / "shifted", {"vanilla": 0.0, "human": 5.0, "single": 0.0, "multi": 0.0}, judge)
    shifted = report.build_summary(report.collect(CONDITIONS, [42], tmp_path / "shifted"), 0.05, 0, 200)
    test = shifted["tests"]["own_output_perplexity"]
    assert test["kruskal_wallis"]["p"] < 1e-6
    significant = {(p["a"], p["b"]) for p in test["pairwise"] if p["significant"]}
    assert significant == {("vanilla", "human"), ("human", "single"), ("human", "multi")}
    # 6 pairs, Bonferroni: every corrected p is 6 x the raw one (capped at 1)
    for pair in test["pairwise"]:
        assert pair["p_bonferroni"] == pytest.approx(min(1.0, 6 * pair["p"]))
    row = shifted["conditions"]["human"]
    assert row["own_output_perplexity"]["mean"] == pytest.approx(7.0 + 0.145)
    # one seed: a bootstrap CI over the 30 items, inside the items' range and around the mean
    low, high = row["ci95"]["own_output_perplexity"]
    assert 7.0 < low < 7.145 < high < 7.29


def test_several_seeds_give_means_and_student_t_intervals_across_seeds(tmp_path: Path) -> None:
    """Two seeds whose corpus-level metric is 70 and 74: mean 72, s = 2 sqrt(2), so the 95% interval is
    72 -/+ t(0.975, 1) * s / sqrt(2) = 72 -/+ 12.7062 * 2 (t from a printed table, not from scipy)."""
    judge = {c: scores([1, 2, 3]) for c in CONDITIONS}
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge, seed=42, diversity=70.0)
    fake_project(tmp_path, {"vanilla": 0.0, "human": 2.0, "single": 0.0, "multi": 0.0}, judge, 7, 74.0)
    summary = report.build_summary(report.collect(CONDITIONS, [42, 7], tmp_path), 0.05, 0, 200)
    row = summary["conditions"]["human"]
    assert summary["seeds"] == [42, 7] and summary["incomplete_runs"] == {}
    assert row["lexical_diversity_individual"] == pytest.approx(72.0)
    assert row["ci95"]["lexical_diversity_individual"] == pytest.approx(
        [72 - 2 * 12.7062, 72 + 2 * 12.7062], abs=1e-3
    )
    # per-seed perplexity means 2.145 and 4.145: the interval is across those two, not over the 60 items
    assert row["own_output_perplexity"]["mean"] == pytest.approx(3.145)
    assert row["ci95"]["own_output_perplexity"] == pytest.approx([3.145 - 12.7062, 3.145 + 12.7062], abs=1e-3)
    assert row["steps"] == 3 and "steps" not in row["ci95"]  # a count stays a whole number, with no interval
    # the per-item tests see each item once, at its mean over the seeds: human's items sit 1 higher
    assert sorted(
        report.collect(CONDITIONS, [42, 7], tmp_path)["items"]["human"]["own_output_perplexity"]
    ) == (pytest.approx([3.0 + i / 100 for i in range(30)]))
    assert summary["tests"]["own_output_perplexity"]["kruskal_wallis"]["n_groups"] == 4
    markdown = report_markdown.render_markdown(summary, 0.05, [])
    assert "mean over 2 runs (seeds 42, 7)" in markdown
    assert "| human | 72.000 [46.588, 97.412] |" in markdown


def test_a_run_without_outputs_is_named_and_left_out(tmp_path: Path) -> None:
    judge = {c: scores([1, 2, 3]) for c in CONDITIONS}
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge, seed=42)
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge, seed=43, diversity=80.0)
    (tmp_path / "metrics" / "collapse" / "multi" / "43" / "metrics.json").unlink()
    summary = report.build_summary(report.collect(CONDITIONS, [42, 43, 44], tmp_path), 0.05, 0, 200)
    assert summary["incomplete_runs"] == {f"{c}/44": ["finetune", "collapse"] for c in CONDITIONS} | {
        "multi/43": ["collapse"]
    }
    assert summary["conditions"]["multi"]["lexical_diversity_individual"] == 70.0  # seed 42's alone
    assert "lexical_diversity_individual" not in summary["conditions"]["multi"]["ci95"]
    assert summary["conditions"]["human"]["lexical_diversity_individual"] == 75.0
    markdown = report_markdown.render_markdown(summary, 0.05, [])
    assert (
        "**Incomplete runs** (stages not reproduced yet; left out of those means): vanilla/44 (no finetune, "
        in (markdown)
    )
    assert "multi/43 (no collapse metrics); multi/44 (no finetune, collapse metrics)." in markdown


def test_an_item_unparsed_in_one_seed_is_dropped_for_every_condition(tmp_path: Path) -> None:
    judge = {c: scores([1, 2, 3]) for c in CONDITIONS}
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge, seed=42)
    judge["multi"] = scores([3, None, 5])
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge, seed=43)
    groups, dropped = report.judged(report.collect(CONDITIONS, [42, 43], tmp_path), "harmful", "harmfulness")
    assert dropped == 1
    assert groups["multi"] == [2.0, 4.0] and groups["human"] == [1.0, 3.0]


def test_an_item_unparsed_for_any_condition_is_dropped_for_all(tmp_path: Path) -> None:
    judge = {c: scores([1, 2, 3, 4]) for c in CONDITIONS}
    judge["single"] = scores([1, None, 3, 4])  # item h1 failed to parse for one condition only
    fake_project(tmp_path, dict.fromkeys(CONDITIONS, 0.0), judge)
    data = report.collect(CONDITIONS, [42], tmp_path)
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

    judged = {
        c: [{**s, "strongreject": 0.25 * i} for i, s in enumerate(scores([1, 2, 3]))] for c in CONDITIONS
    }
    fake_project(tmp_path, {"vanilla": 0.0, "human": 1.0, "single": 0.0, "multi": 0.5}, judged)
    for c in CONDITIONS:  # the per-run robustness metrics robustness@ writes
        metrics = {
            "harmful": {"n": 3, "refusal_rate": 0.0, "strongreject_mean": 0.25, "danger_zone_share": 0.0}
        }
        write_json(tmp_path / "metrics" / "robustness" / c / "42" / "metrics.json", metrics)
    # thresholds and rubrics come from params, and the report says so
    tiny_params_dict["robustness"] = {
        "judge": {"rubrics": ["harmfulness", "quality", "strongreject"]},
        "scoring": {"danger_quality_min": 3, "danger_harm_min": 2},
    }
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params_dict, sort_keys=False), encoding="utf-8")
    stage.main(out=str(tmp_path / "reports"), root=str(tmp_path), params_file=str(params))
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert list(summary["conditions"]) == CONDITIONS
    markdown = (tmp_path / "reports" / "summary.md").read_text()
    for c in CONDITIONS:
        assert f"| {c} |" in markdown
    assert "Kruskal-Wallis" in markdown
    assert "danger zone (quality >= 3 and harmfulness >= 2)" in markdown and ">= 4" not in markdown
    assert "| strongreject_mean |" in markdown and "StrongREJECT score (0-1)" in markdown
    assert summary["conditions"]["single"]["harmful"]["strongreject_mean"] == 0.25
    # one seed: the StrongREJECT mean's CI is a bootstrap over the items' scores 0, 0.25, 0.5
    low, high = summary["conditions"]["single"]["ci95"]["harmful.strongreject_mean"]
    assert 0.0 <= low <= high <= 0.5
    assert "harmful_strongreject" in summary["tests"]
    for name in (
        "perplexity_distributions",
        "diversity",
        "vocabulary_growth",
        "danger_zone",
        "self_preference_heatmap",
    ):
        png = tmp_path / "reports" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_tier_comparisons_test_each_group_among_itself(tmp_path: Path) -> None:
    """report.tier_comparisons: Kruskal-Wallis across the named conditions only (scipy's, on the same items),
    then pairwise tests corrected for that group's pairs."""
    from scipy.stats import kruskal

    judge = {c: scores([1, 2, 3]) for c in CONDITIONS}
    shift = {"vanilla": 0.0, "human": 5.0, "single": 0.5, "multi": 0.0}
    fake_project(tmp_path, shift, judge)
    groups = {"tuned": ["single", "multi"], "untuned-vs-human": ["vanilla", "human", "multi"]}
    summary = report.build_summary(
        report.collect(CONDITIONS, [42], tmp_path), 0.05, 0, 200, tier_comparisons=groups
    )
    values = {c: [2.0 + shift[c] + i / 100 for i in range(30)] for c in CONDITIONS}
    for name, compared in groups.items():
        test = summary["tier_tests"][name]["own_output_perplexity"]
        expected = kruskal(*(values[c] for c in compared))
        assert test["kruskal_wallis"]["H"] == pytest.approx(expected.statistic)
        assert test["kruskal_wallis"]["p"] == pytest.approx(expected.pvalue)
        pairs = {(p["a"], p["b"]) for p in test["pairwise"]}
        assert pairs == {(a, b) for i, a in enumerate(compared) for b in compared[i + 1 :]}
        for pair in test["pairwise"]:  # Bonferroni over this group's pairs only
            assert pair["p_bonferroni"] == pytest.approx(min(1.0, len(pairs) * pair["p"]))
    # the whole-study test is unchanged by the groups
    assert summary["tests"]["own_output_perplexity"]["kruskal_wallis"]["H"] == pytest.approx(
        kruskal(*values.values()).statistic
    )
    markdown = report_markdown.render_markdown(summary, 0.05, [])
    assert "## Across training-data tiers" in markdown and "### untuned-vs-human" in markdown


def test_tier_comparisons_name_known_conditions(tiny_params_dict: dict) -> None:
    from synthmix.config import ParamsError, parse_params

    tiny_params_dict["report"] = {"tier_comparisons": {"single": ["single", "singel"]}}
    with pytest.raises(ParamsError, match=r"report.tier_comparisons.single: unknown condition 'singel'"):
        parse_params(tiny_params_dict)
    tiny_params_dict["report"] = {"tier_comparisons": {"single": ["single"]}}
    with pytest.raises(ParamsError, match="list at least 2 distinct conditions"):
        parse_params(tiny_params_dict)
