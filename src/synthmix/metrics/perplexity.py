"""Perplexity of a response given its prompt, with the prompt tokens masked out of the loss.

Definition (Jelinek et al. 1977; as in Schaffelder & Gatt, arXiv 2511.01490, §4.1 a): for a response with
tokens r_1..r_n after the chat-formatted prompt p,

    NLL = -sum_t log P(r_t | p, r_<t),   perplexity = exp(NLL / n).

Only the response's own tokens are scored: the prompt (system prompt, user turn and the assistant header
that the chat template adds as the generation prompt) conditions the model but never enters the sum. The
paper scores its Llama template's end-of-turn token as well; we do not, because sampled responses that
stopped at `max_new_tokens` never produced one (scoring it would penalise truncation, not the text).

The response is tokenized on its own (no special tokens) and appended to the prompt's token ids, which is
exactly the token sequence a model sees when it generates the response after the generation prompt.

Batches are right-padded: with a causal mask a real token never attends to padding that comes after it, so
padding changes no value. Logits are computed only at the positions that predict response tokens
(`logits_to_keep` with a boolean mask), which keeps memory at (scored tokens x vocabulary) per batch.
torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Sequence
from typing import Any


def encode_for_scoring(
    tokenizer: Any, messages: list[dict[str, str]], response: str, end_of_turn: bool = False
) -> tuple[list[int], list[int]]:
    """Token ids of (prompt, response): the prompt is `messages` in the tokenizer's chat template with the
    generation prompt (the assistant header) appended; the response is tokenized without special tokens."""
    from synthmix.prompts import chat_token_ids

    if end_of_turn:
        raise NotImplementedError("end_of_turn scoring is not available yet")
    prompt_ids = chat_token_ids(tokenizer, messages)
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    return prompt_ids, response_ids


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


def perplexity_from_nll(nll: float, n_tokens: int) -> float | None:
    """exp(nll / n_tokens); None for a response without tokens (perplexity is undefined there)."""
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}.")
    return math.exp(nll / n_tokens) if n_tokens else None


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def response_nll(
    model: Any,
    sequences: Sequence[tuple[list[int], list[int]]],
    batch_size: int = 8,
    pad_token_id: int = 0,
) -> Iterator[tuple[int, float, int]]:
    """Summed negative log-likelihood (natural log) of each response given its prompt.

    `sequences` holds (prompt ids, response ids) pairs; every prompt must have at least one token. Yields
    (index into `sequences`, NLL, number of scored tokens) once per pair, in processing order: pairs are
    sorted by length (longest first) so that batches carry little padding. A pair with an empty response
    yields (index, 0.0, 0) without a forward pass. Computed in float32 from the model's logits.
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
            yield i, 0.0, 0
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
        token_nll = F.cross_entropy(
            logits.float(), torch.tensor(targets, dtype=torch.long, device=logits.device), reduction="none"
        ).cpu()
        offset = 0
        for i in batch:
            n_tokens = len(sequences[i][1])
            yield i, float(token_nll[offset : offset + n_tokens].double().sum()), n_tokens
            offset += n_tokens
