"""Self-preference metrics: first-token probabilities on a tiny real Llama, aggregation on hand examples."""

from __future__ import annotations

import copy
import math

import pytest

from synthmix.metrics.first_token import expected_rating, option_probabilities
from synthmix.metrics.preference import (
    choice_probability,
    equal_opportunity_bias,
    excess_over_gold,
    mean_absolute_scores,
    pairwise_matrix,
    position_consistency,
    self_preference,
    self_preference_vs_human,
    source_preferences,
)
from synthmix.prompts import answer_forms as variants

# --------------------------------------------------------------------------------------------------------
# choice_probability
# --------------------------------------------------------------------------------------------------------


def test_choice_probability_renormalises_the_two_letters() -> None:
    assert choice_probability(0.3, 0.1) == pytest.approx(0.75)
    assert choice_probability(0.0, 0.2) == 0.0
    assert choice_probability(0.02, 0.0) == 1.0


def test_choice_probability_is_nan_without_mass_on_either_letter() -> None:
    assert math.isnan(choice_probability(0.0, 0.0))


@pytest.mark.parametrize("bad", [(-0.1, 0.5), (0.5, 1.5), (math.nan, 0.5), (0.5, math.inf)])
def test_choice_probability_rejects_non_probabilities(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="must be a probability"):
        choice_probability(*bad)


# --------------------------------------------------------------------------------------------------------
# First-token probabilities on a tiny random Llama with tokenizers built here
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """GPT-2-style byte-level BPE whose only merges make " A" and " B" single tokens ("ĠA", "ĠB").

    So "A" and " A" are two distinct single tokens, while " 5" stays two tokens ("Ġ", "5").
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    for merged in ("ĠA", "ĠB"):
        vocab[merged] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "A"), ("Ġ", "B")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>")


@pytest.fixture(scope="module")
def word_level_tokenizer():
    """Whitespace word-level tokenizer: "A" and " A" both encode to the same single id."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "Summary", "A", "B", ":", "good", "bad", "Answer", "1", "2", "3", "4", "5"]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


@pytest.fixture(scope="module")
def tiny_llama(byte_level_tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(byte_level_tokenizer),
        initializer_range=0.5,  # a peaked next-token distribution, so wrong token ids show in the numbers
    )
    return LlamaForCausalLM(config).eval()


def _manual_last_position_probs(model, input_ids: list[int]) -> list[float]:
    """Independent computation: plain softmax, in float64 Python, of the last position's logits."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([input_ids])).logits[0, -1].tolist()
    top = max(logits)
    exps = [math.exp(value - top) for value in logits]
    return [value / sum(exps) for value in exps]


PROMPT = "Summary A: good\nSummary B: bad\nAnswer:"


def first_token(model, tokenizer, text: str, options=("A", "B")) -> dict:
    """The backend primitive on a plain-text prompt (as judges use it), read as option probabilities."""
    from synthmix.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend.from_loaded(model, tokenizer)
    request = {"id": "x", "text": text, "tokens": variants(options), "top_n": 5}
    (result,) = backend.next_token_logprobs([request])
    return result


def test_single_token_ids_keeps_single_token_variants(byte_level_tokenizer) -> None:
    from synthmix.backends.transformers_backend import single_token_ids

    ids = single_token_ids(byte_level_tokenizer, variants(["A", "B", "5"]))
    convert = byte_level_tokenizer.convert_tokens_to_ids
    assert ids == {
        "A": convert("A"),
        " A": convert("ĠA"),
        "B": convert("B"),
        " B": convert("ĠB"),
        "5": convert("5"),
        " 5": None,  # two tokens here ("Ġ", "5"), so only the bare form counts
    }


def test_first_token_probabilities_match_a_manual_softmax_and_sum_variants(
    tiny_llama, byte_level_tokenizer
) -> None:
    result = first_token(tiny_llama, byte_level_tokenizer, PROMPT)
    probs = option_probabilities(result["tokens"], ("A", "B"))
    # a plain-text request gets the tokenizer's special tokens, as generation does (none here)
    manual = _manual_last_position_probs(tiny_llama, byte_level_tokenizer.encode(PROMPT))
    convert = byte_level_tokenizer.convert_tokens_to_ids
    expected_a = manual[convert("A")] + manual[convert("ĠA")]
    expected_b = manual[convert("B")] + manual[convert("ĠB")]
    assert probs["A"] == pytest.approx(expected_a, rel=1e-5)
    assert probs["B"] == pytest.approx(expected_b, rel=1e-5)
    # Both variants carry real mass, so counting only the bare letter would be visibly wrong.
    assert probs["A"] > manual[convert("A")] * 1.001
    assert probs["A"] > manual[convert("ĠA")] * 1.001
    # the top tokens are the most likely ones, decoded, with their log-probabilities
    order = sorted(range(len(manual)), key=lambda i: -manual[i])[:5]
    assert [t for t, _ in result["top"]] == [byte_level_tokenizer.decode([i]) for i in order]
    assert [lp for _, lp in result["top"]] == pytest.approx([math.log(manual[i]) for i in order], rel=1e-5)


def test_first_token_prompt_gets_the_tokenizers_special_tokens(tiny_llama, byte_level_tokenizer) -> None:
    from tokenizers import processors

    # A copy whose post-processor prepends <s>, as Llama tokenizers do.
    with_bos = copy.deepcopy(byte_level_tokenizer)
    with_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 0)]
    )
    bos = option_probabilities(first_token(tiny_llama, with_bos, PROMPT)["tokens"], ("A", "B"))
    plain = option_probabilities(first_token(tiny_llama, byte_level_tokenizer, PROMPT)["tokens"], ("A", "B"))
    manual = _manual_last_position_probs(tiny_llama, [0, *with_bos.encode(PROMPT, add_special_tokens=False)])
    convert = with_bos.convert_tokens_to_ids
    assert bos["A"] == pytest.approx(manual[convert("A")] + manual[convert("ĠA")], rel=1e-5)
    assert plain["A"] != pytest.approx(bos["A"], rel=1e-5)


def test_expected_rating_matches_manual_expectation(tiny_llama, byte_level_tokenizer) -> None:
    prompt = "Rate the text: good\nScore:"
    ratings = ("1", "2", "3", "4", "5")
    result = first_token(tiny_llama, byte_level_tokenizer, prompt, ratings)
    expected_score = expected_rating(option_probabilities(result["tokens"], ratings), ratings)
    manual = _manual_last_position_probs(tiny_llama, byte_level_tokenizer.encode(prompt))
    p = {r: manual[byte_level_tokenizer.convert_tokens_to_ids(str(r))] for r in range(1, 6)}
    assert expected_score == pytest.approx(sum(r * p[r] for r in p) / sum(p.values()), rel=1e-5)
    assert 1.0 <= expected_score <= 5.0


def test_a_token_shared_by_both_variants_is_counted_once(tiny_llama, word_level_tokenizer) -> None:
    from synthmix.backends.transformers_backend import single_token_ids

    a_id = word_level_tokenizer.convert_tokens_to_ids("A")
    assert single_token_ids(word_level_tokenizer, ["A", " A"]) == {"A": a_id, " A": None}
    prompt = "Summary A : good Summary B : bad Answer :"
    probs = option_probabilities(first_token(tiny_llama, word_level_tokenizer, prompt)["tokens"], ("A", "B"))
    manual = _manual_last_position_probs(tiny_llama, word_level_tokenizer.encode(prompt))
    assert probs["A"] == pytest.approx(manual[a_id], rel=1e-5)


def test_option_that_is_not_a_single_token_is_refused(byte_level_tokenizer, word_level_tokenizer) -> None:
    from synthmix.backends.transformers_backend import single_token_ids

    with pytest.raises(ValueError, match="'AB' is not a single token"):
        option_probabilities(single_token_ids(byte_level_tokenizer, variants(["AB"])), ["AB"])
    # An unknown word encodes to one token, [UNK], which must not be taken for the option.
    assert single_token_ids(word_level_tokenizer, ["Yes"]) == {"Yes": None}
    with pytest.raises(ValueError, match="repeat a label"):
        option_probabilities({"A": -1.0}, ["A", "A"])


# --------------------------------------------------------------------------------------------------------
# Pairwise aggregation on a hand-computed example
# --------------------------------------------------------------------------------------------------------


def _j(item: str, first: str, second: str, p_first: float) -> dict:
    return {"item": item, "first": first, "second": second, "p_first": p_first}


# Three sources, one item, every pair in both orders.
#   llama first vs qwen 0.8 | qwen first vs llama 0.4   -> llama wins both orders
#   llama first vs human 0.9 | human first vs llama 0.2 -> llama wins both orders
#   qwen first vs human 0.7 | human first vs qwen 0.5  -> qwen, then a tie
HAND = [
    _j("x", "llama", "qwen", 0.8),
    _j("x", "qwen", "llama", 0.4),
    _j("x", "llama", "human", 0.9),
    _j("x", "human", "llama", 0.2),
    _j("x", "qwen", "human", 0.7),
    _j("x", "human", "qwen", 0.5),
]


def test_source_preferences_hand_example() -> None:
    prefs = source_preferences(HAND)
    # llama: shown first 0.8, 0.9 (mean 0.85); shown second 1-0.4, 1-0.2 (mean 0.7) -> 0.775
    # qwen:  shown first 0.4, 0.7 (mean 0.55); shown second 1-0.8, 1-0.5 (mean 0.35) -> 0.45
    # human: shown first 0.2, 0.5 (mean 0.35); shown second 1-0.9, 1-0.7 (mean 0.2) -> 0.275
    assert list(prefs) == ["llama", "qwen", "human"]
    assert prefs["llama"] == pytest.approx(0.775)
    assert prefs["qwen"] == pytest.approx(0.45)
    assert prefs["human"] == pytest.approx(0.275)


def test_pairwise_matrix_hand_example() -> None:
    matrix = pairwise_matrix(HAND)
    assert matrix["llama"]["qwen"] == pytest.approx(0.5 * (0.8 + 0.6))
    assert matrix["qwen"]["llama"] == pytest.approx(0.5 * (0.4 + 0.2))
    assert matrix["llama"]["human"] == pytest.approx(0.5 * (0.9 + 0.8))
    assert matrix["human"]["llama"] == pytest.approx(0.5 * (0.2 + 0.1))
    assert matrix["qwen"]["human"] == pytest.approx(0.5 * (0.7 + 0.5))
    assert matrix["human"]["qwen"] == pytest.approx(0.5 * (0.5 + 0.3))
    assert "llama" not in matrix["llama"]


def test_pairwise_matrix_marks_unjudged_pairs_nan() -> None:
    matrix = pairwise_matrix(HAND[:4])  # qwen and human never meet
    assert math.isnan(matrix["qwen"]["human"]) and math.isnan(matrix["human"]["qwen"])
    assert matrix["llama"]["qwen"] == pytest.approx(0.7)


def test_position_consistency_hand_example_with_a_tie() -> None:
    # llama-qwen and llama-human agree across orders; qwen-human is a win then a tie -> 2/3.
    assert position_consistency(HAND) == pytest.approx(2 / 3)


def test_position_consistency_counts_a_tie_in_both_orders_as_consistent() -> None:
    assert position_consistency([_j("x", "a", "b", 0.5), _j("x", "b", "a", 0.5)]) == 1.0
    assert position_consistency([_j("x", "a", "b", 0.5), _j("x", "b", "a", 0.51)]) == 0.0


def test_position_consistency_skips_pairs_missing_an_order() -> None:
    extra = [_j("y", "llama", "qwen", 0.9), _j("y", "qwen", "llama", math.nan)]
    assert position_consistency(HAND + extra) == pytest.approx(2 / 3)
    assert math.isnan(position_consistency([_j("x", "a", "b", 0.7)]))


def test_a_judge_that_always_answers_a_prefers_no_source() -> None:
    always_a = [{**judgement, "p_first": 1.0} for judgement in HAND]
    assert source_preferences(always_a) == {"llama": 0.5, "qwen": 0.5, "human": 0.5}
    assert all(value == 0.5 for row in pairwise_matrix(always_a).values() for value in row.values())
    assert self_preference(always_a, "llama") == 0.5
    assert position_consistency(always_a) == 0.0  # the winner flips with the order every time


def test_self_preference_equals_panickssery_per_pair_average() -> None:
    judgements = [
        _j("x", "llama", "human", 0.9),
        _j("x", "human", "llama", 0.2),
        _j("y", "llama", "human", 0.6),
        _j("y", "human", "llama", 0.6),
    ]
    # Per pair: x -> ½(0.9 + 0.8) = 0.85, y -> ½(0.6 + 0.4) = 0.5; averaged over items -> 0.675.
    assert self_preference(judgements, "llama") == pytest.approx(0.675)
    assert self_preference(HAND, "llama") == pytest.approx(source_preferences(HAND)["llama"])


def test_self_preference_vs_human_uses_only_human_pairs() -> None:
    assert self_preference_vs_human(HAND, "llama") == pytest.approx(0.85)
    assert self_preference_vs_human(HAND, "qwen") == pytest.approx(0.6)
    with pytest.raises(ValueError, match="must differ"):
        self_preference_vs_human(HAND, "human")


def test_choice_probabilities_feed_the_aggregation() -> None:
    judgements = [
        _j("x", "llama", "human", choice_probability(0.6, 0.2)),  # 0.75
        _j("x", "human", "llama", choice_probability(0.1, 0.3)),  # 0.25 -> llama 0.75
        _j("y", "llama", "human", choice_probability(0.0, 0.0)),  # NaN: skipped
        _j("y", "human", "llama", choice_probability(0.5, 0.5)),  # 0.5 -> llama 0.5
    ]
    # shown first: [0.75] -> 0.75; shown second: [0.75, 0.5] -> 0.625
    assert self_preference(judgements, "llama") == pytest.approx(0.5 * (0.75 + 0.625))


@pytest.mark.parametrize(
    ("judgements", "message"),
    [
        ([{"item": "x", "first": "a", "p_first": 0.5}], "lacks \\['second'\\]"),
        ([_j("x", "a", "a", 0.5)], "with itself"),
        ([_j("x", "a", "b", 1.2)], "must be in \\[0, 1\\]"),
        ([_j("x", "a", "b", 0.5), _j("x", "a", "b", 0.6)], "repeats item"),
        ([_j("x", "a", "b", 0.5)], "needs both orders"),
    ],
)
def test_malformed_judgements_are_refused(judgements: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        source_preferences(judgements)


# --------------------------------------------------------------------------------------------------------
# Equal opportunity, excess over gold, absolute scores
# --------------------------------------------------------------------------------------------------------


def test_equal_opportunity_bias_hand_examples() -> None:
    # Y=1 pairs: judge [1, 1, 0] -> recall 2/3; Y=0 pairs: judge [1, 0, 0] -> P(Y'=0) = 2/3; bias 0.
    judge = [True, True, False, True, False, False]
    human = [True, True, True, False, False, False]
    assert equal_opportunity_bias(judge, human) == pytest.approx(0.0)
    # Always self: recall 1 on Y=1, 0 on Y=0 -> +1; never self -> -1.
    assert equal_opportunity_bias([1, 1, 1, 1], [1, 0, 1, 0]) == 1.0
    assert equal_opportunity_bias([0, 0, 0, 0], [1, 0, 1, 0]) == -1.0
    # Y=1: judge [1, 1] -> 1; Y=0: judge [1, 0, 1, 0] -> 1/2; bias 1/2.
    assert equal_opportunity_bias([1, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0]) == pytest.approx(0.5)


def test_equal_opportunity_bias_undefined_and_invalid_inputs() -> None:
    assert math.isnan(equal_opportunity_bias([True, False], [True, True]))
    assert math.isnan(equal_opportunity_bias([], []))
    with pytest.raises(ValueError, match="one label of each per pair"):
        equal_opportunity_bias([True], [True, False])
    with pytest.raises(ValueError, match="must hold booleans"):
        equal_opportunity_bias([0.7, 1], [1, 0])


def test_excess_over_gold() -> None:
    assert excess_over_gold(0.7, 0.55) == pytest.approx(0.15)
    assert excess_over_gold(0.4, 0.5) == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="judge_self_win_rate must be a rate"):
        excess_over_gold(1.2, 0.5)


def test_mean_absolute_scores() -> None:
    records = [
        {"item": "x", "source": "llama", "score": 4.0},
        {"item": "y", "source": "llama", "score": 3.5},
        {"item": "x", "source": "human", "score": 2.0},
        {"item": "y", "source": "human", "score": math.nan},
        {"item": "x", "source": "qwen", "score": math.nan},
    ]
    scores = mean_absolute_scores(records)
    assert scores["llama"] == pytest.approx(3.75)
    assert scores["human"] == 2.0
    assert math.isnan(scores["qwen"])
    with pytest.raises(ValueError, match="lacks \\['score'\\]"):
        mean_absolute_scores([{"item": "x", "source": "llama"}])
