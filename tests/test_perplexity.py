"""Perplexity with the prompt masked, checked against independent computations on a tiny random Llama."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from synthmix.backends.scoring import encode_for_scoring, fit_context, token_nll
from synthmix.metrics.perplexity import perplexity_from_nll

SYSTEM = "You are a helpful assistant."
ITEMS = [
    ("short", "What does `len` do?", "Return the number of items in a container."),
    (
        "long",
        "Explain the `with` statement in a few words, please.",
        "The with statement wraps the execution of a block with methods defined by a context manager. "
        "It guarantees that the exit method runs, even when the block raises an exception.",
    ),  # fmt: skip
    ("mid", "What is a tuple?", "An immutable sequence, usually of heterogeneous items."),
    ("one-word", "Say yes.", "yes"),
]


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    from synthmix.backends.transformers_backend import load_model

    return load_model(str(tiny_model))


def score_responses(model, tokenizer, items, batch_size=8, max_length=None, skip=()):
    """The backend primitive `loglikelihood` of the transformers backend, with each response's perplexity over
    its own tokens (the `synthmix` definition; the end-of-turn tokens are checked apart below)."""
    from synthmix.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend.from_loaded(model, tokenizer)
    requests = [{**item, "max_length": max_length} for item in items]
    for result in backend.loglikelihood(requests, frozenset(skip), batch_size=batch_size):
        yield {**result, "perplexity": perplexity_from_nll(result["nll"], result["n_tokens"])}


def _items() -> list[dict]:
    return [
        {
            "id": i,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}],
            "response": r,
        }
        for i, p, r in ITEMS
    ]


def _hf_loss_nll(model, ids: list[int], n_masked: int) -> tuple[float, int]:
    """Summed NLL from transformers' own causal-LM loss (mean over unmasked labels), the first `n_masked`
    positions masked with -100: an implementation independent of ours."""
    import torch

    input_ids = torch.tensor([ids])
    labels = input_ids.clone()
    labels[0, :n_masked] = -100
    with torch.inference_mode():
        loss = model(input_ids=input_ids, labels=labels).loss
    n_scored = len(ids) - max(n_masked, 1)  # the first token is never predicted
    return float(loss) * n_scored, n_scored


def test_uniform_model_has_perplexity_equal_to_vocabulary_size(tiny_model: Path):
    """A model whose logits are all zero predicts the uniform distribution: perplexity = vocabulary size."""
    import torch

    from synthmix.backends.transformers_backend import load_model

    model, tokenizer = load_model(str(tiny_model))
    with torch.no_grad():
        model.model.norm.weight.zero_()  # final hidden state 0 -> logits 0 (no bias in the head)
    results = list(score_responses(model, tokenizer, _items(), batch_size=2))
    vocabulary = model.config.vocab_size
    assert len(results) == len(ITEMS)
    for result in results:
        assert result["perplexity"] == pytest.approx(vocabulary, rel=1e-5)
        assert result["nll"] == pytest.approx(result["n_tokens"] * math.log(vocabulary), rel=1e-5)


def test_matches_transformers_loss_on_response_tokens(loaded):
    """Batched, padded scoring equals transformers' loss with the prompt labels masked, one item at a time."""
    model, tokenizer = loaded
    items = _items()
    results = {r["id"]: r for r in score_responses(model, tokenizer, items, batch_size=3)}
    for item in items:
        prompt_ids, completion_ids, n = encode_for_scoring(tokenizer, item["messages"], item["response"])
        response_ids = completion_ids[:n]
        nll, n_scored = _hf_loss_nll(model, prompt_ids + response_ids, len(prompt_ids))
        result = results[item["id"]]
        assert result["n_tokens"] == n_scored == len(response_ids)
        assert result["nll"] == pytest.approx(nll, rel=1e-5)
        assert result["perplexity"] == pytest.approx(math.exp(nll / n_scored), rel=1e-5)
        assert result["truncated"] is False


def test_matches_manual_log_softmax_sum(loaded):
    """Summed NLL / token count from an explicit log-softmax over the full, unpadded sequence."""
    import torch

    model, tokenizer = loaded
    item = _items()[1]
    prompt_ids, completion_ids, n = encode_for_scoring(tokenizer, item["messages"], item["response"])
    response_ids = completion_ids[:n]
    ids = prompt_ids + response_ids
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    nll = -sum(float(logprobs[t - 1, ids[t]]) for t in range(len(prompt_ids), len(ids)))
    [result] = score_responses(model, tokenizer, [item])
    assert result["perplexity"] == pytest.approx(math.exp(nll / len(response_ids)), rel=1e-5)


def test_prompt_tokens_are_excluded_by_the_chain_rule(loaded):
    """NLL(response | prompt) = NLL(prompt + response) - NLL(prompt), both scored over every token: the
    prompt's own tokens contribute exactly nothing, whatever their probability."""
    model, tokenizer = loaded
    for item in _items():
        prompt_ids, completion_ids, n = encode_for_scoring(tokenizer, item["messages"], item["response"])
        response_ids = completion_ids[:n]
        full, _ = _hf_loss_nll(model, prompt_ids + response_ids, 0)
        prompt_only, _ = _hf_loss_nll(model, prompt_ids, 0)
        [(_, nlls)] = list(token_nll(model, [(prompt_ids, response_ids)]))
        nll, n_tokens = sum(nlls), len(nlls)
        assert n_tokens == len(response_ids)
        assert nll == pytest.approx(full - prompt_only, rel=1e-5, abs=1e-4)
        # and it is not the whole-sequence sum (the prompt tokens do have a cost here)
        assert abs(nll - full) > 1.0


def test_prompt_changes_condition_but_are_never_counted(loaded):
    """A longer, different prompt leaves the number of scored tokens unchanged and changes only the context."""
    model, tokenizer = loaded
    item = _items()[0]
    other = {**item, "id": "other", "messages": [{"role": "user", "content": "zzz qqq " * 40}]}
    a, b = sorted(score_responses(model, tokenizer, [item, other]), key=lambda r: r["id"])
    assert (
        a["n_tokens"]
        == b["n_tokens"]
        == len(tokenizer(item["response"], add_special_tokens=False)["input_ids"])
    )
    assert a["nll"] != pytest.approx(b["nll"], rel=1e-6)


def test_batch_size_and_padding_do_not_change_values(loaded):
    model, tokenizer = loaded
    one = {r["id"]: r["nll"] for r in score_responses(model, tokenizer, _items(), batch_size=1)}
    four = {r["id"]: r["nll"] for r in score_responses(model, tokenizer, _items(), batch_size=4)}
    assert one.keys() == four.keys()
    for key in one:
        assert four[key] == pytest.approx(one[key], rel=1e-5)


def test_full_logits_path_equals_logits_to_keep_path(loaded):
    """A model without `logits_to_keep` (here a plain torch wrapper) gives the same values."""
    import torch

    model, tokenizer = loaded

    class NoKeep(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        @property
        def device(self):
            return self.inner.device

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    kept = {r["id"]: r["nll"] for r in score_responses(model, tokenizer, _items(), batch_size=4)}
    full = {r["id"]: r["nll"] for r in score_responses(NoKeep(model), tokenizer, _items(), batch_size=4)}
    for key in kept:
        assert full[key] == pytest.approx(kept[key], rel=1e-5)


def test_scored_tokens_are_the_response_inside_the_chat_template(loaded):
    """prompt + response ids are the chat-formatted conversation up to (not including) the end-of-turn token."""
    _, tokenizer = loaded
    item = _items()[0]
    prompt_ids, completion_ids, n = encode_for_scoring(tokenizer, item["messages"], item["response"])
    response_ids = completion_ids[:n]
    conversation = [*item["messages"], {"role": "assistant", "content": item["response"]}]
    full = list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])
    assert prompt_ids + response_ids == full[:-1]
    assert tokenizer.decode(full[-1]) == "<|end|>"
    assert tokenizer.decode(response_ids) == item["response"]


def test_empty_response_has_no_perplexity_and_skip_resumes(loaded):
    model, tokenizer = loaded
    items = [*_items()[:2], {**_items()[0], "id": "empty", "response": ""}]
    results = {r["id"]: r for r in score_responses(model, tokenizer, items, skip={"short"})}
    assert set(results) == {"long", "empty"}
    empty = results["empty"]
    assert (empty["n_tokens"], empty["nll"], empty["perplexity"], empty["truncated"]) == (0, 0.0, None, False)
    assert empty["n_end"] == 1 and empty["nll_end"] > 0  # the end of turn alone is still scored


def test_max_length_keeps_prompt_end_and_flags_truncation(loaded):
    model, tokenizer = loaded
    item = _items()[1]
    prompt_ids, completion_ids, n = encode_for_scoring(tokenizer, item["messages"], item["response"])
    response_ids = completion_ids[:n]
    limit = len(completion_ids) + 3  # the response, its end of turn and 3 prompt tokens
    [result] = score_responses(model, tokenizer, [item], max_length=limit)
    nll, _ = _hf_loss_nll(model, prompt_ids[-3:] + response_ids, 3)
    assert result["truncated"] is True and result["n_tokens"] == len(response_ids)
    assert result["nll"] == pytest.approx(nll, rel=1e-5)


def test_fit_context():
    assert fit_context([1, 2, 3], [4, 5], 5) == ([1, 2, 3], [4, 5], False)
    assert fit_context([1, 2, 3], [4, 5], 4) == ([2, 3], [4, 5], True)
    # a response longer than the window keeps its start and one prompt token as context
    assert fit_context([1, 2, 3], [4, 5, 6, 7], 3) == ([3], [4, 5], True)
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        fit_context([1], [2], 1)
    with pytest.raises(ValueError, match="prompt has no tokens"):
        fit_context([], [2], 4)


def test_perplexity_from_nll():
    assert perplexity_from_nll(0.0, 3) == 1.0
    assert perplexity_from_nll(2 * math.log(7.0), 2) == pytest.approx(7.0)
    assert perplexity_from_nll(0.0, 0) is None
    with pytest.raises(ValueError, match="n_tokens must be >= 0"):
        perplexity_from_nll(1.0, -1)


def test_token_nll_rejects_bad_input(loaded):
    model, _ = loaded
    with pytest.raises(ValueError, match="empty prompt"):
        list(token_nll(model, [([], [1, 2])]))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(token_nll(model, [([1], [2])], batch_size=0))


def test_the_papers_definition_also_scores_the_end_of_turn_tokens(loaded):
    """perplexity_2/perplexity.py scores every token after the generation prompt in the rendered conversation:
    the response and the template's end of turn (here '<|end|>'). The model pass returns both parts; the
    paper's perplexity is over all of them, computed here independently with transformers' own loss."""
    from synthmix.metrics.perplexity import perplexity
    from synthmix.prompts import chat_token_ids

    model, tokenizer = loaded
    for item in _items():
        prompt = chat_token_ids(tokenizer, item["messages"])
        conversation = chat_token_ids(
            tokenizer, [*item["messages"], {"role": "assistant", "content": item["response"]}], False
        )
        assert conversation[: len(prompt)] == prompt
        assert tokenizer.decode(conversation[len(prompt) :]).endswith("<|end|>")
        nll, n_scored = _hf_loss_nll(model, conversation, len(prompt))
        [result] = score_responses(model, tokenizer, [item])
        assert result["n_end"] == 1 and result["n_tokens"] + result["n_end"] == n_scored
        assert result["nll"] + result["nll_end"] == pytest.approx(nll, rel=1e-5)
        assert perplexity(result, "paper") == pytest.approx(math.exp(nll / n_scored), rel=1e-5)
        assert perplexity(result, "synthmix") == pytest.approx(math.exp(result["nll"] / result["n_tokens"]))
