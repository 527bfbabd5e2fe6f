"""preference@<condition>-<seed>: the condition's model judges candidate texts from every source; self-preference bias.

Schaffelder & Gatt (arXiv 2511.01490), Experiment 3, on the held-out instruction prompts: for each sampled
test item the candidates are every source's response and the human reference. The judge (the condition's
model: the base target, or the base plus the condition's adapter) sees two candidates, "Text A" and
"Text B", without the prompt, and the verdict is read from its first-token probabilities,
P(A) / (P(A) + P(B)). Every pair of candidate sources is judged in both orders. Each candidate is also rated
alone on a 1-5 scale (expected rating from the first-token distribution).

preference@<condition>-<seed> (`main`) writes `<out>/judgements.jsonl` (one record per item, pair and order),
`<out>/absolute.jsonl` (one per item and source) and `<out>/manifest.json`. Judging is resumable: finished
records wait in hidden `.partial.jsonl` files beside the output folder until every judgement is done.

preference_metrics@<condition>-<seed> (`metrics_main`) turns them into the metrics (`<metrics>/metrics.json`,
DVCLive), the pairwise matrix (`<metrics>/matrix.json`) and a per-source table for `dvc plots`
(`<metrics>/sources.csv`). It is a separate stage so that changing the self-source or the gold labels does
not rerun the judging.

The equal-opportunity bias (Wataoka et al., arXiv 2410.21819) and the excess over gold need human pairwise
labels, which the instruction data does not have: they are computed only when `preference.gold_labels`
names a jsonl of `{"item", "sources": [a, b], "winner"}` records, and left out of the metrics otherwise.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix.config import (
    HUMAN,
    Params,
    ParamsError,
    Preference,
    load_run_params,
    run_stage,
)
from synthmix.io import (
    DataError,
    ResumableRecords,
    atomic_write_text,
    fingerprint,
    read_json,
    read_jsonl,
    sha256_file,
    write_json,
)
from synthmix.metrics.preference import (
    choice_probability,
    equal_opportunity_bias,
    excess_over_gold,
    first_token_choice_probs,
    first_token_rating_expectation,
    mean_absolute_scores,
    pairwise_matrix,
    position_consistency,
    self_preference,
    self_preference_vs_human,
)
from synthmix.modelstore import model_revision
from synthmix.provenance import MANIFEST, Run
from synthmix.stages.generate import RESPONSES
from synthmix.stages.sample import adapter_or_none

JUDGEMENTS = "judgements.jsonl"
ABSOLUTE = "absolute.jsonl"
MATRIX = "matrix.json"
SOURCES_TABLE = "sources.csv"
RATINGS = ("1", "2", "3", "4", "5")


# --------------------------------------------------------------------------------------------------------
# Settings and candidates
# --------------------------------------------------------------------------------------------------------


def candidate_sources(params: Params) -> list[str]:
    """`preference.sources`, or every source plus the human reference (names checked by Params)."""
    return list(params.preference.sources or [*params.sources, HUMAN])


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


def select_items(ids: Sequence[str], n_items: int | None, seed: int) -> list[str]:
    """A seeded sample of `n_items` ids (all of them when None or larger), kept in their original order."""
    if n_items is None or n_items >= len(ids):
        return list(ids)
    chosen = set(random.Random(seed).sample(list(ids), n_items))
    return [item for item in ids if item in chosen]


def load_candidates(
    prepared: str | Path, generated: str | Path, sources: Sequence[str], settings: Preference
) -> list[dict[str, Any]]:
    """The sampled test items, each `{"item": id, "texts": {source: text}}`, one text per candidate source.

    Model sources give their response to the test prompt (data/generated/<source>/responses.jsonl, split
    "test"); `human` gives the reference response of data/prepared/test.jsonl.
    """
    test = read_jsonl(Path(prepared) / "test.jsonl", required=("id", "response"))
    texts: dict[str, dict[str, str]] = {HUMAN: {r["id"]: r["response"] for r in test}}
    for source in sources:
        if source == HUMAN:
            continue
        path = Path(generated) / source / RESPONSES
        records = read_jsonl(path, required=("prompt_id", "split", "response"))
        texts[source] = {r["prompt_id"]: r["response"] for r in records if r["split"] == "test"}
        missing = [r["id"] for r in test if r["id"] not in texts[source]]
        if missing:
            raise DataError(
                f"{path}: no test response for {len(missing)} of the {len(test)} test prompts "
                f"(e.g. {missing[:3]}); rerun generate@{source}"
            )
    items = select_items([r["id"] for r in test], settings.n_items, settings.seed)
    return [{"item": item, "texts": {s: texts[s][item] for s in sources}} for item in items]


# --------------------------------------------------------------------------------------------------------
# Judge prompts
# --------------------------------------------------------------------------------------------------------


def pairwise_messages(text_a: str, text_b: str, settings: Preference) -> list[dict[str, str]]:
    """The paper's pairwise judge input: system prompt, then "<label> A: ...\\n<label> B: ..." (no prompt)."""
    label = settings.text_label
    return [
        {"role": "system", "content": settings.pairwise_system_prompt},
        {"role": "user", "content": f"{label} A: {text_a}\n{label} B: {text_b}"},
    ]


def absolute_messages(text: str, settings: Preference) -> list[dict[str, str]]:
    """The absolute-score judge input: the rating system prompt and the text alone."""
    return [
        {"role": "system", "content": settings.absolute_system_prompt},
        {"role": "user", "content": text},
    ]


def pairwise_requests(
    candidates: list[dict[str, Any]], sources: Sequence[str], settings: Preference
) -> list[dict]:
    """One request per item, unordered pair of sources and order: every pair is judged both ways."""
    requests = []
    for candidate in candidates:
        texts = candidate["texts"]
        for one, other in itertools.combinations(sources, 2):
            for first, second in ((one, other), (other, one)):
                requests.append(
                    {
                        "id": f"{candidate['item']}|{first}|{second}",
                        "item": candidate["item"],
                        "first": first,
                        "second": second,
                        "messages": pairwise_messages(texts[first], texts[second], settings),
                    }
                )
    return requests


def absolute_requests(
    candidates: list[dict[str, Any]], sources: Sequence[str], settings: Preference
) -> list[dict]:
    return [
        {
            "id": f"{candidate['item']}|{source}",
            "item": candidate["item"],
            "source": source,
            "messages": absolute_messages(candidate["texts"][source], settings),
        }
        for candidate in candidates
        for source in sources
    ]


# --------------------------------------------------------------------------------------------------------
# Judging (model time: resumable)
# --------------------------------------------------------------------------------------------------------


class Judge:
    """The condition's model, loaded on first use (a fully resumed run never loads it)."""

    def __init__(self, model_dir: Path, adapter_dir: Path | None):
        self.model_dir, self.adapter_dir = model_dir, adapter_dir
        self._loaded: tuple[Any, Any] | None = None

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from synthmix.backends.transformers_backend import load_model

            self._loaded = load_model(
                str(self.model_dir), str(self.adapter_dir) if self.adapter_dir else None
            )
        return self._loaded

    def prompt(self, messages: list[dict[str, str]]) -> tuple[str, int]:
        """The chat-formatted text (generation prompt included) and its length in tokens."""
        model, tokenizer = self._model()
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        n_tokens = len(tokenizer.encode(text, add_special_tokens=False))
        context = getattr(model.config, "max_position_embeddings", None)
        if context is not None and n_tokens > context:
            raise DataError(
                f"a judge prompt has {n_tokens} tokens, more than the judge's {context}-token context; "
                "shorten the candidates (data.max_response_chars, generation.max_new_tokens)"
            )
        return text, n_tokens

    def choice(self, messages: list[dict[str, str]]) -> dict[str, float]:
        text, n_tokens = self.prompt(messages)
        probs = first_token_choice_probs(*self._model(), text, ("A", "B"))
        p_first = choice_probability(probs["A"], probs["B"])
        return {"p_first": p_first, "prob_a": probs["A"], "prob_b": probs["B"], "n_prompt_tokens": n_tokens}

    def rating(self, messages: list[dict[str, str]]) -> dict[str, float]:
        text, n_tokens = self.prompt(messages)
        return {
            "score": first_token_rating_expectation(*self._model(), text, RATINGS),
            "n_prompt_tokens": n_tokens,
        }


def judge_all(
    requests: list[dict[str, Any]],
    path: Path,
    partial: Path,
    key: str,
    score: Any,
    keep: Sequence[str],
    desc: str,
) -> tuple[list[dict[str, Any]], int]:
    """Score every request not yet in the partial file, publish `path`; return the records and how many resumed.

    `score(messages)` returns the fields to add to a record; `keep` names the request fields copied to it.
    """
    from tqdm.auto import tqdm

    with ResumableRecords(path, key, partial=partial) as records:
        if records.resumed:
            print(f"{desc}: resuming, {records.resumed} of {len(requests)} already judged")
        todo = [r for r in requests if r["id"] not in records.done]
        for request in tqdm(todo, desc=desc, unit="judgement", disable=not todo):
            records.add({"id": request["id"], **{k: request[k] for k in keep}, **score(request["messages"])})
        records.publish([r["id"] for r in requests])
        return [records.records[r["id"]] for r in requests], records.resumed


def adapter_fingerprint(adapter_dir: Path | None) -> str | None:
    """A hash of the adapter's files: a retrained adapter at the same path must not reuse old judgements."""
    if adapter_dir is None:
        return None
    files = sorted(p for p in adapter_dir.rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(adapter_dir)), sha256_file(p)) for p in files])


# --------------------------------------------------------------------------------------------------------
# Metrics (pure)
# --------------------------------------------------------------------------------------------------------


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
    (pairs against the human reference only; None without human candidates), `position_consistency`,
    `choice_mass` (mean P(A)+P(B): how much the judge answers with a letter at all), `absolute_score.<source>`
    and, with gold labels, `equal_opportunity_bias`, `excess_over_gold`, `gold_pairs`.
    """
    preference = preference_by_source(judgements, sources)
    vs_human = None
    if HUMAN in sources and _judged_both_ways(judgements, self_source, {HUMAN}):
        vs_human = self_preference_vs_human(judgements, self_source, HUMAN)
    metrics: dict[str, Any] = {
        "preference": preference,
        "self_preference": preference[self_source],
        "self_preference_vs_human": vs_human,
        "position_consistency": _finite_or_none(position_consistency(judgements)),
        "choice_mass": sum(j["prob_a"] + j["prob_b"] for j in judgements) / len(judgements),
        "undecided_judgements": sum(math.isnan(j["p_first"]) for j in judgements),
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


# --------------------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------------------


def main(
    condition: str,
    seed: int,
    out: str,
    adapter: str,
    prepared: str = "data/prepared",
    generated: str = "data/generated",
    models: str = "models/base",
    params_file: str = "params.yaml",
) -> None:
    """preference@<condition>-<seed>: judge every pair of candidates in both orders, and each alone."""
    params = load_run_params(params_file, condition, seed)
    settings = params.preference
    sources = candidate_sources(params)
    judging = settings.model_dump(exclude={"self_source", "gold_labels"})
    run = Run(
        run_stage("preference", condition, seed),
        {"preference": judging, "target": {"model": params.target.model}, "seed": seed},
    )
    candidates = load_candidates(prepared, generated, sources, settings)
    model_dir = Path(models) / params.target.model
    adapter_dir = adapter_or_none(adapter)
    judge = Judge(model_dir, adapter_dir)
    identity = (model_revision(model_dir), adapter_fingerprint(adapter_dir))
    out_dir = Path(out)

    pairs = pairwise_requests(candidates, sources, settings)
    judgements, resumed = judge_all(
        pairs,
        out_dir / JUDGEMENTS,
        out_dir.parent / f".{out_dir.name}.judgements.partial.jsonl",
        fingerprint(identity, [(r["id"], r["messages"]) for r in pairs]),
        judge.choice,
        keep=("item", "first", "second"),
        desc=run.stage,
    )
    absolute: list[dict[str, Any]] = []
    if settings.absolute_scores:
        ratings = absolute_requests(candidates, sources, settings)
        absolute, resumed_absolute = judge_all(
            ratings,
            out_dir / ABSOLUTE,
            out_dir.parent / f".{out_dir.name}.absolute.partial.jsonl",
            fingerprint(identity, [(r["id"], r["messages"]) for r in ratings]),
            judge.rating,
            keep=("item", "source"),
            desc=f"{run.stage} (absolute)",
        )
        resumed += resumed_absolute
    run.write(
        out_dir,
        condition=condition,
        seed=seed,
        judge_model=identity[0],
        adapter=str(adapter_dir) if adapter_dir else None,
        sources=sources,
        items=[c["item"] for c in candidates],
        counts={"judgements": len(judgements), "absolute": len(absolute), "resumed": resumed},
    )
    print(
        f"{run.stage}: {len(candidates)} items x {len(sources)} sources: {len(judgements)} pairwise "
        f"and {len(absolute)} absolute judgements ({resumed} resumed) -> {out_dir}"
    )


def metrics_main(
    condition: str, seed: int, judgements: str, metrics: str, params_file: str = "params.yaml"
) -> None:
    """preference_metrics@<condition>-<seed>: the self-preference metrics from one run's judgements.

    A separate stage so that changing the self-source or the gold labels does not rerun the judging.
    """
    params = load_run_params(params_file, condition, seed)
    folder = Path(judgements)
    manifest = read_json(folder / MANIFEST)
    sources = manifest["sources"]
    self_source = resolve_self_source(params, sources)
    settings = params.preference
    gold = read_gold_labels(settings.gold_labels) if settings.gold_labels else None
    pairwise = read_jsonl(
        folder / JUDGEMENTS, required=("item", "first", "second", "p_first", "prob_a", "prob_b")
    )
    # judge_all writes NaN (a judge with no mass on either letter) as JSON NaN, which json reads back.
    absolute = (
        read_jsonl(folder / ABSOLUTE, required=("item", "source", "score"))
        if (folder / ABSOLUTE).exists()
        else []
    )
    summary = summarise(pairwise, absolute, sources, self_source, gold)

    from dvclive import Live

    metrics_dir = Path(metrics)
    with Live(str(metrics_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for key, value in summary.items():
            live.summary[key] = value
    write_json(metrics_dir / MATRIX, matrix_without_nan(pairwise, sources))
    atomic_write_text(metrics_dir / SOURCES_TABLE, sources_table(summary, sources, self_source))
    shown = ", ".join(f"{s} {v:.3f}" if v is not None else f"{s} -" for s, v in summary["preference"].items())
    print(
        f"{run_stage('preference_metrics', condition, seed)}: mean preference {shown}; self-preference ({self_source}) "
        f"{summary['self_preference']}; position consistency {summary['position_consistency']} -> {metrics_dir}"
    )
