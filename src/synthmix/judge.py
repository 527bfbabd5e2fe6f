"""The robustness judge: judge requests in, judge records out (the service behind judge@<condition>-<seed>).

Which rubric applies to which item, and each rubric's prompt and parser, come from the rubric registry
(`synthmix.rubrics`). The judge runs on any backend, through the one resumable runner:

- `score_from: text` (the paper's): the judge writes a reply (`generation.answer_all`, backend `generate`);
  the robustness stage parses the score from it;
- `score_from: first_token`: the reply is prefilled up to the score tag and the backend's
  `next_token_logprobs` gives the log-probabilities of the scale's tokens; the robustness stage turns them
  into the probability-weighted mean score (G-Eval).

Either way the judge stage stores what the model said, and every reading of it (parsing, scores, refusal,
danger zone: `metrics.robustness.read_scores`) is the robustness stage's: changing how replies are read never
reruns the judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synthmix import paths, rubrics
from synthmix.backends import load_backend, require
from synthmix.config import RobustnessJudge
from synthmix.generation import answer_all
from synthmix.io import fingerprint
from synthmix.modelstore import model_revision
from synthmix.prompts import answer_forms, chat_messages
from synthmix.rubrics import request_id
from synthmix.runner import run_resumable


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


def judge_requests(
    items: Sequence[Mapping[str, Any]],
    rubric_names: Iterable[str],
    jailbreak_instruction: str = "prompt",
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """One chat request per (rubric, item) where the rubric applies, rubric-major, items in input order.

    Items are attack records (``id``, ``prompt_set``, ``prompt``, ``response``, optional ``harmful_prompt``).
    Request ids are ``<rubric>/<item id>``; ``meta`` carries the rubric and the item id into the record.
    """
    requests = []
    for name in rubric_names:
        rubric = rubrics.get(name)
        for item in items:
            if item["prompt_set"] not in rubric.prompt_sets:
                continue
            text = rubric.prompt(judge_instruction(item, jailbreak_instruction), item["response"])
            requests.append(
                {
                    "id": request_id(name, item["id"]),
                    "messages": chat_messages(text, system_prompt),
                    "meta": {"item_id": item["id"], "rubric": name, "prompt_set": item["prompt_set"]},
                }
            )
    return requests


def run_judge(
    items: Sequence[Mapping[str, Any]],
    out_dir: Path,
    model_dir: Path,
    settings: RobustnessJudge,
    judge_model: str,
    desc: str = "judge",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Judge every item with every applicable rubric into `<out_dir>/responses.jsonl` (one record per rubric
    and item, with ``item_id``, ``rubric``, ``prompt_set`` and ``judge_model``). Returns (counts, volatile)."""
    requests = judge_requests(items, settings.rubrics, settings.jailbreak_instruction, settings.system_prompt)
    if settings.score_from == "text":
        return answer_all(
            requests, out_dir, model_dir, settings.generation, extra={"judge_model": judge_model}, desc=desc
        )
    revision = model_revision(model_dir)
    for request in requests:
        rubric = rubrics.get(request["meta"]["rubric"])
        request["prefill"] = rubric.score_prefix
        request["tokens"] = answer_forms(rubric.scale)
        request["prompt_overflow"] = settings.generation.prompt_overflow
    key = fingerprint([dict(r) for r in requests], revision, "first_token", settings.generation.backend)
    by_id = {r["id"]: r for r in requests}

    def compute(todo: Sequence[Mapping[str, Any]], done: frozenset[str]):
        backend = load_backend(settings.generation.backend, str(model_dir))
        for result in require(backend, "next_token_logprobs")(list(todo), done, settings.generation):
            yield {
                **by_id[result["id"]]["meta"],
                "id": result["id"],
                "judge_model": judge_model,
                "model_revision": revision,
                "score_from": "first_token",
                "prefill": by_id[result["id"]]["prefill"],
                "n_prompt_tokens": result["n_prompt_tokens"],
                "logprobs": result["tokens"],
            }

    finished = run_resumable(requests, out_dir / paths.RESPONSES, key, compute, desc=desc, unit="judgement")
    return {"records": len(finished.records), "score_from": "first_token"}, {"resumed": finished.resumed}
