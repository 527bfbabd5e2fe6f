"""Diversity of a set of texts: the distribution-collapse metrics, and the registry that names them.

Pure functions over strings and arrays, following Schaffelder & Gatt (arXiv 2511.01490), experiment 1:

- Self-BLEU, individual and aggregated (sacrebleu, max n-gram order 3, effective order), reported as
  lexical diversity = 100 - Self-BLEU;
- Heaps' law V = K * N**beta fitted to the vocabulary growth curve;
- semantic diversity: mean pairwise cosine distance of sentence embeddings, plus the Vendi score;
- distinct-n and compression ratio (Shaib et al. 2024, arXiv 2403.00553) as extra lexical measures.

`diversity_metrics(texts, settings, embedder)` computes every metric in `DIVERSITY_METRICS` for one set of
texts; the collapse@ and data_diversity stages and the report read the registry, so adding a metric is one
decorated function (see `diversity_metric`). Text pre-processing is in ``synthmix.metrics.text``; sentence
embeddings in ``synthmix.metrics.embeddings``.
"""

from __future__ import annotations

import gzip
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from synthmix.metrics.self_bleu import lexical_diversity_aggregated, lexical_diversity_individual
from synthmix.metrics.text import check_definitions, heaps_tokens, sample_sentences, word_tokens
from synthmix.registry import Registry

GROWTH_COLUMNS = ("tokens", "vocabulary")  # the vocabulary growth curve's TSV columns: N, V(N)

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


def vocabulary_growth(
    tokens: Sequence[str], every: int = 1000, final_point: bool = False
) -> list[tuple[int, int]]:
    """Vocabulary growth curve of a token stream: (N, V(N)) at every full multiple of ``every`` tokens, where V is
    the number of distinct tokens among the first N (paper §4.1 c, every 1,000 tokens; heaps_law.ipynb records
    only full multiples). With ``final_point`` (the `synthmix` definitions) the stream's end is a point too when
    its length is not a multiple of ``every``. Empty input gives an empty list.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1 token, got {every}; the paper records V every 1000 tokens.")
    seen: set[str] = set()
    points = []
    for n, token in enumerate(tokens, start=1):
        seen.add(token)
        if n % every == 0:
            points.append((n, len(seen)))
    if final_point and len(tokens) % every:
        points.append((len(tokens), len(seen)))
    return points


def fit_heaps(points: Sequence[tuple[int, int]], start: str = "paper") -> dict[str, float]:
    """Fit Heaps' law V = K * N**beta (Heaps 1978) to (N, V) points with ``scipy.optimize.curve_fit``: least
    squares on V in linear space, as heaps_law.ipynb. ``start`` is where the fit starts: ``"paper"``, curve_fit's
    default (K, beta) = (1, 1) as the paper's code; ``"loglog"`` (`synthmix`), the log-log linear fit
    log V = log K + beta log N, which converges on inputs where (1, 1) is far off.

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

    if start == "loglog":
        beta0, log_k0 = np.polyfit(np.log(n_values), np.log(v_values), 1)
        options: dict[str, Any] = {"p0": (math.exp(log_k0), beta0), "maxfev": 10_000}
    else:
        options = {}  # p0 = (1, 1), curve_fit's default maxfev

    def heaps(n: np.ndarray, k: float, beta: float) -> np.ndarray:
        return k * n**beta

    with warnings.catch_warnings():
        # With exactly 2 points the fit is exact and scipy warns that it cannot estimate the covariance,
        # which we do not use.
        warnings.simplefilter("ignore", OptimizeWarning)
        (k, beta), _ = curve_fit(heaps, n_values, v_values, **options)
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


def pairwise_distance_sample(embeddings: np.ndarray, n: int = 10_000, seed: int = 42) -> list[float]:
    """``n`` cosine distances drawn without replacement from all ordered pairs (i, j), i != j, of the rows.

    As semantic_diversity.ipynb draws 10,000 values per group for its significance tests: from the row-major
    off-diagonal vector of the distance matrix, with ``np.random.RandomState(seed).choice(..., replace=False)``
    (the matrix itself is never built). All N(N-1) distances, in that order, when there are at most ``n``.
    """
    unit = _unit_rows(embeddings)
    rows = unit.shape[0]
    total = rows * (rows - 1)
    picks = (
        np.arange(total) if total <= n else np.random.RandomState(seed).choice(total, size=n, replace=False)
    )
    i, rest = np.divmod(picks, rows - 1)
    j = rest + (rest >= i)  # skip the diagonal
    return [float(d) for d in 1.0 - np.einsum("ij,ij->i", unit[i], unit[j])]


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng, TMLR 2023, arXiv 2210.02410) with the cosine kernel: exp of the Shannon
    entropy of the eigenvalues of K / n, K_ij = cos(e_i, e_j). The effective number of distinct items: 1 for
    identical rows, n for mutually orthogonal rows.

    Uses ``vendi_score.vendi.score_dual`` (eigenvalues of the d x d matrix X^T X / n, which has the same
    non-zero spectrum as K / n, so it is cheap for n >> d).
    """
    from vendi_score import vendi

    return float(vendi.score_dual(_unit_rows(embeddings), normalize=False))


# --------------------------------------------------------------------------------------------------------
# The registry: every diversity metric of a set of texts
# --------------------------------------------------------------------------------------------------------


class TextSet:
    """One set of texts (a condition's outputs, a source's training data) with the settings of the metrics
    and the views they share, each computed once: the vocabulary growth curve, the sampled sentences'
    embeddings. `settings` is params' `collapse` section; `embedder` the sentence encoder's folder, or None
    when semantic metrics are off; `definitions` the metric definition set (`paper` or `synthmix`); `seed` the
    seed of this set's samples (default `settings.seed`)."""

    def __init__(
        self,
        texts: Sequence[str],
        settings: Any,
        embedder: Path | None = None,
        definitions: str = "paper",
        seed: int | None = None,
    ):
        self.texts = list(texts)
        self.settings = settings
        self.embedder = embedder
        self.definitions = check_definitions(definitions)
        self.seed = settings.seed if seed is None else seed

    @cached_property
    def growth(self) -> list[tuple[int, int]]:
        tokens = heaps_tokens(self.texts, self.definitions)
        return vocabulary_growth(
            tokens, self.settings.vocabulary_growth_every, self.definitions == "synthmix"
        )

    @cached_property
    def sentences(self) -> list[str]:
        """The sampled sentences of semantic diversity (`metrics.text.sample_sentences`)."""
        return sample_sentences(
            self.texts, self.settings.semantic_diversity_sentences, self.seed, self.definitions
        )

    @cached_property
    def embeddings(self) -> np.ndarray | None:
        """Embeddings of the sampled sentences; None when semantic metrics are off or < 2 sentences."""
        if self.embedder is None or len(self.sentences) < 2:
            return None
        from synthmix.metrics.embeddings import embed_sentences

        return embed_sentences(self.sentences, self.embedder)


@dataclass(frozen=True)
class DiversityMetric:
    """`compute(texts)` returns {key: value} for `keys` (None where the metric is undefined for the set);
    `report_keys` are the keys the report's diversity table shows."""

    compute: Callable[[TextSet], dict[str, Any]]
    keys: tuple[str, ...]
    report_keys: tuple[str, ...]
    description: str = ""


DIVERSITY_METRICS: Registry[DiversityMetric] = Registry("diversity metric")


def diversity_metric(
    name: str,
    keys: Sequence[str] | None = None,
    report_keys: Sequence[str] | None = None,
    description: str = "",
) -> Callable[[Callable[[TextSet], dict[str, Any]]], Callable[[TextSet], dict[str, Any]]]:
    """Decorator: register `compute(texts: TextSet) -> {key: value}` as the diversity metric `name`.

    `keys` are the keys it returns (default: just `name`); `report_keys` those the report shows (default:
    all of `keys`). The collapse@ and data_diversity stages then write them and the report shows them."""

    def decorate(compute: Callable[[TextSet], dict[str, Any]]) -> Callable[[TextSet], dict[str, Any]]:
        own = tuple(keys or (name,))
        shown = tuple(report_keys if report_keys is not None else own)
        DIVERSITY_METRICS.add(
            name, DiversityMetric(compute, own, shown, description or (compute.__doc__ or ""))
        )
        return compute

    return decorate


def report_keys() -> list[str]:
    """The diversity keys the report shows, in registration order."""
    return [key for _, metric in DIVERSITY_METRICS.items() for key in metric.report_keys]


def diversity_metrics(
    texts: Sequence[str],
    settings: Any,
    embedder: Path | None = None,
    definitions: str = "paper",
    seed: int | None = None,
    text_set: TextSet | None = None,
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """Every registered diversity metric of one set of texts, and its vocabulary growth curve [(N, V(N))].

    A value is None where it is undefined for this set (Heaps' law with fewer than 2 curve points, Self-BLEU
    or semantic diversity with fewer than 2 valid sentences) or switched off (semantic metrics without an
    `embedder`). Also `n_responses`, the size of the set.
    """
    text_set = text_set or TextSet(texts, settings, embedder, definitions, seed)
    values: dict[str, Any] = {}
    for name, metric in DIVERSITY_METRICS.items():
        computed = metric.compute(text_set)
        missing = [key for key in metric.keys if key not in computed]
        if missing:
            raise ValueError(f"diversity metric '{name}' did not return {missing}")
        values.update({key: computed[key] for key in metric.keys})
    values["n_responses"] = len(text_set.texts)
    return values, text_set.growth


@diversity_metric("lexical_diversity_individual")
def _individual(texts: TextSet) -> dict[str, Any]:
    """100 - Self-BLEU within each response, averaged (paper §4.1 b, individual mode)."""
    settings = texts.settings
    result = lexical_diversity_individual(
        texts.texts, settings.lexical_diversity_individual_responses, texts.seed
    )
    return {"lexical_diversity_individual": result["lexical_diversity_individual"]}


@diversity_metric("lexical_diversity_aggregated")
def _aggregated(texts: TextSet) -> dict[str, Any]:
    """100 - Self-BLEU across the pooled sentences of sampled responses (paper §4.1 b, aggregated mode)."""
    settings = texts.settings
    result = lexical_diversity_aggregated(
        texts.texts, settings.lexical_diversity_aggregated_responses, texts.seed
    )
    return {"lexical_diversity_aggregated": result["lexical_diversity_aggregated"]}


@diversity_metric("heaps", keys=("heaps_k", "heaps_beta"))
def _heaps(texts: TextSet) -> dict[str, Any]:
    """Heaps' law V = K N^beta fitted to the vocabulary growth curve (paper §4.1 c)."""
    if len(texts.growth) < 2:
        warnings.warn(
            f"{len(texts.growth)} vocabulary growth point(s): Heaps' law needs 2; lower "
            "collapse.vocabulary_growth_every",
            stacklevel=2,
        )
        return {"heaps_k": None, "heaps_beta": None}
    fit = fit_heaps(texts.growth, "paper" if texts.definitions == "paper" else "loglog")
    return {"heaps_k": fit["K"], "heaps_beta": fit["beta"]}


@diversity_metric("semantic_diversity")
def _semantic(texts: TextSet) -> dict[str, Any]:
    """Mean pairwise cosine distance of the sampled sentences' embeddings (paper §4.1 d)."""
    embeddings = texts.embeddings
    return {"semantic_diversity": None if embeddings is None else mean_pairwise_cosine_distance(embeddings)}


@diversity_metric("vendi_score")
def _vendi(texts: TextSet) -> dict[str, Any]:
    """Vendi score of the same embeddings (Friedman & Dieng 2023): the effective number of distinct items."""
    embeddings = texts.embeddings
    return {"vendi_score": None if embeddings is None else vendi_score(embeddings)}


@diversity_metric(
    "distinct", keys=tuple(f"distinct_{n}" for n in range(1, 5)), report_keys=("distinct_1", "distinct_2")
)
def _distinct(texts: TextSet) -> dict[str, Any]:
    """distinct-1..4: distinct word n-grams / all word n-grams."""
    return {f"distinct_{n}": distinct_n(texts.texts, n) for n in range(1, 5)}


@diversity_metric("compression_ratio")
def _compression(texts: TextSet) -> dict[str, Any]:
    """gzip compression ratio of the set (Shaib et al. 2024)."""
    return {"compression_ratio": compression_ratio(texts.texts)}
