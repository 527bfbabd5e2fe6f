"""Text pre-processing shared by the diversity metrics: sentences, words, markdown, seeded samples.

Follows Schaffelder & Gatt (arXiv 2511.01490), experiment 1, as their code computes it
(maxschaffelder/synthetic_data_diversity, exp_1/metric_calculation/lex_div/sacre_bleu.ipynb,
lex_div/heaps_law.ipynb and sem_div/sbert_embeddings.ipynb). Sentences and words come from NLTK's own
`sent_tokenize` and `word_tokenize` with the pretrained English Punkt model (punkt_tab), which
scripts/install.sh lays into the virtual environment's nltk_data folder (scripts/install_punkt.py).

Two definition sets (params `metric_definitions`): `paper`, the authors' definitions, and `synthmix`, ours where
we think them better (named below). Both use the same sentence splitter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFINITION_SETS = ("paper", "synthmix")

# synthmix's word rule for distinct-n (both sets) and Heaps' law (synthmix set): lowercase, then maximal runs of
# word characters (letters, digits, underscore), keeping an apostrophe or hyphen *between* word characters.
_WORD_RE = re.compile(r"\w+(?:['\u2019-]\w+)*")
PUNKT_MISSING = (
    "NLTK's pretrained English Punkt model (tokenizers/punkt_tab/english) is not installed; `bash "
    "scripts/install.sh` lays it into .venv/share/nltk_data (or run scripts/install_punkt.py, see README)"
)


def _nltk(function: str, text: str) -> list[str]:
    import nltk

    try:
        return getattr(nltk, function)(text)
    except LookupError:
        raise LookupError(PUNKT_MISSING) from None


def sentences(text: str) -> list[str]:
    """`nltk.sent_tokenize(text)`: English Punkt with its pretrained abbreviations, as the paper's code splits
    ("Dr. Smith" and "D.C." stay whole; "e.g." followed by a lower-case word ends a sentence, as in NLTK)."""
    return _nltk("sent_tokenize", text)


def clean_markdown(text: str) -> str:
    """Remove markdown emphasis and heading marks, exactly as the paper's ``remove_markdown`` (sacre_bleu.ipynb):
    delete every run of ``#`` and every ``*`` (``**bold**`` and ``*italic*``), then strip surrounding whitespace.
    Other markdown (``-`` bullets, backticks, links) is kept, as in the paper's code."""
    text = re.sub(r"#+", "", text)
    text = text.replace("*", "")
    return text.strip()


def _is_list_marker(fragment: str) -> bool:
    # The paper drops fragments that are only a numbered-list marker, e.g. "1." or "### 8." once cleaned.
    return fragment.replace(".", "").isdigit()


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """The "valid sentences" of a response that Self-BLEU uses (both definition sets).

    The paper's `load_and_clean_responses` (sacre_bleu.ipynb): `sent_tokenize`, drop list markers (``"1."``) and
    fragments under 3 characters once markdown is removed (`is_valid_sentence`), remove markdown
    (`clean_markdown`), keep sentences of at least ``min_words`` whitespace-separated words (paper: 4).
    Returns the cleaned sentences in text order; an empty list for empty or whitespace-only text.
    """
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}; the paper keeps sentences of >= 4 words.")
    kept = []
    for piece in sentences(text):
        cleaned = clean_markdown(piece)
        if len(cleaned) < 3 or _is_list_marker(cleaned):
            continue
        if len(cleaned.split()) >= min_words:
            kept.append(cleaned)
    return kept


def is_semantic_sentence(sentence: str) -> bool:
    """The paper's `is_valid_sentence` of sbert_embeddings.ipynb (semantic diversity), which differs from the
    Self-BLEU filter: markdown marks are removed only to judge the sentence, the digit test removes only the
    first ``.``, short numbered fragments (a digit before the first ``.`` and under 5 characters) are dropped,
    and there is no minimum word count."""
    sentence = sentence.strip()
    if not sentence:
        return False
    cleaned = sentence.replace("#", "").replace("*", "").strip()
    if cleaned.replace(".", "", 1).isdigit() or len(cleaned) < 3:
        return False
    return not (cleaned.split(".")[0].isdigit() and len(cleaned) < 5)


def semantic_sentences(responses: Sequence[str], definitions: str = "paper") -> list[str]:
    """The pool of sentences semantic diversity samples from.

    `paper` (sbert_embeddings.ipynb): every non-empty response's `sent_tokenize` sentences that pass
    `is_semantic_sentence`, raw (markdown kept). `synthmix`: the Self-BLEU sentences (`split_sentences`:
    markdown removed, at least 4 words), so that both diversity measures look at the same sentences.
    """
    if definitions == "paper":
        return [
            s for response in responses if response for s in sentences(response) if is_semantic_sentence(s)
        ]
    return [s for response in responses for s in split_sentences(response)]


def word_tokens(text: str) -> list[str]:
    """synthmix's lowercase word tokens: maximal runs of word characters (``\\w``: letters, digits, underscore),
    where an apostrophe (straight or curly) or a hyphen between two word characters stays inside the token.

    So ``"Don't stop, well-known 3.14!"`` gives ``["don't", "stop", "well-known", "3", "14"]``: punctuation and
    markdown symbols are never tokens. Used for distinct-n, and for Heaps' law in the `synthmix` set.
    """
    return _WORD_RE.findall(text.lower())


def heaps_tokens(texts: Sequence[str], definitions: str = "paper") -> list[str]:
    """The token stream whose vocabulary growth Heaps' law fits.

    `paper` (heaps_law.ipynb `extract_text_from_jsonl` and `calculate_heaps_parameters`): the responses
    concatenated with no separator (the last word of one response and the first of the next can fuse), ``#``
    runs and ``*`` removed (without stripping), lower-cased, then `nltk.word_tokenize` (punctuation marks are
    tokens; "don't" is "do" + "n't"). `synthmix`: `word_tokens` of each response in turn (nothing fuses).
    """
    if definitions == "paper":
        joined = re.sub(r"#+", "", "".join(texts)).replace("*", "")
        return _nltk("word_tokenize", joined.lower())
    return [token for text in texts for token in word_tokens(text)]


def sample_indices(n_items: int, k: int, seed: int) -> list[int]:
    # np.random.RandomState(seed).choice(..., replace=False) is the draw the paper's code makes right after
    # np.random.seed(seed), so the same seed picks the same items; all items, in order, when k >= n_items.
    if k < 1:
        raise ValueError(f"sample size must be >= 1, got {k}.")
    if n_items <= k:
        return list(range(n_items))
    return [int(i) for i in np.random.RandomState(seed).choice(n_items, size=k, replace=False)]


def sample_sentences(
    responses: Sequence[str], k: int = 5000, seed: int = 42, definitions: str = "paper"
) -> list[str]:
    """A seeded sample of ``k`` sentences of `semantic_sentences` (paper: 5,000, seed 42, §4.1 d); all of them,
    in order, when there are at most ``k``."""
    pooled = semantic_sentences(responses, definitions)
    return [pooled[i] for i in sample_indices(len(pooled), k, seed)]


def check_definitions(definitions: Any) -> str:
    if definitions not in DEFINITION_SETS:
        raise ValueError(
            f"unknown metric definitions {definitions!r}; choose one of {', '.join(DEFINITION_SETS)}"
        )
    return definitions
