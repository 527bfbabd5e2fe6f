"""Tests for the diversity metrics (synthmix.metrics.diversity, .self_bleu, .text, .embeddings): values worked out by hand or by a second implementation."""

from __future__ import annotations

import gzip
import math
import random

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from sacrebleu.metrics import BLEU

from synthmix.metrics.diversity import (
    compression_ratio,
    distinct_n,
    fit_heaps,
    mean_pairwise_cosine_distance,
    vendi_score,
    vocabulary_growth,
)
from synthmix.metrics.embeddings import default_embedding_model_path, embed_sentences
from synthmix.metrics.self_bleu import lexical_diversity_aggregated, lexical_diversity_individual, self_bleu
from synthmix.metrics.stats import summarize
from synthmix.metrics.text import clean_markdown, sample_sentences, split_sentences, word_tokens


def plain_sacrebleu_self_bleu(sentences: list[str]) -> float:
    """The paper's loop, one sacrebleu call per sentence: the reference for the shared-statistics version."""
    bleu = BLEU(max_ngram_order=3, effective_order=True)
    scores = [
        bleu.sentence_score(s, sentences[:i] + sentences[i + 1 :]).score for i, s in enumerate(sentences)
    ]
    return sum(scores) / len(scores)


# ---- pre-processing ---------------------------------------------------------------------------------------


def test_clean_markdown_removes_hashes_and_stars_only():
    assert clean_markdown("## **Step one:** use *care*  ") == "Step one: use care"
    assert clean_markdown("- item `code`") == "- item `code`"


def test_split_sentences_filters_like_the_paper():
    text = "# Steps\n1. Open the door first. 2. Then wait. Walk in very slowly now! Hi."
    # Punkt gives "# Steps\n1.", "Open the door first.", "2.", "Then wait.", "Walk in very slowly now!", "Hi.";
    # all but the two real sentences have fewer than 4 words once cleaned.
    assert split_sentences(text) == ["Open the door first.", "Walk in very slowly now!"]
    assert split_sentences("Then wait. Go home. 2. ## 3.", min_words=1) == ["Then wait.", "Go home."]
    assert split_sentences("") == []
    with pytest.raises(ValueError, match="min_words"):
        split_sentences("text", min_words=0)


def test_word_tokens_rule():
    assert word_tokens("Don't stop, Well-known 3.14! ## *x*") == [
        "don't",
        "stop",
        "well-known",
        "3",
        "14",
        "x",
    ]
    assert word_tokens("") == []


# ---- Self-BLEU --------------------------------------------------------------------------------------------


def test_self_bleu_hand_computed_pair():
    # "the cat sat" vs "the cat ran": unigram 2/3, bigram 1/2, trigram 0/1 -> 'exp' smoothing 1/(2*1);
    # equal lengths so no brevity penalty; BLEU = (66.67 * 50 * 50) ** (1/3), the same for both directions.
    expected = (200 / 3 * 50 * 50) ** (1 / 3)
    assert self_bleu(["the cat sat", "the cat ran"]) == pytest.approx(expected, rel=1e-12)


def test_self_bleu_agrees_with_nltk_nist_smoothing():
    # nltk's method3 is the NIST geometric smoothing sacrebleu calls 'exp'; with every sentence >= 3 tokens
    # effective order changes nothing, so both must agree. No punctuation, so both tokenize by whitespace.
    sentences = [
        "the cat sat on the mat today",
        "a dog sat on the mat today",
        "the cat ran away from a dog",
        "my cat sat near the big dog",
        "nothing here matches at all",
    ]
    scores = []
    for i, hypothesis in enumerate(sentences):
        references = [s.split() for j, s in enumerate(sentences) if j != i]
        scores.append(
            100
            * sentence_bleu(
                references,
                hypothesis.split(),
                weights=(1 / 3, 1 / 3, 1 / 3),
                smoothing_function=SmoothingFunction().method3,
            )
        )
    assert self_bleu(sentences) == pytest.approx(sum(scores) / len(scores), rel=1e-9)


def test_self_bleu_equals_plain_sacrebleu_calls():
    rng = random.Random(7)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", ".", ",", "and", "Cat"]
    for _ in range(200):
        sentences = [" ".join(rng.choices(words, k=rng.randint(0, 10))) for _ in range(rng.randint(2, 9))]
        if rng.random() < 0.3:
            sentences.append(sentences[0])  # duplicates: the max over "all but i" must still be right
        assert self_bleu(sentences) == pytest.approx(plain_sacrebleu_self_bleu(sentences), rel=1e-12)


def test_self_bleu_edge_cases():
    assert self_bleu([]) is None
    assert self_bleu(["only one sentence here"]) is None
    assert self_bleu(["same words in here", "same words in here", "same words in here"]) == pytest.approx(
        100.0
    )
    assert self_bleu(["alpha beta gamma delta", "one two three four"]) == 0.0


def test_lexical_diversity_identical_and_empty_outputs():
    response = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat."
    individual = lexical_diversity_individual([response] * 5, max_responses=10, seed=0)
    assert individual["lexical_diversity_individual"] == pytest.approx(0.0, abs=1e-9)
    assert individual["self_bleu_individual"] == pytest.approx(100.0)
    assert individual["n_responses"] == 5
    aggregated = lexical_diversity_aggregated([response] * 5, sample_size=3, seed=0)
    assert aggregated["lexical_diversity_aggregated"] == pytest.approx(0.0, abs=1e-9)
    assert (aggregated["n_responses"], aggregated["n_sentences"]) == (3, 9)

    assert lexical_diversity_individual([], max_responses=10, seed=0) == {
        "lexical_diversity_individual": None,
        "self_bleu_individual": None,
        "n_responses": 0,
    }
    # one valid sentence per response: nothing to score individually, nothing eligible for the pool
    one_sentence = ["Just a single sentence here."] * 3
    assert lexical_diversity_individual(one_sentence)["n_responses"] == 0
    assert lexical_diversity_aggregated(one_sentence)["lexical_diversity_aggregated"] is None


def test_lexical_diversity_modes_match_hand_assembly():
    responses = [
        "Paris is the capital of France. It lies on the river Seine.",
        "Water boils at one hundred degrees. Ice melts at zero degrees.",
        "Short one.",  # no valid sentence: never drawn
        "Cats are small furry animals. Dogs are loyal furry animals. Birds can fly very high.",
    ]
    split = [split_sentences(r) for r in responses]
    individual = lexical_diversity_individual(responses, max_responses=100, seed=1)
    expected = [plain_sacrebleu_self_bleu(s) for s in split if len(s) >= 2]
    assert individual["self_bleu_individual"] == pytest.approx(sum(expected) / len(expected), rel=1e-12)
    assert individual["n_responses"] == 3

    aggregated = lexical_diversity_aggregated(responses, sample_size=100, seed=1)
    pooled = [s for sentences in split for s in sentences]
    assert aggregated["self_bleu_aggregated"] == pytest.approx(plain_sacrebleu_self_bleu(pooled), rel=1e-12)
    assert aggregated["lexical_diversity_aggregated"] == pytest.approx(
        100 - aggregated["self_bleu_aggregated"]
    )


def test_sampling_is_seeded_and_bounded():
    responses = [
        f"Response number {i} has exactly one long sentence. And a second one here {i}." for i in range(50)
    ]
    first = lexical_diversity_aggregated(responses, sample_size=10, seed=3)
    assert first == lexical_diversity_aggregated(responses, sample_size=10, seed=3)
    assert first["n_responses"] == 10
    sample = sample_sentences(responses, k=7, seed=42)
    assert len(sample) == 7 and len(set(sample)) == 7
    assert sample == sample_sentences(responses, k=7, seed=42)
    assert sample_sentences(responses[:2], k=100) == split_sentences(responses[0]) + split_sentences(
        responses[1]
    )
    with pytest.raises(ValueError, match="sample size"):
        sample_sentences(responses, k=0)


# ---- distinct-n, compression ------------------------------------------------------------------------------


def test_distinct_n_hand_computed():
    texts = ["the cat sat on the mat", "the cat ran"]
    # unigrams: 9 in total, distinct {the, cat, sat, on, mat, ran} = 6
    assert distinct_n(texts, 1) == pytest.approx(6 / 9)
    # bigrams: 5 + 2 = 7, distinct: the cat, cat sat, sat on, on the, the mat, cat ran = 6
    assert distinct_n(texts, 2) == pytest.approx(6 / 7)
    # trigrams never cross texts: 4 + 1 = 5, all distinct
    assert distinct_n(texts, 3) == 1.0


def test_distinct_n_edge_cases():
    assert distinct_n(["spam " * 8], 1) == pytest.approx(1 / 8)
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["", "one"], 2) == 0.0
    with pytest.raises(ValueError, match="n must be >= 1"):
        distinct_n(["text"], 0)


def test_compression_ratio_recomputed():
    texts = ["hello world", "héllo wörld again", "hello world"]
    data = "hello world héllo wörld again hello world".encode()
    assert compression_ratio(texts) == pytest.approx(len(data) / len(gzip.compress(data)))
    repetitive = compression_ratio(["the same line"] * 200)
    varied = compression_ratio([f"line {i} says {i * 7919 % 1000}" for i in range(200)])
    assert repetitive > varied > 1.0
    assert compression_ratio([]) is None
    assert compression_ratio([""]) is None


# ---- Heaps' law -------------------------------------------------------------------------------------------


def test_vocabulary_growth_points():
    tokens = ["a", "b", "a", "c", "b", "d", "e"]
    assert vocabulary_growth(tokens, every=3) == [(3, 2), (6, 4)]  # full multiples only (the paper's)
    assert vocabulary_growth(tokens, every=3, final_point=True) == [(3, 2), (6, 4), (7, 5)]
    assert vocabulary_growth(tokens, every=7) == [(7, 5)]
    assert vocabulary_growth([], every=3) == []
    with pytest.raises(ValueError, match="every"):
        vocabulary_growth(tokens, every=0)


@pytest.mark.parametrize("start", ["paper", "loglog"])
def test_fit_heaps_recovers_parameters(start: str):
    points = [(n, 3 * n**0.5) for n in range(1000, 50001, 1000)]
    fit = fit_heaps(points, start)
    assert fit["K"] == pytest.approx(3.0, rel=1e-6)
    assert fit["beta"] == pytest.approx(0.5, rel=1e-6)
    two = fit_heaps([(100, 30), (400, 60)], start)
    assert (two["K"], two["beta"]) == pytest.approx((3.0, 0.5), rel=1e-6)


def test_fit_heaps_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least 2"):
        fit_heaps([(1000, 300)])
    with pytest.raises(ValueError, match="N > 0"):
        fit_heaps([(0, 0), (10, 5)])


# ---- semantic diversity -----------------------------------------------------------------------------------


def test_mean_pairwise_cosine_distance_against_full_matrix():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(12, 5))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distances = 1 - unit @ unit.T
    off_diagonal = distances[~np.eye(12, dtype=bool)]
    assert mean_pairwise_cosine_distance(embeddings) == pytest.approx(off_diagonal.mean(), rel=1e-12)


def test_mean_pairwise_cosine_distance_edge_cases():
    assert mean_pairwise_cosine_distance(np.tile([1.0, 2.0, 3.0], (4, 1))) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_cosine_distance(np.eye(3)) == pytest.approx(1.0)
    assert mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mean_pairwise_cosine_distance(np.ones((1, 3)))
    with pytest.raises(ValueError, match="non-zero"):
        mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_vendi_score_known_values_and_formula():
    assert vendi_score(np.tile([0.3, -1.0, 2.0], (5, 1))) == pytest.approx(1.0)
    assert vendi_score(np.eye(4, 6)) == pytest.approx(4.0)
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(9, 4))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(unit @ unit.T / 9)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    expected = math.exp(-np.sum(eigenvalues * np.log(eigenvalues)))
    assert vendi_score(embeddings) == pytest.approx(expected, rel=1e-9)


def test_default_embedding_model_path_points_at_a_model():
    path = default_embedding_model_path()
    assert (path / "modules.json").is_file()
    assert (path / "model.safetensors").is_file()


@pytest.mark.slow
def test_embed_sentences_paraphrase_is_closer():
    embeddings = embed_sentences(
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."],
        default_embedding_model_path(),
    )
    assert embeddings.shape == (3, 384)
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2] + 0.3


def test_embed_sentences_rejects_empty():
    with pytest.raises(ValueError, match="no sentences"):
        embed_sentences([], "unused")


# ---- summaries --------------------------------------------------------------------------------------------


def test_summarize_iqr_cleaning_hand_example():
    values = [10, 11, 12, 13, 14, 100]
    # np.percentile linear: Q1 = 11.25, Q3 = 13.75, IQR = 2.5, fences [7.5, 17.5]: 100 is dropped.
    summary = summarize(values)
    assert summary["q1"] == pytest.approx(11.25) and summary["q3"] == pytest.approx(13.75)
    assert summary["mean"] == pytest.approx(160 / 6)
    assert summary["median"] == pytest.approx(12.5)
    assert summary["mean_iqr_cleaned"] == pytest.approx(12.0)
    assert (summary["n"], summary["n_kept"], summary["n_nonfinite"]) == (6, 5, 0)


def test_summarize_nonfinite_and_empty():
    summary = summarize([1.0, 2.0, float("nan"), float("inf"), 3.0])
    assert summary["mean"] == pytest.approx(2.0)
    assert (summary["n"], summary["n_kept"], summary["n_nonfinite"]) == (3, 3, 2)
    empty = summarize([])
    assert empty["mean"] is None and empty["mean_iqr_cleaned"] is None and empty["n"] == 0
    assert summarize([float("nan")])["n_nonfinite"] == 1
