"""Reading a judge's answer from the probabilities of its first token.

A judge that is asked for a letter (A/B) or a digit (1-5) is not sampled: the backends' primitive
`next_token_logprobs` gives the log-probabilities of the answer tokens (and of the most likely tokens) at the
first generated position, and these functions turn them into the verdict, in two readings:

- `paper_option_probabilities`: as the paper's code, the probability of the bare option token after the
  sampling warpers (temperature, top-k, top-p) that generate() applies (exp_3/pairwise_rankings);
- `option_probabilities` (`synthmix`): the raw probability, summed over the bare and the space-prefixed
  forms, which is defined for every judgement (the paper's reading leaves both letters at 0 when neither
  survives top-p, and its normalisation P(A) / (P(A) + P(B)) is then undefined).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def option_probabilities(logprobs: Mapping[str, float | None], options: Sequence[str]) -> dict[str, float]:
    """P(option) = the summed probability of its forms (bare and space-prefixed, `prompts.answer_forms`) that
    are single tokens.

    `logprobs` maps token strings to log-probabilities (None: not a single token, or the same token as an
    earlier form; see the backends' `next_token_logprobs`). Raises ValueError when an option has no form that
    is a single token: its probability cannot be read.
    """
    if len(set(options)) != len(options):
        raise ValueError(f"options {list(options)} repeat a label; give each answer label once")
    probs = {}
    for option in options:
        forms = [logprobs.get(form) for form in (option, " " + option)]
        known = [lp for lp in forms if lp is not None]
        if not known:
            raise ValueError(
                f"option {option!r} is not a single token of the judge's vocabulary (neither {option!r} nor "
                f"{' ' + option!r}); use answer labels that encode to one token, such as 'A'/'B' or digits"
            )
        probs[option] = sum(math.exp(lp) for lp in known)
    return probs


def expected_rating(probs: Mapping[str, float], ratings: Sequence[str]) -> float:
    """Expected rating from the first-token distribution: sum_r r P(r) / sum_r P(r) (G-Eval, Liu et al. 2023,
    arXiv:2303.16634; the absolute scores of Schaffelder & Gatt, Experiment 3). NaN when no rating token has
    any probability."""
    total = sum(probs[r] for r in ratings)
    if total == 0.0:
        return math.nan
    return sum(float(r) * probs[r] for r in ratings) / total


def processed_probabilities(
    top: Sequence[Sequence[Any]], temperature: float, top_k: int, top_p: float
) -> dict[str, float]:
    """The first token's probabilities after generate()'s sampling warpers, from its most likely tokens.

    The paper's self-preference judge read P("A") and P("B") from `generate(..., output_scores=True)`, whose
    scores have passed transformers' warpers in this order: temperature (divide by `temperature`), top-k (keep
    the tokens whose score is at least the k-th largest), top-p (sort ascending, drop the tokens whose
    cumulative probability is at most 1 - `top_p`, always keep the most likely). This reproduces the same
    steps on `top`, the judge's `[token string, log-probability]` pairs of its most likely tokens: exact when
    `top` holds at least `top_k` tokens, since no other token survives top-k. Tokens removed get probability
    0; strings that several tokens decode to are summed. Raises ValueError when `top` is shorter than `top_k`.
    """
    if len(top) < top_k:
        raise ValueError(
            f"the judge record holds its {len(top)} most likely first tokens, fewer than top_k={top_k}: the "
            "processed probabilities cannot be computed exactly; lower preference.judge_sampling.top_k"
        )
    scores = np.array([float(logprob) for _, logprob in top], dtype=np.float64) / temperature
    kth = np.sort(scores)[::-1][top_k - 1]
    keep = scores >= kth
    order = np.argsort(scores, kind="stable")  # ascending, as transformers sorts
    kept_sorted = np.where(keep[order], scores[order], -np.inf)
    cumulative = np.cumsum(_softmax(kept_sorted))
    drop_sorted = cumulative <= 1.0 - top_p
    drop_sorted[-1] = False  # min_tokens_to_keep = 1: the most likely token stays
    drop = np.zeros(len(scores), dtype=bool)
    drop[order] = drop_sorted
    final = np.where(keep & ~drop, scores, -np.inf)
    probs = _softmax(final)
    out: dict[str, float] = {}
    for (token, _), prob in zip(top, probs, strict=True):
        out[str(token)] = out.get(str(token), 0.0) + float(prob)
    return out


def _softmax(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    if not finite.any():
        return np.zeros_like(scores)
    shifted = np.where(finite, np.exp(scores - scores[finite].max()), 0.0)
    return shifted / shifted.sum()


def paper_option_probabilities(
    top: Sequence[Sequence[Any]], options: Sequence[str], temperature: float, top_k: int, top_p: float
) -> dict[str, float]:
    """P(option) as the paper read it: the processed probability (`processed_probabilities`) of the bare
    option token ("A", not " A"); 0 when it did not survive top-k/top-p."""
    processed = processed_probabilities(top, temperature, top_k, top_p)
    return {option: processed.get(option, 0.0) for option in options}
