"""candidates, preference@<condition>-<seed> and preference_metrics@<condition>-<seed> on the tiny model in a
temporary project (per-run folders <folder>/<condition>/<seed>, as dvc.yaml's matrix lays them out)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import yaml

from synthmix import paths as layout_paths
from synthmix import preference as library
from synthmix.backends.transformers_backend import TransformersBackend
from synthmix.config import ParamsError, parse_params
from synthmix.io import DataError, read_json, read_jsonl, write_json, write_jsonl
from synthmix.metrics import preference_summary as summary
from synthmix.provenance import last_runs
from synthmix.stages import candidates, preference_metrics
from synthmix.stages import preference as stage

SEED = 42  # the run seed (tiny_params' `seeds: [42]`)
SOURCES = ["alpha", "beta", "human"]  # tiny_params' two sources plus the human reference
TEST_ITEMS = {
    "t1": ("What does len() return?", "The number of items in a container."),
    "t2": ("What is a tuple?", "An immutable sequence of values."),
    "t3": ("What does print() do?", "It writes text to standard output."),
    "t4": ("What is a dict?", "A mapping from keys to values."),
}


def make_layout(root: Path, tiny_model: Path, params: dict) -> dict[str, Path]:
    """Inputs as the earlier stages leave them: prepared test split, two sources' responses, models."""
    prepared, generated = root / "data" / "prepared", root / "data" / "generated"
    write_jsonl(
        prepared / "test.jsonl",
        ({"id": i, "prompt": p, "response": r, "category": "doc"} for i, (p, r) in TEST_ITEMS.items()),
    )
    for source, answer in (("alpha", "I think it is {}."), ("beta", "Response: {}, probably")):
        records = [
            {"id": f"{i}-x", "prompt_id": i, "split": "test", "source": source, "response": answer.format(p)}
            for i, (p, _) in TEST_ITEMS.items()
        ]
        train = {
            "id": "tr-x",
            "prompt_id": "tr",
            "split": "train",
            "source": source,
            "response": "train text",
        }
        write_jsonl(generated / source / "responses.jsonl", [train, *records])
    models = root / "models" / "base"
    models.mkdir(parents=True)
    (models / "tiny-a").symlink_to(tiny_model)
    write_json(root / "models" / "adapters" / "vanilla" / str(SEED) / "manifest.json", {"tuned": False})
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    return {"prepared": prepared, "generated": generated, "models": models, "params": params_file}


def run_stage(root: Path, paths: dict[str, Path], condition: str = "vanilla") -> Path:
    """candidates (once), then preference@<condition>-42, at the project's default paths."""
    if not (root / "data" / "candidates" / "candidates.jsonl").exists():
        candidates.main(params_file=str(paths["params"]))
    stage.main(condition=condition, seed=SEED, params_file=str(paths["params"]))
    return root / "data" / "preference" / condition / str(SEED)


@pytest.fixture
def layout(
    tmp_path: Path, tiny_model: Path, tiny_params_dict: dict, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, Path]]:
    tiny_params_dict["preference"] = {"task": "instructions", "n_items": 3, "seed": 7, "text_label": "Text"}
    # a random tiny judge puts almost no probability on "A"/"B", so the paper's reading (after top-p) leaves
    # most verdicts undefined; synthmix's raw reading is defined for all (the paper's is tested in
    # test_fidelity.py against generate()'s own scores)
    tiny_params_dict["metric_definitions"] = "synthmix"
    monkeypatch.chdir(tmp_path)  # the project: default paths and its .synthmix work folder
    return tmp_path, make_layout(tmp_path, tiny_model, tiny_params_dict)


def test_stage_judges_every_pair_in_both_orders_and_writes_the_metrics(layout) -> None:
    root, paths = layout
    out = run_stage(root, paths)
    manifest = read_json(out / "manifest.json")
    assert manifest["stage"] == f"preference@vanilla-{SEED}" and manifest["seed"] == SEED
    items = manifest["items"]
    assert manifest["sources"] == SOURCES
    assert len(items) == 3 and set(items) <= set(TEST_ITEMS)
    assert items == [i for i in TEST_ITEMS if i in items]  # sampled, kept in file order

    records = read_jsonl(out / "judgements.jsonl")
    judgements = summary.read_pairwise(records, "synthmix")
    seen = [(j["item"], j["first"], j["second"]) for j in judgements]
    expected = {(i, a, b) for i in items for a, b in itertools.permutations(SOURCES, 2)}
    assert len(seen) == len(set(seen)) == len(expected) == 18
    assert set(seen) == expected
    for record, j in zip(records, judgements, strict=True):
        # P(A) and P(B) sum the bare and space-prefixed letter tokens the judge was asked for
        prob_a = sum(
            math.exp(lp) for k, lp in record["logprobs"].items() if k.strip() == "A" and lp is not None
        )
        assert j["prob_a"] == pytest.approx(prob_a)
        assert j["p_first"] == pytest.approx(j["prob_a"] / (j["prob_a"] + j["prob_b"]))
        assert len(record["top"]) == stage.TOP_N
    absolute = summary.read_absolute(read_jsonl(out / "absolute.jsonl"), "synthmix")
    assert {(r["item"], r["source"]) for r in absolute} == {(i, s) for i in items for s in SOURCES}
    assert all(1.0 <= r["score"] <= 5.0 for r in absolute)

    metrics_dir = root / "metrics" / "preference" / "vanilla" / str(SEED)
    preference_metrics.main(condition="vanilla", seed=SEED, params_file=str(paths["params"]))
    metrics = json.loads((metrics_dir / "metrics.json").read_text())
    assert set(metrics["preference"]) == set(SOURCES) == set(metrics["absolute_score"])
    for key in ("self_preference", "self_preference_vs_human", "position_consistency", "choice_mass"):
        assert isinstance(metrics[key], float), key
    for key in ("self_preference_shown_first", "self_preference_shown_second"):
        assert isinstance(metrics[key], float), key
    assert "equal_opportunity_bias" not in metrics  # no gold labels given
    with pytest.raises(ParamsError, match=r"seeds: seed 43 is not listed \(seeds: \[42\]\)"):
        preference_metrics.main(
            condition="vanilla", seed=43, judgements=str(out), params_file=str(paths["params"])
        )

    # Self-preference worked out independently from the judgement file: alpha is target.own_source.
    as_first = [j["p_first"] for j in judgements if j["first"] == "alpha"]
    as_second = [1 - j["p_first"] for j in judgements if j["second"] == "alpha"]
    by_hand = (sum(as_first) / len(as_first) + sum(as_second) / len(as_second)) / 2
    # metrics files hold 4 significant digits
    assert metrics["self_preference_shown_first"] == pytest.approx(sum(as_first) / len(as_first), rel=1e-3)
    assert metrics["self_preference_shown_second"] == pytest.approx(sum(as_second) / len(as_second), rel=1e-3)
    assert metrics["self_preference"] == pytest.approx(by_hand, rel=1e-3) == metrics["preference"]["alpha"]
    versus_human = [j for j in judgements if {j["first"], j["second"]} == {"alpha", "human"}]
    first = [j["p_first"] for j in versus_human if j["first"] == "alpha"]
    second = [1 - j["p_first"] for j in versus_human if j["second"] == "alpha"]
    assert metrics["self_preference_vs_human"] == pytest.approx(
        (sum(first) / 3 + sum(second) / 3) / 2, rel=1e-3
    )
    absolute_alpha = [r["score"] for r in absolute if r["source"] == "alpha"]
    assert metrics["absolute_score"]["alpha"] == pytest.approx(sum(absolute_alpha) / 3, rel=1e-3)

    matrix = json.loads((metrics_dir / "matrix.json").read_text())
    for row, col in itertools.permutations(SOURCES, 2):
        assert matrix[row][col] + matrix[col][row] == pytest.approx(1.0, abs=1e-3)
    table = (metrics_dir / "sources.csv").read_text().splitlines()
    assert table[0] == "source,preference,absolute_score,is_self"
    assert [line.split(",")[0] for line in table[1:]] == SOURCES
    assert table[1].endswith(",True") and table[2].endswith(",False")


def test_a_killed_stage_resumes_and_judges_each_pair_exactly_once(layout, monkeypatch) -> None:
    root, paths = layout
    reference = read_jsonl(run_stage(root, paths, "vanilla") / "judgements.jsonl")
    done_before_kill = 7
    real = TransformersBackend.next_token_logprobs

    def crashing(self, requests, skip=frozenset(), settings=None):
        for count, result in enumerate(real(self, requests, skip, settings)):
            if count == done_before_kill:
                raise KeyboardInterrupt("killed")
            yield result

    (root / "models" / "adapters" / "again" / str(SEED)).mkdir(parents=True)
    write_json(root / "models" / "adapters" / "again" / str(SEED) / "manifest.json", {"tuned": False})
    params = yaml.safe_load(paths["params"].read_text())
    params["conditions"]["again"] = {"mix": {}}
    paths["params"].write_text(yaml.safe_dump(params))
    monkeypatch.setattr(TransformersBackend, "next_token_logprobs", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_stage(root, paths, "again")
    partial = layout_paths.checkpoint(Path(f"data/preference/again/{SEED}/judgements.jsonl"))
    assert len(partial.read_text().splitlines()) == 1 + done_before_kill  # header + finished judgements
    assert not (root / "data" / "preference" / "again" / str(SEED) / "judgements.jsonl").exists()

    # A torn last line (killed mid-write) is dropped, not fatal.
    with partial.open("a") as handle:
        handle.write('{"id": "t1|alpha|be')
    rerun_calls = {"n": 0}

    def counting(self, requests, skip=frozenset(), settings=None):
        for result in real(self, requests, skip, settings):
            rerun_calls["n"] += 1
            yield result

    monkeypatch.setattr(TransformersBackend, "next_token_logprobs", counting)
    out = run_stage(root, paths, "again")
    judgements = read_jsonl(out / "judgements.jsonl")
    ids = [j["id"] for j in judgements]
    assert len(ids) == len(set(ids)) == len(reference)
    absolute = len(read_jsonl(out / "absolute.jsonl"))
    assert rerun_calls["n"] == len(reference) - done_before_kill + absolute
    assert last_runs(f"preference@again-{SEED}")[-1]["resumed"] == done_before_kill
    assert not partial.exists()
    # Resumed and fresh judgements equal an uninterrupted run's (a forward pass is deterministic).
    verdicts = [j["p_first"] for j in summary.read_pairwise(judgements, "synthmix")]
    assert verdicts == pytest.approx([j["p_first"] for j in summary.read_pairwise(reference, "synthmix")])


def test_a_tuned_condition_judges_with_its_adapter(layout, tiny_model: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root, paths = layout
    adapter = root / "models" / "adapters" / "single" / str(SEED)
    # A random non-zero LoRA (init_lora_weights=False), so the judge's probabilities must change.
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(adapter)
    write_json(adapter / "manifest.json", {"tuned": True})
    vanilla = summary.read_pairwise(
        read_jsonl(run_stage(root, paths, "vanilla") / "judgements.jsonl"), "synthmix"
    )
    out = run_stage(root, paths, "single")
    tuned = summary.read_pairwise(read_jsonl(out / "judgements.jsonl"), "synthmix")
    from synthmix.modelstore import adapter_fingerprint

    assert read_json(out / "manifest.json")["adapter"] == adapter_fingerprint(adapter)
    assert [(j["item"], j["first"]) for j in tuned] == [(j["item"], j["first"]) for j in vanilla]
    assert max(abs(a["p_first"] - b["p_first"]) for a, b in zip(tuned, vanilla, strict=True)) > 1e-4


def test_candidate_set_and_self_source_are_checked(tiny_params_dict: dict) -> None:
    """Checked when params are validated (check-params), before any stage loads a model."""
    tiny_params_dict["preference"] = {"sources": ["alpha", "humann"]}
    with pytest.raises(
        ParamsError, match=r"preference.sources: unknown source .*'humann'.*did you mean 'human'"
    ):
        parse_params(tiny_params_dict)
    tiny_params_dict["preference"] = {"sources": ["beta", "human"]}
    with pytest.raises(ParamsError, match="the judge's own source 'alpha' must be one of the candidates"):
        parse_params(tiny_params_dict)
    tiny_params_dict["preference"] = {"self_source": "beta"}
    params = parse_params(tiny_params_dict)
    assert library.candidate_sources(params) == SOURCES
    assert summary.resolve_self_source(params, SOURCES) == "beta"
    tiny_params_dict["preference"] = {"self_source": "human"}
    with pytest.raises(ParamsError, match="preference.self_source: unknown source 'human'"):
        parse_params(tiny_params_dict)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"task": "summaries"}, "preference.task: Input should be 'instructions' or 'summarisation'"),
        ({"sources": ["alpha"]}, "at least 2 candidate sources"),
        ({"sources": ["alpha", "beta", "alpha"]}, r"lists \['alpha'\] more than once"),
        ({"n_items": 0}, "preference.n_items"),
        ({"n_item": 5}, "did you mean 'n_items'"),
    ],
)
def test_invalid_preference_sections_are_refused(tiny_params_dict: dict, section: dict, message: str) -> None:
    tiny_params_dict["preference"] = section
    with pytest.raises(ParamsError, match=message):
        parse_params(tiny_params_dict)


def test_select_items_is_a_seeded_sample_in_file_order() -> None:
    ids = [f"i{n}" for n in range(20)]
    chosen = library.select_items(ids, 5, seed=3)
    assert chosen == library.select_items(ids, 5, seed=3)
    assert len(chosen) == 5 and chosen == sorted(chosen, key=ids.index)
    assert library.select_items(ids, 5, seed=4) != chosen
    assert library.select_items(ids, None, seed=3) == ids == library.select_items(ids, 50, seed=3)


def test_pairwise_prompt_is_the_papers_without_the_instruction(tiny_params_dict: dict) -> None:
    settings = parse_params(tiny_params_dict).preference
    messages = library.pairwise_messages("first text", "second text", settings)
    assert messages[0]["content"].startswith("You are a helpful assistant. Your task is to rank the two")
    assert messages[1] == {"role": "user", "content": "Summary A: first text\nSummary B: second text"}


ARTICLES = {
    "a1": ("The body of the first article, long enough to summarise.", "First human summary."),
    "a2": ("The body of the second article, also long enough.", "Second human summary."),
    "a3": ("The body of the third article.", "Third human summary."),
}


def test_summary_candidates_are_the_sources_summaries_and_the_human_one(
    tmp_path: Path, tiny_params_dict: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task summarisation (the paper's): candidates are summarize@<source>'s summaries and the article's own
    summary; the judge sees 'Summary A: ...\nSummary B: ...' and never the article."""
    monkeypatch.chdir(tmp_path)
    tiny_params_dict["preference"] = {"n_items": 2, "seed": 1}
    Path("params.yaml").write_text(yaml.safe_dump(tiny_params_dict), encoding="utf-8")
    write_jsonl(
        layout_paths.articles() / "articles.jsonl",
        [{"id": i, "article": a, "summary": s} for i, (a, s) in ARTICLES.items()],
    )
    for source in ("alpha", "beta"):
        write_jsonl(
            layout_paths.summaries(source) / "responses.jsonl",
            [{"id": f"{i}-s", "article_id": i, "response": f"{source} on {i}"} for i in ARTICLES],
        )
    candidates.main()
    chosen = read_jsonl(Path("data/candidates/candidates.jsonl"))
    assert len(chosen) == 2
    for record in chosen:
        item = record["item"]
        assert record["texts"] == {
            "alpha": f"alpha on {item}",
            "beta": f"beta on {item}",
            "human": ARTICLES[item][1],
        }
    params = parse_params(tiny_params_dict)
    requests = library.pairwise_requests(chosen, SOURCES, params.preference)
    assert len(requests) == 2 * 3 * 2  # items x source pairs x both orders
    article_bodies = [a for a, _ in ARTICLES.values()]
    for request in requests:
        user = request["messages"][1]["content"]
        assert user.startswith("Summary A: ") and "\nSummary B: " in user
        assert not any(body in user for body in article_bodies)

    # a source that has not summarised every article is named, with the stage to rerun
    write_jsonl(
        layout_paths.summaries("beta") / "responses.jsonl",
        [{"id": "a1-s", "article_id": "a1", "response": "only one"}],
    )
    with pytest.raises(
        DataError, match=r"summaries/beta/responses.jsonl: no response for 2 of the 3 .*summarize@beta"
    ):
        candidates.main()


def judgement(item: str, first: str, second: str, p_first: float) -> dict:
    prob_a = 0.0 if math.isnan(p_first) else p_first  # NaN: the judge put no mass on either letter
    return {
        "item": item,
        "first": first,
        "second": second,
        "p_first": p_first,
        "prob_a": prob_a,
        "prob_b": 0.0,
    }


def test_gold_labels_give_the_equal_opportunity_bias_by_hand() -> None:
    # Judge's position-balanced preference for "own" per item: i1 0.8, i2 0.7, i3 0.3, i4 0.5 (a tie: left out).
    judgements = []
    for item, (as_first, as_second) in {
        "i1": (0.9, 0.3),
        "i2": (0.8, 0.4),
        "i3": (0.4, 0.8),
        "i4": (0.5, 0.5),
    }.items():
        judgements += [judgement(item, "own", "human", as_first), judgement(item, "human", "own", as_second)]
    gold = [
        {"item": "i1", "sources": ["own", "human"], "winner": "own"},  # Y=1, judge prefers own: Y'=1
        {"item": "i2", "sources": ["human", "own"], "winner": "human"},  # Y=0, Y'=1
        {"item": "i3", "sources": ["own", "human"], "winner": "human"},  # Y=0, Y'=0
        {"item": "i4", "sources": ["own", "human"], "winner": "own"},  # tie: not counted
        {"item": "i1", "sources": ["other", "human"], "winner": "other"},  # no own text: not counted
    ]
    result = summary.gold_metrics(judgements, gold, "own")
    # P(Y'=1 | Y=1) = 1/1; P(Y'=0 | Y=0) = 1/2 -> 0.5.  Judge self win rate 2/3, human 1/3 -> excess 1/3.
    assert result == {
        "gold_pairs": 3,
        "equal_opportunity_bias": 0.5,
        "excess_over_gold": pytest.approx(1 / 3),
    }
    metrics = summary.summarise(judgements, [], ["own", "human"], "own", gold)
    assert metrics["equal_opportunity_bias"] == 0.5 and "absolute_score" not in metrics
    assert summary.gold_metrics(judgements, gold[4:], "own")["equal_opportunity_bias"] is None


def test_gold_label_file_errors_name_the_record(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    write_jsonl(path, [{"item": "i1", "sources": ["a", "b"], "winner": "c"}])
    with pytest.raises(ValueError, match=r"gold.jsonl: record 1: winner 'c' is not one of \['a', 'b'\]"):
        summary.read_gold_labels(path)


def test_a_judge_without_letter_mass_gives_null_not_nan() -> None:
    nan = math.nan
    judgements = [judgement("i1", "own", "human", nan), judgement("i1", "human", "own", nan)]
    metrics = summary.summarise(judgements, [], ["own", "human"], "own")
    assert metrics["preference"] == {"own": None, "human": None}
    assert metrics["self_preference"] is None and metrics["self_preference_vs_human"] is None
    assert metrics["position_consistency"] is None and metrics["undefined_judgements"] == 2
    assert summary.matrix_without_nan(judgements, ["own", "human"]) == {
        "own": {"human": None},
        "human": {"own": None},
    }
