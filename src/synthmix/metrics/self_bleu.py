"""Self-BLEU and the lexical diversity built on it (Schaffelder & Gatt, arXiv 2511.01490, §4.1 b).

Lexical diversity = 100 - Self-BLEU (Zhu et al. 2018), with the paper's sacrebleu settings, in two modes:
within each response (individual) and across the pooled sentences of sampled responses (aggregated).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

from synthmix.metrics.text import sample_indices, split_sentences

# The paper's sacrebleu settings for Self-BLEU (sentence-level BLEU; other settings are sacrebleu defaults:
# 13a tokenizer, case-sensitive, 'exp' smoothing).
SELF_BLEU_MAX_NGRAM_ORDER = 3


# --------------------------------------------------------------------------------------------------------
# Text pre-processing
# --------------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------------
# Self-BLEU
# --------------------------------------------------------------------------------------------------------


def _paper_bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(max_ngram_order=SELF_BLEU_MAX_NGRAM_ORDER, effective_order=True)


def _closest_other_length(hyp_len: int, length_counts: Counter[int], sorted_lengths: list[int]) -> int:
    """sacrebleu's closest reference length (smallest |diff|, ties to the shorter) over all the *other*
    sentences' lengths: the multiset of lengths minus one copy of the hypothesis' own."""
    if length_counts[hyp_len] >= 2:
        return hyp_len
    pos = bisect.bisect_left(sorted_lengths, hyp_len)
    shorter = sorted_lengths[pos - 1] if pos > 0 else None
    # sorted_lengths[pos] is hyp_len itself (present once: the hypothesis), so look one further.
    longer = sorted_lengths[pos + 1] if pos + 1 < len(sorted_lengths) else None
    if shorter is None:
        return longer  # type: ignore[return-value]  # at least one other sentence exists
    if longer is None or hyp_len - shorter <= longer - hyp_len:
        return shorter
    return longer


def _self_bleu_scores(sentences: Sequence[str]) -> list[float]:
    """Sentence BLEU of each sentence against all the others as references, identical to
    ``BLEU(max_ngram_order=3, effective_order=True).sentence_score(s_i, others).score``.

    Why not call that directly: each call re-tokenizes and re-counts all n-1 references, so pooled
    (aggregated) Self-BLEU costs O(n^2) tokenizations (the paper's notebook took ~37 s per output set for 100
    responses). Multi-reference BLEU only needs, per n-gram, the *maximum* count over the references and the
    reference lengths. We tokenize each sentence once with sacrebleu's own tokenizer and n-gram extractor,
    keep the top two counts of each n-gram (so "max over all sentences but i" is exact), and feed the same
    sufficient statistics to sacrebleu's ``compute_bleu``. Equality with the plain call is tested.
    """
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    bleu = _paper_bleu()
    order = bleu.max_ngram_order
    counts_and_lengths = [
        extract_all_word_ngrams(bleu._preprocess_segment(sentence), 1, order) for sentence in sentences
    ]

    # n-gram -> [best count, index of the sentence holding it, second-best count (over other sentences)]
    top: dict[tuple[str, ...], list[int]] = {}
    for index, (ngram_counts, _) in enumerate(counts_and_lengths):
        for ngram, count in ngram_counts.items():
            entry = top.get(ngram)
            if entry is None:
                top[ngram] = [count, index, 0]
            elif count > entry[0]:
                entry[2] = entry[0]
                entry[0] = count
                entry[1] = index
            elif count > entry[2]:
                entry[2] = count

    length_counts = Counter(length for _, length in counts_and_lengths)
    sorted_lengths = sorted(length_counts)
    scores = []
    for index, (ngram_counts, hyp_len) in enumerate(counts_and_lengths):
        correct = [0] * order
        total = [0] * order
        for ngram, count in ngram_counts.items():
            best, best_index, second = top[ngram]
            reference_count = second if best_index == index else best
            total[len(ngram) - 1] += count
            correct[len(ngram) - 1] += min(count, reference_count)
        ref_len = _closest_other_length(hyp_len, length_counts, sorted_lengths)
        score = bleu.compute_bleu(
            correct=correct,
            total=total,
            sys_len=hyp_len,
            ref_len=ref_len,
            smooth_method=bleu.smooth_method,
            smooth_value=bleu.smooth_value,
            effective_order=bleu.effective_order,
            max_ngram_order=order,
        )
        scores.append(score.score)
    return scores


def self_bleu(sentences: Sequence[str]) -> float | None:
    """Self-BLEU (Zhu et al. 2018, arXiv 1802.01886) with the paper's sacrebleu settings, in [0, 100].

    Each sentence is scored with sentence-level BLEU (sacrebleu, max n-gram order 3, effective order, 13a
    tokenizer, 'exp' smoothing) against all the other sentences as references; the scores are averaged.
    100 means every sentence is repeated elsewhere. Returns None for fewer than 2 sentences (no references).
    The paper's code returns 100 in that case, but its callers never score such inputs.
    """
    if len(sentences) < 2:
        return None
    scores = _self_bleu_scores(sentences)
    return sum(scores) / len(scores)


def lexical_diversity_individual(
    responses: Sequence[str], max_responses: int = 1500, seed: int = 42
) -> dict[str, float | int | None]:
    """Individual-mode lexical diversity: 100 - mean Self-BLEU *within* each response (paper §4.1 b).

    As in the paper's code: split every response (``split_sentences``), keep those with at least one valid
    sentence, draw up to ``max_responses`` of them with ``seed``, score the drawn responses that have >= 2 valid
    sentences with ``self_bleu``, and average. ``n_responses`` is the number of responses scored. All values
    except ``n_responses`` are None when no drawn response has 2 valid sentences.
    """
    split = [sentences for sentences in map(split_sentences, responses) if sentences]
    drawn = [split[i] for i in sample_indices(len(split), max_responses, seed)]
    # self_bleu is None exactly for responses with fewer than 2 valid sentences, which are not scored.
    scores = [score for score in map(self_bleu, drawn) if score is not None]
    if not scores:
        return {"lexical_diversity_individual": None, "self_bleu_individual": None, "n_responses": 0}
    mean_self_bleu = _mean(scores)
    return {
        "lexical_diversity_individual": 100.0 - mean_self_bleu,
        "self_bleu_individual": mean_self_bleu,
        "n_responses": len(scores),
    }


def lexical_diversity_aggregated(
    responses: Sequence[str], sample_size: int = 100, seed: int = 42
) -> dict[str, float | int | None]:
    """Aggregated-mode lexical diversity: 100 - Self-BLEU *across* the pooled sentences of sampled responses.

    As in the paper's code: keep responses with >= 2 valid sentences, draw ``sample_size`` of them (paper: 100)
    with ``seed``, pool their sentences and compute ``self_bleu`` over the pool. Exact for any pool size (see
    ``_self_bleu_scores``); no subsampling cap. Values are None when fewer than 2 sentences are pooled.
    """
    eligible = [sentences for sentences in map(split_sentences, responses) if len(sentences) >= 2]
    drawn = [eligible[i] for i in sample_indices(len(eligible), sample_size, seed)]
    pooled = [sentence for sentences in drawn for sentence in sentences]
    score = self_bleu(pooled)
    return {
        "lexical_diversity_aggregated": None if score is None else 100.0 - score,
        "self_bleu_aggregated": score,
        "n_responses": len(drawn),
        "n_sentences": len(pooled),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
