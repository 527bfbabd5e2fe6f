"""The LLM-judge runner of the robustness experiment: judge prompts in, per-item scores out.

Schaffelder & Gatt (arXiv:2511.01490), experiment 2, score every response with two LLM-judge prompts: a
harmfulness judge (Qi et al. 2023, arXiv:2310.03693; 1-5, ``#thescore: N``) and a quality judge (MT-Bench
single-answer style, Zheng et al. 2023, arXiv:2306.05685; 1-5, ``Score: N``). The StrongREJECT rubric (Souly
et al. 2024, arXiv:2402.10260) can be added. Prompts, parsers and scores live in ``synthmix.robustness``;
this module decides which rubric applies to which item, runs the judge model through the same resumable
generation layer as every other stage (``synthmix.stages.generate.answer_all``), and turns the replies into
per-item scores. A reply that does not parse gives ``None``: it is never guessed or clipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix.config import RobustnessJudge
from synthmix.io import read_jsonl
from synthmix.prompts import chat_messages
from synthmix.robustness import (
    format_harmfulness_prompt,
    format_quality_prompt,
    format_strongreject_prompt,
    parse_harmfulness,
    parse_quality,
    parse_strongreject,
    strongreject_score,
)
from synthmix.stages.generate import RESPONSES, answer_all

# Which rubric applies to which prompt set. The harmfulness and StrongREJECT prompts tell the judge that the
# request should be refused, which is false for the benign control set, so benign items get quality only.
RUBRIC_PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "harmfulness": ("harmful", "jailbreak"),
    "quality": ("harmful", "jailbreak", "benign"),
    "strongreject": ("harmful", "jailbreak"),
}


def applies(rubric: str, prompt_set: str) -> bool:
    """Whether `rubric` scores items of `prompt_set` (see RUBRIC_PROMPT_SETS)."""
    if rubric not in RUBRIC_PROMPT_SETS:
        raise ValueError(f"unknown rubric {rubric!r}; choose from {', '.join(RUBRIC_PROMPT_SETS)}")
    return prompt_set in RUBRIC_PROMPT_SETS[rubric]


def judge_instruction(item: Mapping[str, Any], jailbreak_instruction: str = "prompt") -> str:
    """The request the judge is shown for one attack record.

    ``"prompt"`` is what the model was sent (for jailbreak items the whole template; the paper's choice);
    ``"harmful_prompt"`` is the bare harmful request inside a jailbreak template (items of other sets have
    none and use their prompt).
    """
    if jailbreak_instruction not in ("prompt", "harmful_prompt"):
        raise ValueError(
            f"jailbreak_instruction must be 'prompt' or 'harmful_prompt', got {jailbreak_instruction!r}"
        )
    if jailbreak_instruction == "harmful_prompt" and item.get("harmful_prompt"):
        return item["harmful_prompt"]
    return item["prompt"]


def judge_prompt(rubric: str, instruction: str, response: str) -> str:
    """The judge prompt of `rubric` for one request and the response to it."""
    if rubric == "harmfulness":
        return format_harmfulness_prompt(instruction, response)
    if rubric == "quality":
        return format_quality_prompt(instruction, response)
    if rubric == "strongreject":
        return format_strongreject_prompt(instruction, response)
    raise ValueError(f"unknown rubric {rubric!r}; choose from {', '.join(RUBRIC_PROMPT_SETS)}")


def parse_judgement(rubric: str, reply: str) -> int | dict[str, int] | None:
    """The score in one judge reply: 1-5 (harmfulness, quality), the StrongREJECT answers, or None."""
    if rubric == "harmfulness":
        return parse_harmfulness(reply)
    if rubric == "quality":
        return parse_quality(reply)
    if rubric == "strongreject":
        return parse_strongreject(reply)
    raise ValueError(f"unknown rubric {rubric!r}; choose from {', '.join(RUBRIC_PROMPT_SETS)}")


def request_id(rubric: str, item_id: str) -> str:
    return f"{rubric}/{item_id}"


def judge_requests(
    items: Sequence[Mapping[str, Any]],
    rubrics: Iterable[str],
    jailbreak_instruction: str = "prompt",
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """One chat request per (rubric, item) where the rubric applies, rubric-major, items in input order.

    Items are attack records (``id``, ``prompt_set``, ``prompt``, ``response``, optional ``harmful_prompt``).
    Request ids are ``<rubric>/<item id>``; ``meta`` carries the rubric and the item id into the judge record.
    """
    rubrics = list(rubrics)
    requests = []
    for rubric in rubrics:
        for item in items:
            if not applies(rubric, item["prompt_set"]):
                continue
            text = judge_prompt(rubric, judge_instruction(item, jailbreak_instruction), item["response"])
            requests.append(
                {
                    "id": request_id(rubric, item["id"]),
                    "messages": chat_messages(text, system_prompt),
                    "meta": {"item_id": item["id"], "rubric": rubric, "prompt_set": item["prompt_set"]},
                }
            )
    return requests


def item_scores(
    items: Sequence[Mapping[str, Any]],
    replies: Mapping[str, str],
    rubrics: Iterable[str],
    read_scores: Mapping[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """Per-item parsed scores: one record per item with a key for each rubric that applies to it.

    ``replies`` maps request ids (``<rubric>/<item id>``) to judge replies. A score is None when the reply
    did not parse. ``read_scores`` (score_from first_token) gives the scores directly instead of parsing. StrongREJECT gives ``strongreject`` (the 0-1 score) and ``strongreject_answers`` (the three
    rubric answers). Items keep their input order.
    """
    rubrics = list(rubrics)
    scored = []
    for item in items:
        record: dict[str, Any] = {
            "id": item["id"],
            "prompt_id": item.get("prompt_id"),
            "prompt_set": item["prompt_set"],
            "category": item.get("category"),
        }
        for rubric in rubrics:
            if not applies(rubric, item["prompt_set"]):
                continue
            key = request_id(rubric, item["id"])
            if key not in (read_scores if read_scores is not None else replies):
                raise ValueError(f"no judge reply for {key!r}; judge every (rubric, item) pair first")
            parsed = read_scores[key] if read_scores is not None else parse_judgement(rubric, replies[key])
            if rubric == "strongreject":
                record["strongreject_answers"] = parsed
                record["strongreject"] = None if parsed is None else strongreject_score(**parsed)
            else:
                record[rubric] = parsed
        scored.append(record)
    return scored


# Prefills for score_from: first_token. The reply format each template asks for, cut just before the number.
SCORE_PREFIX = {"harmfulness": "#thereason: see the response above.\n#thescore:", "quality": "Score:"}
SCORES = ("1", "2", "3", "4", "5")


def first_token_scores(
    requests: Sequence[Mapping[str, Any]],
    out_dir: Path,
    model_dir: Path,
    judge_model: str,
    desc: str = "judge",
) -> dict[str, str]:
    """Score each request from the judge's next-token distribution after the score tag (resumable).

    For judges too small to keep the reply format (a 135M model rarely writes '#thescore: N'), the reply is
    prefilled up to the tag and the score is the probability-weighted mean of the tokens '1'-'5',
    sum_r r P(r) / sum_r P(r), as G-Eval does (Liu et al. 2023, arXiv:2303.16634): a score the judge
    assigns, never one guessed from free text, and continuous, so that items and conditions can differ
    even when the most probable digit is the same for all. Returns {request id: score or None (no mass on
    any digit)}; the written 'response' is '<tag> <score>' for audit, with the probabilities beside it.
    """
    from tqdm.auto import tqdm

    from synthmix.backends.transformers_backend import chat_token_ids, load_model
    from synthmix.io import ResumableRecords, fingerprint
    from synthmix.metrics.preference import first_token_choice_probs
    from synthmix.modelstore import model_revision

    revision = model_revision(model_dir)
    key = fingerprint([dict(r) for r in requests], revision, "first_token", SCORE_PREFIX)
    partial = out_dir.parent / f".{out_dir.name}.partial.jsonl"
    with ResumableRecords(out_dir / RESPONSES, key, partial=partial) as records:
        todo = [r for r in requests if r["id"] not in records.done]
        if todo:
            model, tokenizer = load_model(str(model_dir))
            for request in tqdm(todo, desc=desc, unit="item"):
                rubric = request["meta"]["rubric"]
                ids = chat_token_ids(tokenizer, list(request["messages"]))
                prompt = tokenizer.decode(ids) + SCORE_PREFIX[rubric]
                probs = first_token_choice_probs(model, tokenizer, prompt, SCORES)
                total = sum(probs.values())
                score = sum(int(s) * p for s, p in probs.items()) / total if total > 0 else None
                tag = SCORE_PREFIX[rubric].splitlines()[-1]
                records.add(
                    {
                        **request["meta"],
                        "id": request["id"],
                        "judge_model": judge_model,
                        "response": f"{tag} {score:.3f}" if score is not None else f"{tag} (no mass on 1-5)",
                        "score": score,
                        "score_probabilities": probs,
                        "score_mass": total,
                        "model_revision": revision,
                        "score_from": "first_token",
                    }
                )
        records.publish([r["id"] for r in requests])
    return {r["id"]: r["score"] for r in read_jsonl(out_dir / RESPONSES, required=("id", "score"))}


def run_judge(
    items: Sequence[Mapping[str, Any]],
    out_dir: Path,
    model_dir: Path,
    settings: RobustnessJudge,
    judge_model: str,
    desc: str = "judge",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge every item with every applicable rubric; return (per-item scores, generation counts).

    The judge replies are written, resumably, to ``<out_dir>/responses.jsonl`` (one record per rubric and
    item, with ``item_id``, ``rubric`` and ``judge_model``) by ``answer_all``: a killed run continues where
    it stopped, and the raw replies stay available for audit.
    """
    requests = judge_requests(items, settings.rubrics, settings.jailbreak_instruction, settings.system_prompt)
    if settings.score_from == "first_token":
        read = first_token_scores(requests, out_dir, model_dir, judge_model, desc=desc)
        scored = item_scores(items, {}, settings.rubrics, read_scores=read)
        return scored, {"records": len(read), "score_from": "first_token"}
    counts = answer_all(
        requests, out_dir, model_dir, settings.generation, extra={"judge_model": judge_model}, desc=desc
    )
    replies = {r["id"]: r["response"] for r in read_jsonl(out_dir / RESPONSES, required=("id", "response"))}
    return item_scores(items, replies, settings.rubrics), counts
