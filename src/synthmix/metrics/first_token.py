"""Reading a judge's answer from the probabilities of its first token.

A judge that is asked for a letter (A/B) or a digit (1-5) is not sampled: the backends' primitive
`next_token_logprobs` gives the log-probabilities of the answer tokens at the first generated position, and
these functions turn them into the verdict. Pure functions over {token string: log-probability}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


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
