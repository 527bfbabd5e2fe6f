"""synthmix's `paper` metric definitions against the paper authors' own code (tests/authors_reference.py, a
line-for-line transcription of maxschaffelder/synthetic_data_diversity), on fixtures where every choice
matters: samples smaller than their population, abbreviations, markdown, end-of-turn tokens."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import authors_reference as authors
import numpy as np
import pytest
import yaml

from synthmix.config import Collapse
from synthmix.metrics.diversity import (
    TextSet,
    fit_heaps,
    mean_pairwise_cosine_distance,
    pairwise_distance_sample,
)
from synthmix.metrics.self_bleu import lexical_diversity_aggregated, lexical_diversity_individual
from synthmix.metrics.text import heaps_tokens, sample_sentences, sentences, split_sentences

REPO = Path(__file__).resolve().parents[1]


def pydoc_texts(n: int, offset: int = 0) -> list[str]:
    """Real prose with abbreviations, decimals, code and markdown-like marks: CPython's pydoc topics."""
    from pydoc_data.topics import topics

    names = sorted(topics)[offset : offset + n]
    return [topics[name][:900] for name in names]


# ---- NLTK's pretrained Punkt, installed from pinned data ----


def test_the_installed_punkt_model_is_nltk_datas_own() -> None:
    """The four English punkt_tab files are byte-identical to nltk_data's (digests pinned in
    scripts/install_punkt.py and recorded independently by other projects that vendor the archive)."""
    spec = importlib.util.spec_from_file_location("install_punkt", REPO / "scripts" / "install_punkt.py")
    installer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installer)  # type: ignore[union-attr]
    import nltk

    folder = Path(nltk.data.find("tokenizers/punkt_tab/english/"))
    for name, digest in installer.ENGLISH.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert Path(sys.prefix) in folder.parents  # the virtual environment's nltk_data, as install.sh lays it


def test_sentences_and_words_are_nltks_with_the_pretrained_model() -> None:
    text = "Dr. Smith went to Washington D.C. on Jan. 5. He paid $3.50, e.g. for coffee. It's 3.5 km away."
    # the pretrained model knows "dr", "d.c", "jan"; "e.g." before a lower-case word ends a sentence in NLTK
    assert sentences(text) == [
        "Dr. Smith went to Washington D.C. on Jan. 5.",
        "He paid $3.50, e.g.",
        "for coffee.",
        "It's 3.5 km away.",
    ]
    assert heaps_tokens(["Don't stop"], "paper") == ["do", "n't", "stop"]
    assert heaps_tokens(["Don't stop"], "synthmix") == ["don't", "stop"]


# ---- Self-BLEU ----


@pytest.fixture(scope="module")
def responses() -> list[str]:
    return pydoc_texts(40)


def test_valid_sentences_are_the_papers(responses: list[str]) -> None:
    ours = [s for s in (split_sentences(r) for r in responses) if s]
    assert ours == authors.load_and_clean_responses(responses)


@pytest.mark.parametrize(("condition", "offset"), [("single", 0), ("multi", 1), ("vanilla", 3)])
def test_self_bleu_equals_the_papers_with_its_per_file_seeds(
    responses: list[str], condition: str, offset: int
):
    """Samples smaller than the population (the paper's 1,500 and 100 are smaller than its 1,502 responses), drawn
    with seed 42 + the condition's position in the paper's file list (collapse.seed_offsets)."""
    settings = Collapse(lexical_diversity_individual_responses=9, lexical_diversity_aggregated_responses=6)
    texts = TextSet(responses, settings, definitions="paper", seed=42 + settings.seed_offsets[condition])
    assert texts.seed == 42 + offset
    individual = lexical_diversity_individual(responses, 9, texts.seed)["lexical_diversity_individual"]
    aggregated = lexical_diversity_aggregated(responses, 6, texts.seed)["lexical_diversity_aggregated"]
    assert individual == pytest.approx(
        authors.self_bleu_for_file(responses, "individual", 9, 42 + offset), abs=1e-9
    )
    assert aggregated == pytest.approx(
        authors.self_bleu_for_file(responses, "aggregated", 6, 42 + offset), abs=1e-9
    )


# ---- Heaps' law ----


def test_heaps_law_equals_the_papers(responses: list[str]) -> None:
    settings = Collapse(vocabulary_growth_every=200)
    texts = TextSet(responses, settings, definitions="paper")
    k, beta, n_values, v_values = authors.calculate_heaps_parameters(responses, sample_step=200)
    assert texts.growth == list(zip(n_values, v_values, strict=True))  # full multiples of the step only
    fit = fit_heaps(texts.growth, "paper")
    assert fit["K"] == pytest.approx(k, rel=1e-9) and fit["beta"] == pytest.approx(beta, rel=1e-9)
    # synthmix's definition: no fused words across responses, no punctuation tokens, a final partial point
    ours = TextSet(responses, settings, definitions="synthmix").growth
    assert ours[-1][0] % 200 != 0 and ours != texts.growth


# ---- semantic diversity ----


def test_semantic_sentences_and_their_sample_equal_the_papers(responses: list[str]) -> None:
    pool = [s for r in responses for s in sentences(r) if authors.is_valid_semantic_sentence(s)]
    assert len(pool) > 30
    assert sample_sentences(responses, 30, 42, "paper") == authors.semantic_sample(responses, 30, 42)
    # synthmix's set: the Self-BLEU sentences (cleaned, at least 4 words)
    assert sample_sentences(responses, 10**6, 42, "synthmix") == [
        s for r in responses for s in split_sentences(r)
    ]


def test_semantic_diversity_and_its_test_sample_equal_the_papers() -> None:
    embeddings = np.random.default_rng(3).normal(size=(40, 8))
    value, sample = authors.semantic_diversity_and_sample(embeddings, 300, 42)
    assert mean_pairwise_cosine_distance(embeddings) == pytest.approx(value, abs=1e-9)
    assert pairwise_distance_sample(embeddings, 300, 42) == pytest.approx(list(sample), abs=1e-12)
    assert len(pairwise_distance_sample(embeddings[:5], 300, 42)) == 20  # all N(N-1) when fewer than n


# ---- perplexity ----


def test_the_papers_perplexity_scores_the_end_of_turn(tiny_model: Path) -> None:
    """perplexity_2/perplexity.py: every token after the generation prompt of the rendered conversation.
    Agreement to 1e-6: both sides are float32 forward passes (ours batched, with logits_to_keep), not to 1e-9."""
    from synthmix.backends.transformers_backend import TransformersBackend, load_model
    from synthmix.metrics.perplexity import perplexity

    model, tokenizer = load_model(str(tiny_model))
    backend = TransformersBackend.from_loaded(model, tokenizer)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi?"},
    ]
    for response in ("Hello there, how are you today?", "A tuple is an immutable sequence."):
        expected, n_scored = authors.perplexity_v2(model, tokenizer, messages, response)
        [result] = backend.loglikelihood([{"id": "x", "messages": messages, "response": response}])
        assert result["n_tokens"] + result["n_end"] == n_scored
        assert perplexity(result, "paper") == pytest.approx(expected, rel=1e-6)


# ---- self-preference ----


def test_the_papers_judge_reading_equals_generates_processed_scores(tiny_model: Path) -> None:
    """P(A), P(B) from our stored top-50 log-probabilities after temperature 0.7, top-k 50, top-p 0.9 equal the
    softmax of generate()'s `scores[0]` (what the authors read), for a judge prompt on the tiny model."""
    from synthmix.backends.transformers_backend import TransformersBackend, load_model
    from synthmix.metrics.first_token import paper_option_probabilities

    model, tokenizer = load_model(str(tiny_model))
    backend = TransformersBackend.from_loaded(model, tokenizer)
    for user in ("Summary A: a cat.\nSummary B: a dog.", "Summary A: x\nSummary B: y y y"):
        messages = [{"role": "system", "content": "Rank the two texts."}, {"role": "user", "content": user}]
        [result] = backend.next_token_logprobs([{"id": "j", "messages": messages, "tokens": [], "top_n": 50}])
        ours = paper_option_probabilities(result["top"], ("A", "B"), 0.7, 50, 0.9)
        theirs = authors.first_token_probabilities(model, tokenizer, messages)
        assert ours == pytest.approx(theirs, abs=1e-6)


def test_undefined_judgements_are_counted_never_read_as_a_half() -> None:
    """When neither letter survives top-k/top-p, the paper's P(A) / (P(A) + P(B)) is undefined (their code would
    divide by zero): the verdict is NaN, counted in undefined_judgements and left out of every mean."""
    from synthmix.metrics.preference_summary import read_pairwise, summarise

    def record(item: str, first: str, second: str, head: float, a: float, b: float) -> dict:
        top = [["the", math.log(head)], ["A", math.log(a)], ["B", math.log(b)]] + [
            [f"t{i}", math.log(1e-6)] for i in range(47)
        ]
        return {"item": item, "first": first, "second": second, "top": top, "logprobs": {}}

    records = [
        record("i1", "own", "human", 0.5, 0.3, 0.15),  # A and B survive top-p 0.9 beside "the"
        record("i1", "human", "own", 0.5, 0.15, 0.3),
        record("i2", "own", "human", 0.9, 0.001, 0.001),  # both cut by top-p: undefined
        record("i2", "human", "own", 0.9, 0.001, 0.001),
    ]
    verdicts = read_pairwise(records, "paper")
    assert [math.isnan(v["p_first"]) for v in verdicts] == [False, False, True, True]
    metrics = summarise(verdicts, [], ["own", "human"], "own")
    assert metrics["undefined_judgements"] == 2
    # i1 only: at temperature 0.7, P(own) / (P(own) + P(other)) = 0.3^(1/0.7) / (0.3^(1/0.7) + 0.15^(1/0.7))
    by_hand = 2 ** (1 / 0.7) / (1 + 2 ** (1 / 0.7))
    assert metrics["self_preference"] == pytest.approx(by_hand, rel=1e-12)
    # synthmix's reading (raw, both letter forms) is defined for every judgement
    raw = [{**r, "logprobs": {"A": -1.0, " A": None, "B": -2.0, " B": None}} for r in records]
    assert not any(math.isnan(v["p_first"]) for v in read_pairwise(raw, "synthmix"))


# ---- data hygiene ----


def dolly_rows(n: int, duplicates: int) -> list[dict]:
    rows = [
        {"instruction": f"Question number {i}?", "context": "" if i % 2 else f"Context {i}.",
         "response": f"Answer {i}.", "category": ("open_qa", "closed_qa")[i % 2]}
        for i in range(n)
    ]  # fmt: skip
    return rows + [dict(rows[i]) for i in range(duplicates)]


def prepare(tmp_path: Path, rows: list[dict], **data: object) -> tuple[int, str]:
    from synthmix.cli import main

    dataset = tmp_path / "dolly.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"] = {"dataset": str(dataset), "test_fraction": 0.1, "split_seed": 42, **data}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return main(
        ["--params", str(tmp_path / "params.yaml"), "prepare", "--out", str(tmp_path / "prepared")]
    ), ""


def test_duplicate_prompts_are_removed_before_the_split(tmp_path: Path) -> None:
    code, _ = prepare(tmp_path, dolly_rows(40, 3))
    assert code == 0
    train = [json.loads(line) for line in (tmp_path / "prepared/train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "prepared/test.jsonl").read_text().splitlines()]
    assert len(train) + len(test) == 40
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    counts = json.loads((tmp_path / "prepared/manifest.json").read_text())["counts"]
    assert (counts["available"], counts["duplicate_prompts_removed"], counts["prompts_in_train_and_test"]) == (
        43, 3, 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "dolly.jsonl: 0 record(s), 0 of them repeated prompts: at least 2 distinct prompts are needed"),
        (dolly_rows(1, 1), "dolly.jsonl: 2 record(s), 1 of them repeated prompts"),
        (
            dolly_rows(4, 0),
            "dolly.jsonl: cannot split 4 prompt(s) (4 in categories with at least 2, 2 categories)",
        ),
    ],
    ids=["empty", "one-distinct", "too-small"],
)
def test_a_dataset_too_small_to_split_names_the_file_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[dict], message: str
) -> None:
    code, _ = prepare(tmp_path, rows)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
