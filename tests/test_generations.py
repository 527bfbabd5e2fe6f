"""Recursive training over generations (the model-collapse loop): params, the generated dvc.yaml stages, the
remix stage's provenance, the report's curves and slopes, and the whole loop with real DVC on tiny models."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvcproject import REPO, clean_env, make_project, mix_study_params, ran_stages, run_dvc, written_out
from helpers import robustness_params
from scipy.stats import kruskal, linregress

from synthmix import paths, report_generations
from synthmix.config import ParamsError, parse_params
from synthmix.io import read_json, read_jsonl, write_json, write_jsonl
from synthmix.modelstore import adapter_fingerprint
from synthmix.stages import remix

LATER = re.compile(r"_g\d+@")


# ---- params ----


def with_recursion(params: dict, **recursion) -> dict:
    params = json.loads(json.dumps(params))
    params["conditions"]["single-beta"] = {"mix": {"beta": 1.0}}
    params["recursion"] = recursion
    return params


def test_later_generations_are_checked_against_the_conditions(tiny_params_dict: dict) -> None:
    ok = with_recursion(
        tiny_params_dict, generation_2=["single", "multi", "single-beta"], generation_3=["single"]
    )
    assert parse_params(ok).recursion.lineages() == {"single": 3, "multi": 2, "single-beta": 2}
    problems = {
        "unknown condition 'singel'": {"generation_2": ["singel"]},
        "'vanilla' is not fine-tuned": {"generation_2": ["vanilla"]},
        "'single' is not in recursion.generation_2": {"generation_3": ["single"]},
        # lineages: multi's beta share needs the single-source condition of beta in the same generation
        "mixes beta, so with recursion.multi_source 'lineages'": {"generation_2": ["single", "multi"]},
        "listed more than once": {"generation_2": ["single", "single"]},
        "did you mean 'generation_2'": {"generation2": ["single"]},
        # robustness and self-preference of a generation need that generation's models
        "recursion.evaluate_3: 'single' is not in recursion.generation_3": {
            "generation_2": ["single"],
            "evaluate_3": ["single"],
        },
        "recursion.evaluate_2: a condition is listed more than once": {
            "generation_2": ["single"],
            "evaluate_2": ["single", "single"],
        },
    }
    for message, recursion in problems.items():
        with pytest.raises(ParamsError, match=re.escape(message)):
            parse_params(with_recursion(tiny_params_dict, **recursion))
    fine = with_recursion(
        tiny_params_dict, generation_2=["single", "multi"], multi_source="self", evaluate_2=["multi"]
    )
    assert parse_params(fine).recursion.generations == 2
    assert parse_params(fine).recursion.evaluated_at(2) == ["multi"]
    override = with_recursion(tiny_params_dict, generation_2=["single"], regime="accumulate")
    override["conditions"]["single"]["recursion"] = {"regime": "replace", "human_fraction": 0.25}
    assert parse_params(override).recursion_for("single") == ("replace", 0.25)


def test_dvc_yaml_holds_exactly_the_generated_stages() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generation_stages.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_generation_is_the_papers_stage_list() -> None:
    """Every recursion list empty (the default): no stage of a later generation exists."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    assert "finetune@single-42" in names and not [n for n in names if LATER.search(n)]


# ---- remix: the shares of a multi-source condition come from its sources' own lines ----


def _run_files(root: Path, params: dict) -> None:
    """Generation 1's mixes and the generation-2 answers of the single-source runs, as the stages write them."""
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    prompts = [(f"p{i}", "cat-a" if i % 2 else "cat-b") for i in range(8)]
    write_jsonl(
        paths.prepared("train"),
        [{"id": p, "prompt": f"Q {p}?", "response": f"human {p}", "category": c} for p, c in prompts],
    )
    mixes = {"single": ["alpha"] * 4, "single-beta": ["beta"] * 4, "multi": ["alpha", "beta"] * 2}
    for condition, sources in mixes.items():
        write_jsonl(
            paths.mix(condition) / "train.jsonl",
            [
                {"id": p, "prompt": f"Q {p}?", "response": f"{s} {p}", "source": s, "category": c}
                for (p, c), s in zip(prompts[:4], sources, strict=True)
            ],
        )
    for condition in ("single", "single-beta"):
        folder = paths.regenerated(condition, 42, 2)
        write_jsonl(
            folder / "responses.jsonl",
            [{"id": p, "prompt_id": p, "response": f"{condition}@g1 says {p}"} for p, _ in prompts],
        )
        write_json(
            folder / "manifest.json", {"answered_by": f"{condition}@g1", "adapter": f"sha-{condition}"}
        )


def test_a_multi_source_generation_takes_each_share_from_that_sources_line(
    tmp_path: Path, tiny_params_dict: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = with_recursion(tiny_params_dict, generation_2=["single", "multi", "single-beta"])
    params["conditions"]["multi"]["recursion"] = {"regime": "accumulate"}
    _run_files(tmp_path, params)
    remix.main(condition="multi", seed=42, generation=2)
    out = paths.generation_mix("multi", 42, 2)
    chunk = read_jsonl(out / "chunk.jsonl")
    assert {r["prompt_id"]: r["producer"] for r in chunk} == {
        "p0": "single@g1", "p1": "single-beta@g1", "p2": "single@g1", "p3": "single-beta@g1",
    }  # fmt: skip
    assert all(r["response"] == f"{r['producer']} says {r['prompt_id']}" for r in chunk)
    training = read_jsonl(out / "train.jsonl")
    assert len(training) == 8  # accumulate: generation 1's 4 records and generation 2's 4
    assert sorted(r["generation"] for r in training) == [1] * 4 + [2] * 4
    manifest = read_json(out / "manifest.json")
    assert manifest["producers"] == {
        "single-beta@g1": {"condition": "single-beta", "generation": 1, "adapter": "sha-single-beta"},
        "single@g1": {"condition": "single", "generation": 1, "adapter": "sha-single"},
    }
    assert (manifest["records"], manifest["expected_records"], manifest["regime"]) == (8, 8, "accumulate")

    # answers that are not the previous generation's (another generation's run left in the folder) are refused
    write_json(paths.regenerated("single", 42, 2) / "manifest.json", {"answered_by": "single@g2"})
    with pytest.raises(Exception, match=r"not the answers of single@g1 .*rerun regenerate_g2@single-42"):
        remix.main(condition="multi", seed=42, generation=2)


# ---- the report's curves, slopes and slope tests ----


def _fake_generations(root: Path, trend: dict[str, float], seeds=(1, 2)) -> None:
    """collapse metrics and per-prompt perplexities for generations 1-3: value = 10 + trend * g (+ seed/10),
    prompt i's perplexity = 2 + i/10 + trend * g."""
    for condition, slope in trend.items():
        for generation in (1, 2, 3):
            for seed in seeds:
                metrics = {
                    "own_output_perplexity": {"mean_iqr_cleaned": 5 + slope * generation + seed / 10},
                    "lexical_diversity_aggregated": 10 + slope * generation + seed / 10,
                }
                folder = root / paths.in_generation(paths.metrics("collapse", condition, seed), generation)
                write_json(folder / "metrics.json", metrics)
                ppl = [
                    {
                        "id": f"t{i}",
                        "prompt_id": f"t{i}",
                        "nll": math.log(2 + i / 10 + (slope + i / 100) * generation),
                        "n_tokens": 1,
                        "nll_end": 0.0,
                        "n_end": 0,
                    }
                    for i in range(6)
                ]
                folder = root / paths.in_generation(paths.perplexity(condition, seed), generation)
                write_jsonl(folder / "own_output_perplexity.jsonl", ppl)


def test_report_curves_slopes_and_slope_tests_by_hand(tmp_path: Path) -> None:
    trend = {"single": 1.0, "multi": 0.25}
    _fake_generations(tmp_path, trend)
    data = report_generations.collect({"single": 3, "multi": 3}, [1, 2], tmp_path)
    summary = report_generations.summarise(data, 0.05)
    curve = summary["curves"]["lexical_diversity_aggregated"]["single"]
    # generation 2: seeds give 12.1 and 12.2 -> mean 12.15
    assert [p["generation"] for p in curve] == [1, 2, 3] and curve[1]["mean"] == pytest.approx(12.15)
    slope = summary["slopes"]["lexical_diversity_aggregated"]
    assert slope["single"]["mean"] == pytest.approx(1.0) and slope["multi"]["mean"] == pytest.approx(0.25)
    # per-item slopes of perplexity: prompt i rises by (trend + i/100) per generation
    test = summary["slope_tests"]["own_output_perplexity"]
    assert test["basis"] == "per-item slopes"
    groups = [[trend[c] + i / 100 for i in range(6)] for c in ("single", "multi")]
    assert test["kruskal_wallis"]["H"] == pytest.approx(kruskal(*groups).statistic)
    # set-level metric with two seeds: per-seed slopes (1.0, 1.0) vs (0.25, 0.25)
    per_seed = summary["slope_tests"]["lexical_diversity_aggregated"]
    assert per_seed["basis"] == "per-seed slopes"
    assert per_seed["kruskal_wallis"]["H"] == pytest.approx(kruskal([1.0, 1.0], [0.25, 0.25]).statistic)
    rows = report_generations.curve_rows(summary, "lexical_diversity_aggregated")
    assert rows[0][:2] == [1, "multi"] and len(rows) == 6
    expected = linregress([1, 2, 3], [10 + 0.25 * g + 0.1 for g in (1, 2, 3)]).slope
    assert summary["slopes"]["lexical_diversity_aggregated"]["multi"]["slopes"][1] == pytest.approx(expected)


def test_report_takes_robustness_and_preference_from_the_evaluated_generations(tmp_path: Path) -> None:
    """Generation 1 always evaluates; here generation 3 does too (recursion.evaluate_3) and generation 2 does
    not: the curves have points at 1 and 3, and the slope is the least-squares one over those two."""
    trend = {"single": 1.0, "multi": 0.25}
    _fake_generations(tmp_path, trend, seeds=(1,))
    harm = {("single", 1): 2.0, ("single", 3): 3.0, ("multi", 1): 2.0, ("multi", 3): 2.2}
    own = {("single", 1): 0.5, ("single", 3): 0.7, ("multi", 1): 0.5, ("multi", 3): 0.45}
    for (condition, generation), value in harm.items():
        folder = paths.in_generation(paths.metrics("robustness", condition, 1), generation)
        # a robustness run without the quality rubric: its metrics are left out, not zero
        write_json(
            tmp_path / folder / "metrics.json",
            {"jailbreak": {"harmfulness_mean": value, "refusal_rate": 0.0}, "harmful": {"refusal_rate": 0.5}},
        )
        folder = paths.in_generation(paths.metrics("preference", condition, 1), generation)
        write_json(tmp_path / folder / "metrics.json", {"self_preference": own[condition, generation]})
    summary = report_generations.summarise(
        report_generations.collect({"single": 3, "multi": 3}, [1], tmp_path), 0.05
    )
    curve = summary["curves"]["jailbreak_harmfulness"]["single"]
    assert [(p["generation"], p["mean"]) for p in curve] == [(1, 2.0), (3, 3.0)]
    assert summary["slopes"]["jailbreak_harmfulness"]["single"]["mean"] == pytest.approx(0.5)  # (3 - 2) / 2
    assert summary["slopes"]["self_preference"]["multi"]["mean"] == pytest.approx(-0.025)  # (0.45 - 0.5) / 2
    assert summary["curves"]["benign_quality"] == {"single": [], "multi": []}  # not judged: no points
    assert "benign_quality" not in summary["slopes"] or not summary["slopes"]["benign_quality"]
    table = "\n".join(report_generations.markdown(summary, 0.05, lambda v: f"{v:.3g}", str))
    assert "| jailbreak_harmfulness | 0.5 | 0.1 |" in table and "benign_quality" not in table
    assert report_generations.curve_rows(summary, "self_preference") == [
        [1, "multi", 0.5, "", ""],
        [3, "multi", 0.45, "", ""],
        [1, "single", 0.5, "", ""],
        [3, "single", 0.7, "", ""],
    ]


# ---- the loop with real DVC on tiny models ----

LOOP_STAGES = ["models", "prepare", "generate", "mix", "finetune", "sample", "perplexity", "collapse"]
LOOP_STAGES += [f"{family}_g{k}" for k in (2, 3) for family in ("regenerate", "remix", "finetune", "sample")]
# the optional evaluations of later generations (recursion.evaluate_<k>) and the stages they read from
EVALUATED = ["attack", "judge", "robustness", "preference", "preference_metrics"]
LOOP_STAGES += ["redteam", "articles", "summarize", "candidates"]
LOOP_STAGES += [f"{family}_g{k}" for k in (2, 3) for family in EVALUATED]


@pytest.mark.slow
@pytest.mark.dvc
def test_generations_with_real_dvc(tmp_path: Path, tiny_raw_model: Path, shared_dvc_cache: Path) -> None:
    """examples/generations.yaml's conditions and loop on tiny models: raising the number of generations runs
    only the new ones, each generation's training data is provably the previous generation's models' (a
    multi-source condition's shares its sources' lines'), and lowering reruns nothing."""
    example = yaml.safe_load((REPO / "examples" / "generations.yaml").read_text(encoding="utf-8"))
    params = mix_study_params(tiny_raw_model)  # the example's model and source names, on tiny models
    params["conditions"] = example["conditions"]  # single, single-gemma3 and multi (lineages)
    params["conditions"]["multi"]["recursion"] = {"regime": "accumulate"}
    params["conditions"]["single-gemma3"]["recursion"] = {"regime": "accumulate-subsample"}
    params["recursion"] = {
        **example["recursion"],
        "generation_3": [],
        "evaluate_3": [],
        "human_fraction": 0.25,
    }
    params["preference"] = {"n_items": 2, "task": "instructions"}
    params["robustness"] = robustness_params("smollm2-135m")
    params = written_out(params)
    env = clean_env(tmp_path / "home")
    root = make_project(tmp_path / "loop", params, env, LOOP_STAGES, cache=shared_dvc_cache)

    ran = ran_stages(run_dvc(root, env, "repro"))
    assert {s for s in ran if LATER.search(s)} == {
        f"{f}_g2@{c}-42"
        for f in ("regenerate", "remix", "finetune", "sample")
        for c in ("single", "single-gemma3", "multi")
    }
    size = params["mix"]["size"]
    single2 = read_json(root / "generations/2/data/mixes/single/42/manifest.json")
    # generation 2 of single was written by generation 1's adapter of single: the fingerprints agree
    regenerated = read_json(root / "generations/2/data/regenerated/single/42/manifest.json")
    assert regenerated["answered_by"] == "single@g1"
    assert regenerated["adapter"] == adapter_fingerprint(root / "models/adapters/single/42")
    assert single2["producers"]["single@g1"]["adapter"] == regenerated["adapter"]
    # replace keeps the size; a quarter (human_fraction) of the chunk keeps the human answers
    assert single2["records"] == size and single2["chunk"]["human"] == round(0.25 * size)
    finetuned = read_json(root / "generations/2/models/adapters/single/42/manifest.json")
    assert finetuned["training_data"] == {
        "generation 2: human": round(0.25 * size),
        "generation 2: single@g1": size - round(0.25 * size),
    }
    multi2 = read_json(root / "generations/2/data/mixes/multi/42/manifest.json")
    assert multi2["records"] == 2 * size  # accumulate: generations 1 and 2
    # lineages: multi's shares were written by the latest models of single and single-gemma3, not its own
    assert set(multi2["producers"]) == {"single@g1", "single-gemma3@g1"}
    assert multi2["producers"]["single-gemma3@g1"]["adapter"] == adapter_fingerprint(
        root / "models/adapters/single-gemma3/42"
    )
    assert read_jsonl(root / "generations/2/data/regenerated/multi/42/responses.jsonl") == []  # no model ran
    # accumulate-subsample: both generations' data, drawn down to the mix size
    gemma2 = read_json(root / "generations/2/data/mixes/single-gemma3/42/manifest.json")
    training = read_jsonl(root / "generations/2/data/mixes/single-gemma3/42/train.jsonl")
    assert gemma2["records"] == len(training) == size
    assert {r["generation"] for r in training} == {1, 2}
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "generation 2"], cwd=root, env=env, check=True)

    # raise single to three generations, and evaluate its third (robustness and self-preference): only its
    # generation-3 stages run
    params["recursion"]["generation_3"] = ["single"]
    params["recursion"]["evaluate_3"] = ["single"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    ran = ran_stages(run_dvc(root, env, "repro"))
    assert sorted(ran) == sorted(
        f"{f}_g3@single-42" for f in ("regenerate", "remix", "finetune", "sample", *EVALUATED)
    ), ran
    single3 = read_json(root / "generations/3/data/mixes/single/42/manifest.json")
    adapter2 = adapter_fingerprint(root / "generations/2/models/adapters/single/42")
    assert single3["producers"] == {
        "single@g2": {"condition": "single", "generation": 2, "adapter": adapter2}
    }
    # the evaluations of generation 3 ran on its own model and landed in its folder
    adapter3 = adapter_fingerprint(root / "generations/3/models/adapters/single/42")
    assert adapter3 not in (adapter2, adapter_fingerprint(root / "models/adapters/single/42"))
    for stage, folder in (("attack", "attacks"), ("preference", "preference")):
        manifest = read_json(root / f"generations/3/data/{folder}/single/42/manifest.json")
        assert (manifest["stage"], manifest["adapter"]) == (f"{stage}_g3@single-42", adapter3)
    robustness = read_json(root / "generations/3/metrics/robustness/single/42/metrics.json")
    assert robustness["harmful"]["n"] == 2 and robustness["benign"]["n"] == 2
    assert "self_preference" in read_json(root / "generations/3/metrics/preference/single/42/metrics.json")
    assert not (root / "generations/2/data/attacks").exists()  # evaluate_2 is empty: not evaluated

    # lower it again: the generation-3 stages are gone and nothing runs
    params["recursion"]["generation_3"] = []
    params["recursion"]["evaluate_3"] = []
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    assert ran_stages(run_dvc(root, env, "repro")) == []
