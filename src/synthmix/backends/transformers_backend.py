"""The transformers backend: always available, CPU or GPU, and the one that offers every primitive.

- `generate`: batched sampling with left padding; prompts sorted by length so a batch wastes little padding.
  Each batch is seeded from (seed, batch position), so a resumed run regenerates an unfinished batch exactly
  as an uninterrupted run would have (on the same hardware and library versions).
- `next_token_logprobs`: one forward pass per request, log-softmax at the last position.
- `loglikelihood`: right-padded batches of prompt + answer, only the scored positions' logits
  (`synthmix.metrics.perplexity`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from synthmix.backends import register
from synthmix.config import Generation
from synthmix.io import DataError, fingerprint
from synthmix.prompts import cut_at_stop, request_token_ids


def pick_device() -> tuple[str, Any]:
    """bf16 on a GPU, fp32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def load_model(model_dir: str, adapter_dir: str | None = None, merge: bool = True) -> tuple[Any, Any]:
    """Load a materialised model (and tokenizer), optionally with a LoRA adapter on top."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def fits_context(n_prompt_tokens: int, context_length: int | None, max_new_tokens: int) -> bool:
    """Whether a prompt leaves room for `max_new_tokens` in the context (unknown context: assume it does)."""
    return context_length is None or n_prompt_tokens + max_new_tokens <= context_length


def keep_prompt_end(ids: list[int], context_length: int | None, max_new_tokens: int) -> list[int]:
    """The end of a prompt that would not fit the context together with `max_new_tokens` (at least 1 token)."""
    if fits_context(len(ids), context_length, max_new_tokens):
        return ids
    return ids[-max(1, context_length - max_new_tokens) :]  # type: ignore[operator]


def reject_long_prompts(lengths: dict[str, int], context_length: int | None, max_new_tokens: int) -> None:
    """Raise DataError naming the first prompt (of `lengths`: id -> prompt tokens) that does not fit.

    Used with `generation.prompt_overflow: reject`, before anything is generated.
    """
    long = [(key, n) for key, n in lengths.items() if not fits_context(n, context_length, max_new_tokens)]
    if not long:
        return
    assert context_length is not None  # an unknown context fits every prompt
    key, n = long[0]
    others = f" ({len(long) - 1} more prompt(s) are too long)" if len(long) > 1 else ""
    keep = max(1, context_length - max_new_tokens)
    raise DataError(
        f"prompt '{key}' has {n} tokens, but the model's context is {context_length} tokens and "
        f"{max_new_tokens} of them are kept for the answer (max_new_tokens){others}. Nothing was generated. "
        f"Set prompt_overflow: truncate in this stage's generation settings (keeps the last {keep} tokens "
        "of each long prompt), lower max_new_tokens, or shorten the prompts"
    )


def single_token_ids(tokenizer: Any, strings: Sequence[str]) -> dict[str, int | None]:
    """The token id of each string that is one token of the vocabulary (None otherwise).

    A string counts when `encode(s)` (no special tokens) gives exactly one token that decodes back to it
    (this rejects the unknown token and normalisers that change the text). A string whose token an earlier
    string already has (a tokenizer that maps "A" and " A" to one id) gets None, so that no probability is
    counted twice.
    """
    ids: dict[str, int | None] = {}
    taken: set[int] = set()
    for string in strings:
        encoded = tokenizer.encode(string, add_special_tokens=False)
        token = int(encoded[0]) if len(encoded) == 1 else None
        if token is not None and (token in taken or tokenizer.decode([token]).strip() != string.strip()):
            token = None
        if token is not None:
            taken.add(token)
        ids[string] = token
    return ids


@register("transformers")
class TransformersBackend:
    name = "transformers"

    def __init__(self, model_dir: str, adapter_dir: str | None = None):
        self._use(*load_model(model_dir, adapter_dir))

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any) -> TransformersBackend:
        """A backend around a model and tokenizer already in memory."""
        backend = cls.__new__(cls)
        backend._use(model, tokenizer)
        return backend

    def _use(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)
        self.truncated_prompts = 0

    def _fit_context(self, ids: list[int], request_id: str, max_new_tokens: int) -> list[int]:
        """Keep the end of a prompt that would not fit the context window; warn and count."""
        kept = keep_prompt_end(ids, self.context_length, max_new_tokens)
        if len(kept) < len(ids):
            self.truncated_prompts += 1
            warnings.warn(
                f"prompt '{request_id}' has {len(ids)} tokens; kept the last {len(kept)} so that "
                f"{max_new_tokens} new tokens fit the {self.context_length}-token context",
                stacklevel=2,
            )
        return kept

    # ---- generate ----
    def generate(
        self, requests: Sequence[dict[str, Any]], settings: Generation, skip: frozenset[str] = frozenset()
    ) -> Iterator[dict[str, Any]]:
        """Yield one result per request not in `skip`, in batch order."""
        import torch

        encoded = [request_token_ids(self.tokenizer, r) for r in requests]
        if settings.prompt_overflow == "reject":  # before the first batch, so no finished answer is lost
            lengths = {r["id"]: len(ids) for r, ids in zip(requests, encoded, strict=True)}
            reject_long_prompts(lengths, self.context_length, settings.max_new_tokens)
        lengths = [len(ids) for ids in encoded]
        encoded = [
            self._fit_context(ids, r["id"], settings.max_new_tokens)
            for r, ids in zip(requests, encoded, strict=True)
        ]
        order = sorted(range(len(requests)), key=lambda i: (-len(encoded[i]), requests[i]["id"]))
        batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
        pad_id = self.tokenizer.pad_token_id
        for position, batch in enumerate(batches):
            if all(requests[i]["id"] in skip for i in batch):
                continue
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = encoded[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention[row, width - len(ids) :] = 1
            stop = requests[batch[0]].get("stop")
            torch.manual_seed(int(fingerprint(settings.seed, position), 16) % (2**31))
            sample = settings.temperature > 0
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids.to(self.model.device),
                    attention_mask=attention.to(self.model.device),
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=sample,
                    temperature=settings.temperature if sample else None,
                    top_p=settings.top_p if sample else None,
                    top_k=0 if sample else None,  # the paper samples with top_p only
                    pad_token_id=pad_id,
                    stop_strings=stop,
                    tokenizer=self.tokenizer if stop else None,
                )
            new_tokens = output[:, width:].cpu()
            for row, i in enumerate(batch):
                request = requests[i]
                if request["id"] in skip:
                    continue
                tokens = [t for t in new_tokens[row].tolist() if t != pad_id]
                eos = self.tokenizer.eos_token_id
                ended = bool(tokens) and tokens[-1] == eos or len(tokens) < settings.max_new_tokens
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                text, stopped = cut_at_stop(text, request.get("stop"))
                yield {
                    "id": request["id"],
                    "response": text.strip(),
                    "n_prompt_tokens": len(encoded[i]),
                    "n_tokens": len(tokens),
                    "finish_reason": "stop" if (ended or stopped) else "length",
                    "prompt_truncated": len(encoded[i]) < lengths[i],
                    "served": None,  # what an API says it served; a local model is its model_revision
                }

    # ---- next_token_logprobs ----
    def judge_prompt_ids(self, request: dict[str, Any]) -> list[int]:
        """The prompt (chat `messages` with the generation prompt, or plain `text`), then the `prefill`
        tokens. A prompt longer than the context is an error, or with `"prompt_overflow": "truncate"` is cut
        to its end (a warning, counted in `truncated_prompts`) as generation does."""
        ids = request_token_ids(self.tokenizer, request)
        if request.get("prefill"):
            ids = ids + self.tokenizer.encode(request["prefill"], add_special_tokens=False)
        if request.get("prompt_overflow") == "truncate":
            return self._fit_context(ids, request["id"], 1)
        if self.context_length is not None and len(ids) > self.context_length:
            raise DataError(
                f"judge prompt '{request['id']}' has {len(ids)} tokens, more than the judge's "
                f"{self.context_length}-token context; shorten the candidates (data.max_response_chars, "
                "generation.max_new_tokens), or allow prompt_overflow: truncate where the stage offers it"
            )
        return ids

    def next_token_logprobs(
        self,
        requests: Sequence[dict[str, Any]],
        skip: frozenset[str] = frozenset(),
        settings: Generation | None = None,
    ) -> Iterator[dict[str, Any]]:
        import torch

        keep = {"logits_to_keep": 1} if _accepts(self.model, "logits_to_keep") else {}
        for request in requests:
            if request["id"] in skip:
                continue
            ids = self.judge_prompt_ids(request)
            with torch.inference_mode():
                logits = self.model(input_ids=torch.tensor([ids], device=self.model.device), **keep).logits
            # float32 before the softmax: bf16/fp16 logits lose the small probabilities that are summed
            logprobs = torch.log_softmax(logits[0, -1].float(), dim=-1).cpu()
            wanted = single_token_ids(self.tokenizer, request.get("tokens") or [])
            top = torch.topk(logprobs, min(int(request.get("top_n") or 0), logprobs.numel()))
            yield {
                "id": request["id"],
                "n_prompt_tokens": len(ids),
                "tokens": {s: None if t is None else float(logprobs[t]) for s, t in wanted.items()},
                "top": [
                    [self.tokenizer.decode([int(t)]), float(v)]
                    for v, t in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                ],
            }

    # ---- loglikelihood ----
    def loglikelihood(
        self, requests: Sequence[dict[str, Any]], skip: frozenset[str] = frozenset(), batch_size: int = 8
    ) -> Iterator[dict[str, Any]]:
        from synthmix.backends.scoring import encode_for_scoring, fit_context, token_nll

        todo = [r for r in requests if r["id"] not in skip]
        sequences, n_response, truncated = [], [], []
        for request in todo:
            prompt_ids, completion_ids, n = encode_for_scoring(
                self.tokenizer, request["messages"], request["response"]
            )
            limit = request.get("max_length") or self.context_length or 2**31 - 1
            prompt_ids, completion_ids, cut = fit_context(prompt_ids, completion_ids, limit)
            sequences.append((prompt_ids, completion_ids))
            n_response.append(min(n, len(completion_ids)))
            truncated.append(cut)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for index, nlls in token_nll(self.model, sequences, batch_size, pad_token_id=pad):
            n = n_response[index]
            yield {
                "id": todo[index]["id"],
                "nll": float(sum(nlls[:n])),
                "n_tokens": n,
                "nll_end": float(sum(nlls[n:])),
                "n_end": len(nlls) - n,
                "truncated": truncated[index],
            }


def _accepts(model: Any, argument: str) -> bool:
    try:
        return argument in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
