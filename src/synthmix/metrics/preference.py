"""Self-preference metrics: reading a judge's verdict from its first token, and aggregating pairwise verdicts.

The judge is a (fine-tuned) causal LM that sees two candidate texts, "Summary A" and "Summary B", from
different sources and is asked to answer with a letter. Following Schaffelder & Gatt (arXiv 2511.01490,
Experiment 3) and Panickssery et al. (arXiv 2404.13076), the verdict is not sampled: it is read from the
probabilities the judge puts on the answer letters at its first generated position, and every pair is
judged in both orders so that position bias cancels.

No library computes these metrics (notes/metrics.md §1, §4), so they are written here by hand, each with its
definition and source. Aggregation functions take plain data, one judgement per (item, order)::

    {"item": "cnn-17", "first": "llama", "second": "human", "p_first": 0.73}

where ``p_first`` = P(the judge chooses the text shown first) = :func:`choice_probability` (P(A), P(B)).
A ``p_first`` of NaN means the judge put no probability on either letter; such judgements carry no
evidence and are skipped by every aggregation function.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypedDict


class Judgement(TypedDict):
    """One pairwise verdict: the judge saw ``first`` as text A and ``second`` as text B for ``item``."""

    item: Hashable
    first: str
    second: str
    p_first: float


# --------------------------------------------------------------------------------------------------------
# Reading the judge's first-token distribution
# --------------------------------------------------------------------------------------------------------


def choice_probability(prob_a: float, prob_b: float) -> float:
    """Probability that the judge chooses option A over option B: P(A) / (P(A) + P(B)).

    This renormalises the first-token probabilities of the two answer letters, ignoring the mass the
    judge put on every other token (Schaffelder & Gatt, arXiv 2511.01490, Experiment 3; Panickssery et
    al. 2024, arXiv 2404.13076). Returns NaN when both probabilities are 0: the judge expressed no
    preference between the letters at all, and aggregation functions in this module skip NaN verdicts.

    Raises ValueError when a probability is negative, above 1 or not finite.
    """
    for name, value in (("prob_a", prob_a), ("prob_b", prob_b)):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    total = prob_a + prob_b
    if total == 0.0:
        return math.nan
    return prob_a / total


# --------------------------------------------------------------------------------------------------------
# Aggregating pairwise verdicts
# --------------------------------------------------------------------------------------------------------

_Row = tuple[Hashable, str, str, float]


def _valid_rows(judgements: Iterable[Mapping[str, Any]]) -> list[_Row]:
    """Check the judgements and return (item, first, second, p_first) tuples, NaN verdicts dropped."""
    rows: list[_Row] = []
    seen: set[tuple[Hashable, str, str]] = set()
    for index, judgement in enumerate(judgements):
        missing = [key for key in ("item", "first", "second", "p_first") if key not in judgement]
        if missing:
            raise ValueError(
                f"judgement #{index} lacks {missing}; each judgement needs item, first, second, p_first"
            )
        item, first, second = judgement["item"], judgement["first"], judgement["second"]
        p_first = float(judgement["p_first"])
        if first == second:
            raise ValueError(f"judgement #{index} compares source {first!r} with itself; pair two sources")
        if not math.isnan(p_first) and not 0.0 <= p_first <= 1.0:
            raise ValueError(f"judgement #{index} has p_first={p_first!r}; it must be in [0, 1] or NaN")
        key = (item, first, second)
        if key in seen:
            raise ValueError(
                f"judgement #{index} repeats item {item!r} with {first!r} first and {second!r} second; "
                "give each (item, order) once"
            )
        seen.add(key)
        if not math.isnan(p_first):
            rows.append((item, first, second, p_first))
    return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _by_position(rows: list[_Row], source: str, opponents: set[str] | None) -> tuple[float, float]:
    """(mean P(choose source | shown first), mean P(choose source | shown second)) over its comparisons."""
    shown_first = [p for _, first, second, p in rows if first == source and _in(second, opponents)]
    shown_second = [1.0 - p for _, first, second, p in rows if second == source and _in(first, opponents)]
    if not shown_first or not shown_second:
        against = "" if opponents is None else f" against {sorted(opponents)}"
        raise ValueError(
            f"source {source!r}{against} was judged {len(shown_first)} times shown first and "
            f"{len(shown_second)} times shown second; the pairwise design needs both orders"
        )
    return _mean(shown_first), _mean(shown_second)


def _position_balanced_preference(rows: list[_Row], source: str, opponents: set[str] | None) -> float:
    """½[mean P(choose source | shown first) + mean P(choose source | shown second)] over its comparisons.

    Averaging the two position means (rather than pooling all comparisons) makes a judge that always
    answers "A" give exactly 0.5 even if a few verdicts are missing. With every pair judged in both
    orders it equals the mean over pairs of Panickssery et al.'s per-pair score.
    """
    return 0.5 * sum(_by_position(rows, source, opponents))


def preference_by_position(judgements: Iterable[Mapping[str, Any]], source: str) -> tuple[float, float]:
    """The two halves of :func:`self_preference` apart: the mean preference for `source` when its text is
    shown first ("A") and when it is shown second ("B"). Their gap is the judge's position bias on it."""
    return _by_position(_valid_rows(judgements), source, None)


def _in(source: str, opponents: set[str] | None) -> bool:
    return opponents is None or source in opponents


def _sources(rows: list[_Row]) -> list[str]:
    """Sources in order of first appearance, so tables keep the order the judgements were written in."""
    ordered: dict[str, None] = {}
    for _, first, second, _ in rows:
        ordered.setdefault(first)
        ordered.setdefault(second)
    return list(ordered)


def source_preferences(judgements: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean preference for each source over all comparisons it appears in, averaged over both positions.

    For source s: ½[mean over judgements with s first of p_first + mean over judgements with s second of
    (1 - p_first)]. 0.5 means the judge neither favours nor disfavours s; a judge that always answers
    "A" gives every source exactly 0.5. This is the per-source "mean preference" of Schaffelder & Gatt
    (arXiv 2511.01490, Experiment 3).
    """
    rows = _valid_rows(judgements)
    return {source: _position_balanced_preference(rows, source, None) for source in _sources(rows)}


def pairwise_matrix(judgements: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean preference of the row source over the column source, both orders averaged.

    ``matrix[r][c]`` = ½[mean p_first when r was first against c + mean (1 - p_first) when r was second
    against c]; so ``matrix[r][c] + matrix[c][r] == 1``. The diagonal is left out (a source is never
    compared with itself) and a pair that was never judged is NaN. The pairwise view of Zheng et al. 2023
    (MT-Bench, arXiv 2306.05685) with Panickssery et al.'s order averaging (arXiv 2404.13076).
    """
    rows = _valid_rows(judgements)
    sources = _sources(rows)
    judged = {frozenset((first, second)) for _, first, second, _ in rows}
    matrix: dict[str, dict[str, float]] = {}
    for row in sources:
        matrix[row] = {}
        for col in sources:
            if col == row:
                continue
            if frozenset((row, col)) in judged:
                matrix[row][col] = _position_balanced_preference(rows, row, {col})
            else:
                matrix[row][col] = math.nan
    return matrix


def position_consistency(judgements: Iterable[Mapping[str, Any]]) -> float:
    """Share of (item, unordered pair) whose verdict names the same winner in both orders.

    The verdict of one judgement is the first source if p_first > 0.5, the second if p_first < 0.5, and
    a tie if p_first == 0.5. A pair is consistent when both orders give the same verdict; a tie in both
    orders counts as consistent (the answer did not depend on the order), a tie in one order only does
    not. Pairs judged in one order only (e.g. a NaN verdict) are left out; NaN if no pair has both.
    Zheng et al. 2023 (MT-Bench, arXiv 2306.05685), the "consistency" of its position-bias analysis.
    """
    verdicts: dict[tuple[Hashable, frozenset[str]], dict[str, str | None]] = {}
    for item, first, second, p_first in _valid_rows(judgements):
        winner = first if p_first > 0.5 else second if p_first < 0.5 else None
        verdicts.setdefault((item, frozenset((first, second))), {})[first] = winner
    complete = [list(by_order.values()) for by_order in verdicts.values() if len(by_order) == 2]
    if not complete:
        return math.nan
    return sum(one == other for one, other in complete) / len(complete)


def self_preference(judgements: Iterable[Mapping[str, Any]], self_source: str) -> float:
    """Self-preference score of the judge for its own source ``self_source``.

    Panickssery, Bowman & Feng 2024 (arXiv 2404.13076): for a pair of the judge's own text x_s and
    another text x_o, SP = ½[P(choose x_s | x_s shown first) + P(choose x_s | x_s shown second)], averaged
    over items and opponents. 0.5 means no self-preference. Equal to ``source_preferences(...)[self_source]``.
    """
    rows = _valid_rows(judgements)
    return _position_balanced_preference(rows, self_source, None)


def self_preference_vs_human(
    judgements: Iterable[Mapping[str, Any]], self_source: str, human_source: str = "human"
) -> float:
    """Self-preference score (:func:`self_preference`) restricted to pairs against the human-written text.

    This isolates how much the judge prefers its own source's text over the human-written reference, the
    comparison Panickssery et al. (arXiv 2404.13076) anchor their analysis on and the one the fine-tuning
    conditions of Schaffelder & Gatt (arXiv 2511.01490, Experiment 3) move most.
    """
    if self_source == human_source:
        raise ValueError(f"self_source and human_source are both {self_source!r}; they must differ")
    rows = _valid_rows(judgements)
    return _position_balanced_preference(rows, self_source, {human_source})


def equal_opportunity_bias(judge_prefers_self: Sequence[bool], human_prefers_self: Sequence[bool]) -> float:
    """Self-preference bias as a violation of Equal Opportunity: P(Y'=1 | Y=1) - P(Y'=0 | Y=0).

    Wataoka, Takahashi & Ri 2024 (arXiv 2410.21819). Over pairs (judge's own text, other text),
    Y = 1 if humans prefer the own text and Y' = 1 if the judge does. The score is the judge's recall on
    pairs humans give to the judge minus its recall on pairs humans give to the other text; it lies in
    [-1, 1], 0 is unbiased and positive means the judge favours itself. Returns NaN when either
    conditioning class is empty (no pair with Y = 1, or none with Y = 0): the bias is then undefined.
    """
    if len(judge_prefers_self) != len(human_prefers_self):
        raise ValueError(
            f"judge_prefers_self has {len(judge_prefers_self)} labels and human_prefers_self "
            f"{len(human_prefers_self)}; give one label of each per pair"
        )
    for name, labels in (
        ("judge_prefers_self", judge_prefers_self),
        ("human_prefers_self", human_prefers_self),
    ):
        bad = [label for label in labels if label not in (0, 1)]
        if bad:
            raise ValueError(f"{name} must hold booleans (or 0/1), found {bad[0]!r}")
    judge_when_human_self = [
        bool(j) for j, h in zip(judge_prefers_self, human_prefers_self, strict=True) if h
    ]
    judge_when_human_other = [
        bool(j) for j, h in zip(judge_prefers_self, human_prefers_self, strict=True) if not h
    ]
    if not judge_when_human_self or not judge_when_human_other:
        return math.nan
    recall_self = sum(judge_when_human_self) / len(judge_when_human_self)
    recall_other = sum(not j for j in judge_when_human_other) / len(judge_when_human_other)
    return recall_self - recall_other


def excess_over_gold(judge_self_win_rate: float, gold_self_win_rate: float) -> float:
    """Self-preference beyond what a gold reference expects: P_judge(self wins) - P_gold(self wins).

    Chen et al. 2025, "Beyond the Surface: Measuring Self-Preference in LLM Judgments"
    (github.com/zhiyuanc2001/self-preference). Gold is human labels or a panel of independent judges;
    positive means the judge gives its own texts more wins than the gold reference does.
    """
    for name, value in (
        ("judge_self_win_rate", judge_self_win_rate),
        ("gold_self_win_rate", gold_self_win_rate),
    ):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a rate in [0, 1], got {value!r}")
    return judge_self_win_rate - gold_self_win_rate


def mean_absolute_scores(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean absolute score per source in the single-text (1-5) setup.

    ``records`` are ``{"item": id, "source": s, "score": expected rating}``, the score typically from
    :func:`synthmix.metrics.first_token.expected_rating`. NaN scores (no mass on any rating token) are skipped; a source
    with only NaN scores gets NaN. Schaffelder & Gatt (arXiv 2511.01490, Experiment 3, absolute-score setup).
    """
    scores: dict[str, list[float]] = {}
    for index, record in enumerate(records):
        missing = [key for key in ("source", "score") if key not in record]
        if missing:
            raise ValueError(f"record #{index} lacks {missing}; each record needs item, source, score")
        score = float(record["score"])
        if math.isinf(score):
            raise ValueError(f"record #{index} has score {score!r}; scores must be finite or NaN")
        values = scores.setdefault(record["source"], [])
        if not math.isnan(score):
            values.append(score)
    return {source: _mean(values) if values else math.nan for source, values in scores.items()}
