"""Text pre-processing shared by the diversity metrics: sentences, words, markdown, seeded samples.

Follows Schaffelder & Gatt (arXiv 2511.01490), experiment 1, and their code
(maxschaffelder/synthetic_data_diversity). nltk is used without ``nltk_data`` (which cannot be downloaded
offline): Punkt with its default, untrained parameters, and a regex word tokenizer of our own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

# Word rule shared by distinct-n and Heaps' law: lowercase, then maximal runs of word characters (letters,
# digits, underscore), keeping an apostrophe or hyphen *between* word characters inside the token.
_WORD_RE = re.compile(r"\w+(?:['\u2019-]\w+)*")


def clean_markdown(text: str) -> str:
    """Remove markdown emphasis and heading marks, exactly as the paper's ``remove_markdown``.

    Deletes every run of ``#`` and every ``*`` (``**bold**`` and ``*italic*`` markers), then strips surrounding
    whitespace. Other markdown (``-`` bullets, backticks, links) is kept, as in the paper's code
    (maxschaffelder/synthetic_data_diversity, ``sacre_bleu.ipynb``). List-marker-only fragments such as ``"1."``
    are dropped later, by ``split_sentences``.
    """
    text = re.sub(r"#+", "", text)
    text = text.replace("*", "")
    return text.strip()


@lru_cache(maxsize=1)
def _punkt() -> Any:
    # PunktSentenceTokenizer() with no training text uses Punkt's default parameters and needs no nltk_data,
    # unlike nltk.sent_tokenize (which loads the pretrained English 'punkt_tab' model). It therefore knows no
    # abbreviation list: "Dr. Smith" is split after "Dr.". This is a documented deviation from the paper.
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer()


def _is_list_marker(fragment: str) -> bool:
    # The paper drops fragments that are only a numbered-list marker, e.g. "1." or "### 8." once cleaned.
    return fragment.replace(".", "").isdigit()


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Split a response into the "valid sentences" that Self-BLEU and semantic diversity use.

    Pipeline of the paper (§4.1 b): split the raw text with Punkt, remove markdown from each piece
    (``clean_markdown``), then drop list markers (``"1."``), fragments under 3 characters, and sentences with
    fewer than ``min_words`` whitespace-separated words (paper: 4). Punkt runs untrained (see ``_punkt``).

    Returns the cleaned sentences in text order; an empty list for empty or whitespace-only text.
    """
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}; the paper keeps sentences of >= 4 words.")
    sentences = []
    for piece in _punkt().tokenize(text):
        cleaned = clean_markdown(piece)
        if len(cleaned) < 3 or _is_list_marker(cleaned):
            continue
        if len(cleaned.split()) >= min_words:
            sentences.append(cleaned)
    return sentences


def word_tokens(text: str) -> list[str]:
    """Lowercase word tokens: maximal runs of word characters (``\\w``: letters, digits, underscore), where an
    apostrophe (straight or curly) or a hyphen between two word characters stays inside the token.

    So ``"Don't stop, well-known 3.14!"`` gives ``["don't", "stop", "well-known", "3", "14"]``. Punctuation and
    markdown symbols (``#``, ``*``) are never tokens, so no markdown cleaning is needed first. This replaces the
    paper's NLTK ``word_tokenize`` (Treebank rules), which needs ``nltk_data`` and, unlike this rule, emits
    punctuation tokens and splits contractions (``"do", "n't"``), so absolute V and K differ from the paper's.
    """
    return _WORD_RE.findall(text.lower())


def sample_indices(n_items: int, k: int, seed: int) -> list[int]:
    # np.random.RandomState(seed).choice(..., replace=False) is the draw the paper's code makes right after
    # np.random.seed(seed), so the same seed picks the same items; all items, in order, when k >= n_items.
    if k < 1:
        raise ValueError(f"sample size must be >= 1, got {k}.")
    if n_items <= k:
        return list(range(n_items))
    return [int(i) for i in np.random.RandomState(seed).choice(n_items, size=k, replace=False)]


def sample_sentences(responses: Sequence[str], k: int = 5000, seed: int = 42) -> list[str]:
    """A seeded sample of ``k`` valid sentences (``split_sentences``) pooled over all responses.

    The paper embeds 5,000 randomly sampled valid sentences per output set, seed 42 (§4.1 d). Returns all
    pooled sentences, in order, when there are at most ``k``.
    """
    pooled = [sentence for response in responses for sentence in split_sentences(response)]
    return [pooled[i] for i in sample_indices(len(pooled), k, seed)]
