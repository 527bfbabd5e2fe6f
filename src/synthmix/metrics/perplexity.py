"""Perplexity of a response given its prompt, with the prompt tokens masked out of the loss.

Definition (Jelinek et al. 1977; as in Schaffelder & Gatt, arXiv 2511.01490, §4.1 a): for a response with
tokens r_1..r_n after the chat-formatted prompt p,

    NLL = -sum_t log P(r_t | p, r_<t),   perplexity = exp(NLL / n).

The prompt (system prompt, user turn and the assistant header that the chat template adds as the generation
prompt) conditions the model but never enters the sum. What is scored depends on the definition set:

- `paper` (exp_1/metric_calculation/perplexity_2/perplexity.py, and perplexity/perplexity.py for PPL-v1):
  every token of the whole conversation after the generation prompt, i.e. the response and the template's
  end-of-turn tokens (Llama-3.1: `<|eot_id|>`; ChatML: `<|im_end|>` and the newline after it);
- `synthmix`: the response's tokens only, because a sampled response cut off at `max_new_tokens` never wrote
  an end of turn, and scoring one would penalise the cut, not the text.

The model pass scores both at once (`synthmix.backends.scoring.encode_for_scoring` splits the completion into
the response's tokens and the end-of-turn tokens; the backends return `nll` and `nll_end`), so the definition
is chosen by the metric stage (`perplexity`). The authors' code also rounds each token's log-probability to 5 decimals in bf16; we keep
float32 log-probabilities unrounded (a difference below 1e-5 in log space).

"""

from __future__ import annotations

import math
from typing import Any


def perplexity(record: dict[str, Any], definitions: str = "paper") -> float | None:
    """One response's perplexity from its scored record (`nll`, `n_tokens`, `nll_end`, `n_end`): over the
    response and its end-of-turn tokens (`paper`), or over the response's tokens only (`synthmix`)."""
    if definitions == "paper":
        return perplexity_from_nll(record["nll"] + record["nll_end"], record["n_tokens"] + record["n_end"])
    return perplexity_from_nll(record["nll"], record["n_tokens"])


def perplexity_from_nll(nll: float, n_tokens: int) -> float | None:
    """exp(nll / n_tokens); None for a response without tokens (perplexity is undefined there)."""
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}.")
    return math.exp(nll / n_tokens) if n_tokens else None
