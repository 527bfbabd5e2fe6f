"""The self-preference metrics of one judge: its verdicts read from first-token probabilities, then
aggregated per source (Schaffelder & Gatt, arXiv 2511.01490, Experiment 3). Pure functions; the judging is
the preference@ stage's (`synthmix.preference`).

`read_judgements` turns the judge's records (log-probabilities of "A"/"B", or of "1".."5") into verdicts:
``p_first`` = P(A) / (P(A) + P(B)) (`metrics.preference.choice_probability`), the absolute score the expected
rating. `summarise` gives the metrics file's values.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix.config import HUMAN, JudgeSampling, Params, ParamsError
from synthmix.io import DataError, read_jsonl
from synthmix.metrics.first_token import expected_rating, option_probabilities, paper_option_probabilities
from synthmix.metrics.preference import (
    choice_probability,
    equal_opportunity_bias,
    excess_over_gold,
    mean_absolute_scores,
    pairwise_matrix,
    position_consistency,
    preference_by_position,
    self_preference,
    self_preference_vs_human,
)
from synthmix.preference import CHOICES, RATINGS


def read_options(record: Mapping[str, Any], options: Sequence[str], definitions: str, sampling: Any) -> dict:
    """P(option) for each answer option of one judge record, under the definition set: `paper`, the bare
    token's probability after the sampling warpers (`sampling`: params preference.judge_sampling); `synthmix`,
    the raw probability of its bare and space-prefixed forms."""
    if definitions == "paper":
        return paper_option_probabilities(
            record["top"], options, sampling.temperature, sampling.top_k, sampling.top_p
        )
    return option_probabilities(record["logprobs"], options)


def read_pairwise(
    records: Sequence[Mapping[str, Any]], definitions: str, sampling: Any = None
) -> list[dict[str, Any]]:
    """Verdicts from pairwise judge records: {item, first, second, prob_a, prob_b, p_first}; p_first is
    P(A) / (P(A) + P(B)), NaN where both are 0 (the normalisation is undefined: such a judgement counts in
    `undefined_judgements` and is left out of every aggregate, never read as 0.5)."""
    sampling = sampling or JudgeSampling()
    verdicts = []
    for record in records:
        probs = read_options(record, CHOICES, definitions, sampling)
        verdicts.append(
            {
                "item": record["item"],
                "first": record["first"],
                "second": record["second"],
                "prob_a": probs["A"],
                "prob_b": probs["B"],
                "p_first": choice_probability(probs["A"], probs["B"]),
            }
        )
    return verdicts


def read_absolute(
    records: Sequence[Mapping[str, Any]], definitions: str, sampling: Any = None
) -> list[dict[str, Any]]:
    """Absolute scores from single-text judge records: {item, source, score}, the expected rating over "1".."5"
    renormalised over those tokens (absolute_ratings_analysis.ipynb); NaN where no digit has probability."""
    sampling = sampling or JudgeSampling()
    return [
        {
            "item": record["item"],
            "source": record["source"],
            "score": expected_rating(read_options(record, RATINGS, definitions, sampling), RATINGS),
        }
        for record in records
    ]


def _finite_or_none(value: float | None) -> float | None:
    """JSON metrics hold null, not NaN, for an undefined value."""
    return None if value is None or math.isnan(value) else float(value)


def _judged_both_ways(
    judgements: Sequence[Mapping[str, Any]], source: str, opponents: set[str] | None
) -> bool:
    """Whether `source` has a verdict (not NaN) in first and in second position against `opponents`."""
    positions = {
        "first" if j["first"] == source else "second"
        for j in judgements
        if not math.isnan(j["p_first"])
        and source in (j["first"], j["second"])
        and (opponents is None or ({j["first"], j["second"]} - {source}) <= opponents)
    }
    return positions == {"first", "second"}


def preference_by_source(
    judgements: Sequence[Mapping[str, Any]], sources: Sequence[str]
) -> dict[str, float | None]:
    """Mean position-balanced preference of each source (metrics.preference.self_preference for each source).

    A source the judge never gave a verdict on in one of the positions (all NaN) gets None.
    """
    return {
        source: self_preference(judgements, source) if _judged_both_ways(judgements, source, None) else None
        for source in sources
    }


def gold_metrics(
    judgements: Sequence[Mapping[str, Any]], gold: Sequence[Mapping[str, Any]], self_source: str
) -> dict[str, Any]:
    """Equal-opportunity bias and excess over gold on the labelled pairs that involve the judge's own source.

    For each labelled (item, self_source vs other) pair that was judged in both orders, the judge prefers
    its own text when its position-balanced preference for it is above 0.5 (Panickssery et al.); exact
    ties are left out. Y = the human label names self_source. EO bias = P(Y'=1|Y=1) - P(Y'=0|Y=0)
    (Wataoka et al., arXiv 2410.21819); excess over gold = judge's self win rate - human self win rate on
    the same pairs (Chen et al. 2025).
    """
    judge_self, human_self = [], []
    for label in gold:
        pair = set(label["sources"])
        if self_source not in pair:
            continue
        rows = [j for j in judgements if j["item"] == label["item"] and {j["first"], j["second"]} == pair]
        if not _judged_both_ways(rows, self_source, pair - {self_source}):
            continue
        preference = self_preference(rows, self_source)
        if preference == 0.5:
            continue
        judge_self.append(preference > 0.5)
        human_self.append(label["winner"] == self_source)
    if not judge_self:
        return {"gold_pairs": 0, "equal_opportunity_bias": None, "excess_over_gold": None}
    return {
        "gold_pairs": len(judge_self),
        "equal_opportunity_bias": _finite_or_none(equal_opportunity_bias(judge_self, human_self)),
        "excess_over_gold": excess_over_gold(
            sum(judge_self) / len(judge_self), sum(human_self) / len(human_self)
        ),
    }


def summarise(
    judgements: Sequence[Mapping[str, Any]],
    absolute: Sequence[Mapping[str, Any]],
    sources: Sequence[str],
    self_source: str,
    gold: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The metrics of one judge: preference per source, self-preference, consistency, absolute scores.

    Keys: `preference.<source>`, `self_preference` (= preference of self_source), `self_preference_vs_human`
    (pairs against the human reference only; None without human candidates), `self_preference_shown_first`
    and `self_preference_shown_second` (its two orders apart), `position_consistency`,
    `choice_mass` (mean P(A)+P(B): how much the judge answers with a letter at all), `absolute_score.<source>`
    and, with gold labels, `equal_opportunity_bias`, `excess_over_gold`, `gold_pairs`.
    """
    preference = preference_by_source(judgements, sources)
    vs_human = None
    if HUMAN in sources and _judged_both_ways(judgements, self_source, {HUMAN}):
        vs_human = self_preference_vs_human(judgements, self_source, HUMAN)
    by_position = (None, None)
    if _judged_both_ways(judgements, self_source, None):
        by_position = preference_by_position(judgements, self_source)
    metrics: dict[str, Any] = {
        "preference": preference,
        "self_preference": preference[self_source],
        "self_preference_shown_first": by_position[0],
        "self_preference_shown_second": by_position[1],
        "self_preference_vs_human": vs_human,
        "position_consistency": _finite_or_none(position_consistency(judgements)),
        "choice_mass": sum(j["prob_a"] + j["prob_b"] for j in judgements) / len(judgements),
        "undefined_judgements": sum(math.isnan(j["p_first"]) for j in judgements),
    }
    if absolute:
        scores = mean_absolute_scores(absolute)
        metrics["absolute_score"] = {source: _finite_or_none(scores[source]) for source in sources}
    if gold is not None:
        metrics.update(gold_metrics(judgements, gold, self_source))
    return metrics


def matrix_without_nan(judgements: Sequence[Mapping[str, Any]], sources: Sequence[str]) -> dict[str, dict]:
    """metrics.preference.pairwise_matrix in candidate order, NaN (pair never judged) written as null."""
    matrix = pairwise_matrix([j for j in judgements if not math.isnan(j["p_first"])])
    return {
        row: {col: _finite_or_none(matrix.get(row, {}).get(col, math.nan)) for col in sources if col != row}
        for row in sources
    }


def sources_table(metrics: Mapping[str, Any], sources: Sequence[str], self_source: str) -> str:
    """CSV for `dvc plots` (bar chart): source, preference, absolute_score, is_self."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "preference", "absolute_score", "is_self"])
    for source in sources:
        absolute = metrics.get("absolute_score", {}).get(source)
        writer.writerow([source, metrics["preference"][source], absolute, source == self_source])
    return buffer.getvalue()


def resolve_self_source(params: Params, sources: Sequence[str]) -> str:
    """`preference.self_source`, or `target.own_source`; it must be among `sources`, the candidates judged.

    Params already checks both against params.yaml; this checks them against a judgements folder, whose
    candidate set may come from an earlier run.
    """
    self_source = params.preference.self_source or params.target.own_source
    key = "preference.self_source" if params.preference.self_source else "target.own_source"
    if self_source not in sources:
        raise ParamsError(
            f"{key}: '{self_source}' is the judge's own source but not a candidate "
            f"(preference.sources: {', '.join(sources)}); add it to preference.sources"
        )
    return self_source


def read_gold_labels(path: str | Path) -> list[dict[str, Any]]:
    """Human pairwise labels: jsonl of `{"item", "sources": [a, b], "winner"}` with winner one of the two."""
    records = read_jsonl(path, required=("item", "sources", "winner"))
    for number, record in enumerate(records, start=1):
        pair = record["sources"]
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]):
            raise DataError(
                f"{path}: record {number}: 'sources' must list two different sources, got {pair!r}"
            )
        if record["winner"] not in pair:
            raise DataError(f"{path}: record {number}: winner {record['winner']!r} is not one of {pair}")
    return records
